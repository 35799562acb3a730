"""The libraries the aggregator's engines run against, opened read-only and kept current.

The session engine needs more of a library than the index's hits carry: every window of a
candidate piece (the score follower scores them all each hop), the strip geometry and the page
layout (positions). So the aggregator opens the same library directories as the index (the
stack's ``index.libraries``) with the core reader (:class:`scoreid.library.store.Library`). A
library is reopened when its ``library.json`` changes on disk (a piece ingested through the index,
or ``scoreid library add`` / ``remove``), checked at most every ``check_s`` seconds, and at once
when a vote names a piece this copy does not know yet.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from scoreid.library.store import INDEX, Library


class UnknownLibrary(KeyError):
    """A library name the stack does not serve."""


class Libraries:
    def __init__(self, dirs: dict[str, str | Path], default: str = "", check_s: float = 1.0):
        self.dirs = {name: Path(d).expanduser() for name, d in dirs.items()}
        self.default = default or next(iter(self.dirs), "")  # as the index: the first one
        self.check_s = float(check_s)
        self._open: dict[str, tuple[Library, tuple[int, int], float]] = {}  # name -> (lib, stamp, checked)
        self._lock = threading.Lock()

    def name_of(self, name: str) -> str:
        name = name or self.default
        if name not in self.dirs:
            raise UnknownLibrary(f"unknown library {name!r}; served: {sorted(self.dirs)}")
        return name

    def _stamp(self, name: str) -> tuple[int, int]:
        st = (self.dirs[name] / INDEX).stat()
        return st.st_mtime_ns, st.st_size

    def get(self, name: str, refresh: bool = False) -> Library:
        """The library ``name`` (empty: the default), reopened if it changed on disk."""
        name = self.name_of(name)
        now = time.monotonic()
        with self._lock:
            entry = self._open.get(name)
            if entry is not None and not refresh and now - entry[2] < self.check_s:
                return entry[0]
            stamp = self._stamp(name)
            if entry is not None and entry[1] == stamp:
                self._open[name] = (entry[0], stamp, now)
                return entry[0]
            lib = Library.open(self.dirs[name])
            self._open[name] = (lib, stamp, now)
            return lib
