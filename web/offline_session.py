"""The page's sessions answered in this process: one :class:`scoreid.identify.stream.Identifier` each.

``scoreid web [LIB_DIR]`` serves these: every browser session runs its own engine (tally, score
follower, confidence) on the one shared audio encoder and library, the same engine as ``scoreid
identify``; the engine's steps run in a worker thread, so one session's hop never holds up another's
frames. Nothing is shared between sessions but the read-only library and model.
"""

from __future__ import annotations

import numpy as np
from starlette.concurrency import run_in_threadpool

from scoreid import contract as C
from scoreid.identify.engine import EngineSettings
from scoreid.identify.stream import AudioEncoder, Identifier
from scoreid.library.store import Library
from web import limits as L
from web.session import Emit, Session, final_message, update_message


class OfflineBackend:
    """Sessions of ``library`` with ``encoder`` (one model for all) and the engine's ``settings``."""

    def __init__(self, library: Library, encoder: AudioEncoder, settings: EngineSettings | None = None):
        self.library = library
        self.encoder = encoder
        self.settings = settings or EngineSettings()

    @property
    def hop_s(self) -> float:
        return self.settings.hop_s

    def session(self, pieces: int, limits: L.Limits, emit: Emit) -> OfflineSession:
        return OfflineSession(self, pieces, limits, emit)


class OfflineSession(Session):
    """One browser's stream through its own :class:`~scoreid.identify.stream.Identifier`."""

    def __init__(self, backend: OfflineBackend, pieces: int, limits: L.Limits, emit: Emit):
        super().__init__(pieces, backend.hop_s, limits, emit)
        self.backend = backend
        self.ident: Identifier | None = None

    async def _start(self) -> None:
        b = self.backend
        self.ident = Identifier(b.library, b.encoder, b.settings)

    async def _push(self, x: np.ndarray) -> None:
        ident, samples = self._ident(), self.samples
        updates = await run_in_threadpool(ident.push, x)
        await self.emit([update_message(u, ident.n_voting, samples) for u in updates])

    async def _end(self) -> None:
        ident, samples = self._ident(), self.samples
        updates = await run_in_threadpool(ident.finish)
        final = ident.snapshot(samples / C.SAMPLE_RATE)
        self.ident = None
        await self.emit(
            [
                *(update_message(u, ident.n_voting, samples) for u in updates),
                final_message(final, ident.n_voting, samples),
            ]
        )

    def _ident(self) -> Identifier:
        assert self.ident is not None, "the base class checks for a started stream"
        return self.ident
