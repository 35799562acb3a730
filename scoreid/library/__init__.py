"""The sheet library: staff systems detected on a user's pages, cut into sheet windows along each
piece's unrolled strip, embedded with the sheet encoder and stored for search (see ``store``
for the on-disk format and the in-memory model, :class:`Library`, that the offline identifier and
the services share, and ``build`` for building, adding and removing pieces)."""

from scoreid.library.store import Library, LibraryError, Piece

__all__ = ["Library", "LibraryError", "Piece"]
