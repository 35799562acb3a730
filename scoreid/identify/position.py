"""Where the music is in a piece's score: one :class:`Position`, the value every layer passes on.

The engine makes one for each of its top pieces after every hop (from
:meth:`scoreid.library.store.Library.at_strip_x`, whose mapping has exactly these fields); the
aggregator sends it as the gRPC ``scoreid.v1.Position``, the client and the demo read it back, and
``scoreid identify`` prints it in its JSON lines. Its adapters are its only conversions:

- to and from the gRPC message: :meth:`Position.to_message` / :meth:`Position.from_message`, by
  field name (the message has a field of every name here; the core does not import the protocol,
  the services and the client pass it the message type);
- to and from a JSON line's entry: :meth:`Position.to_json` / :meth:`Position.from_json`.

A new field is one line here, the same field in ``proto/scoreid/v1/scoreid.proto`` and, when the
JSON lines should show it, a line in each JSON adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

M = TypeVar("M")


@dataclass(frozen=True)
class Position:
    """A followed position in the score of ``piece`` (all indices 0-based; px of the deskewed page
    at the contract's render scale)."""

    piece: str
    page: int  #: over the piece's pages in order (all files of the piece)
    system: int  #: on that page
    x: float  #: page x
    y0: float  #: the system's band on the page: top ...
    y1: float  #: ... and bottom
    strip_x: float  #: on the piece's unrolled strip (what the score follower tracks)
    file: str = ""  #: the file of the piece that holds the page ("" when the library does not say)
    file_page: int = 0  #: the page inside that file
    show_page: int = 0  #: the page to show: the next one within 2 s of the end of a page's last system

    # ------------------------------------------------------------------ gRPC
    def to_message(self, message_type: Callable[..., M]) -> M:
        """As the message ``message_type`` (``scoreid.v1.Position``: ``pos.to_message(pb.Position)``)."""
        return message_type(**asdict(self))

    @classmethod
    def from_message(cls, msg: Any) -> Position:
        """From a message with a field of each name (``scoreid.v1.Position``)."""
        return cls(**{f.name: getattr(msg, f.name) for f in fields(cls)})

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """The position's keys of a ``scoreid identify`` line's entry (README "Sheet library and
        identification"): the band as ``[y0, y1]``; the piece is the entry's own, the strip x is
        not printed."""
        return {
            "page": self.page,
            "system": self.system,
            "x": self.x,
            "file": self.file,
            "file_page": self.file_page,
            "show_page": self.show_page,
            "band": [self.y0, self.y1],
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], strip_x: float = float("nan")) -> Position:
        """Read back from a line's entry (its ``piece`` and the keys of :meth:`to_json`); the line
        does not carry the strip x: ``strip_x`` (NaN: unknown)."""
        y0, y1 = entry["band"]
        return cls(
            piece=entry["piece"],
            page=entry["page"],
            system=entry["system"],
            x=entry["x"],
            y0=y0,
            y1=y1,
            strip_x=strip_x,
            file=entry["file"],
            file_page=entry["file_page"],
            show_page=entry["show_page"],
        )
