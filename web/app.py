"""The Starlette application of ``scoreid web``: the page, the library's pieces and pages, ``/ws``.

Routes:

- ``GET /`` — the page (``static/index.html``), its files under ``/static/``;
- ``GET /api/library`` — the pieces: id, title, composer and each page's size and system boxes
  (what the page needs to place the highlight and the cursor), the audio rate and hop;
- ``GET /api/pieces/{piece}/pages/{k}`` — page ``k`` of a piece as PNG (:mod:`web.pages`);
- ``GET /healthz`` — ``ok`` while the server answers (a container's health check: it reads nothing
  and does not call the stack, whose own health the encoder's checks report);
- ``WS /ws`` — one stream per connection (:mod:`web.session`), within the limits of
  :class:`web.limits.Limits`: at most ``max_sessions`` at once and ``max_sessions_per_client`` from
  one address (1013 beyond), a start message within the options timeout (1008), a frame at least
  every idle timeout (4000), at most ``max_session_s`` long (4001); a browser page of another
  origin may not open it (1008).

The application is made with its :class:`web.session.Backend`, what answers every session: the
engine in this process (:class:`web.offline_session.OfflineBackend`) or a running stack's
``Identify.Stream`` (:class:`web.stack_session.StackBackend`); the WebSocket loop is the same
for both. The library (pieces, page images) is read from its directory either way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from scoreid import contract as C
from scoreid.library.store import Library
from web import limits as L
from web.pages import PageCache, PageNotFound
from web.session import Backend, ProtocolError, Session, close_reason

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("scoreid.web")


class Admission:
    """Open sessions, in all and by client address (one event loop: no lock needed)."""

    def __init__(self, limits: L.Limits):
        self.limits = limits
        self.by_client: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_client.values())

    def admit(self, client: str) -> str | None:
        """None when admitted, else why not."""
        if self.total >= self.limits.max_sessions:
            return f"the server is at its limit of {self.limits.max_sessions} sessions; try again later"
        if self.by_client[client] >= self.limits.max_sessions_per_client:
            return f"this address has {self.limits.max_sessions_per_client} sessions open already; close one"
        self.by_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


def library_json(lib: Library, hop_s: float) -> dict[str, Any]:
    pieces = []
    for pid in lib.piece_ids:
        e = lib.pieces[pid]
        pages = [{"size": pg.get("size"), "systems": pg.get("systems", [])} for pg in e.get("pages") or []]
        pieces.append(
            {"id": pid, "title": lib.title(pid), "composer": e.get("composer") or "", "pages": pages}
        )
    return {"pieces": pieces, "sample_rate": C.SAMPLE_RATE, "hop_s": hop_s}


def same_origin(ws: WebSocket) -> bool:
    """A browser sends the page's origin: it must be this server (no Origin: not a browser page)."""
    origin = ws.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == ws.headers.get("host")


def create_app(library: Library, backend: Backend, limits: L.Limits | None = None) -> Starlette:
    """The application serving ``library``'s pieces and pages, its sessions answered by ``backend``."""
    limits = limits or L.Limits()
    admission = Admission(limits)
    pages = PageCache(library)
    lib_json = library_json(library, backend.hop_s)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def api_library(request: Request) -> Response:
        return JSONResponse(lib_json, headers={"Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok", headers={"Cache-Control": "no-store"})

    async def api_page(request: Request) -> Response:
        pid, k = request.path_params["piece"], request.path_params["k"]
        try:
            png = await run_in_threadpool(pages.get, pid, k)
        except PageNotFound as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    async def ws_endpoint(ws: WebSocket) -> None:
        client = ws.client.host if ws.client else "?"
        await ws.accept()
        if not same_origin(ws):
            await ws.close(L.CLOSE_POLICY, "a page of another origin may not open this stream")
            return
        if not library.piece_ids:
            await ws.close(
                L.CLOSE_EMPTY_LIBRARY, "the library has no pieces; add some with `scoreid library add`"
            )
            return
        why = admission.admit(client)
        if why:
            await ws.close(L.CLOSE_BUSY, close_reason(why))
            return
        lock = asyncio.Lock()

        async def emit(msgs: list[dict[str, Any]]) -> None:  # the session's replies, one at a time
            async with lock:
                for m in msgs:
                    await ws.send_text(json.dumps(m))

        session = backend.session(len(library.piece_ids), limits, emit)
        try:
            try:
                await serve(ws, session)
            finally:
                await session.close()
        except ProtocolError as e:
            log.info("session of %s closed: %s", client, e.reason)
            await _close(ws, e.code, e.reason)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("session of %s failed", client)
            await _close(ws, L.CLOSE_ERROR, "server error (logged); start again")
        finally:
            admission.release(client)

    async def serve(ws: WebSocket, session: Session) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + limits.max_session_s
        await session.emit([session.hello()])
        ever_started = False
        while True:
            wait = limits.idle_timeout_s if ever_started else limits.options_timeout_s
            left = end - loop.time()
            if left <= 0:
                raise ProtocolError(
                    L.CLOSE_TOO_LONG, f"the session reached its limit of {limits.max_session_s:g} s"
                )
            try:
                msg = await session.wait(ws.receive(), min(wait, left))
            except TimeoutError:
                if loop.time() >= end:
                    raise ProtocolError(
                        L.CLOSE_TOO_LONG, f"the session reached its limit of {limits.max_session_s:g} s"
                    ) from None
                if not ever_started:
                    raise ProtocolError(L.CLOSE_POLICY, f'no {{"type": "start"}} within {wait:g} s') from None
                raise ProtocolError(
                    L.CLOSE_IDLE, f"nothing received for {wait:g} s: the stream is closed"
                ) from None
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("bytes") is not None:
                await session.audio(msg["bytes"])
            elif msg.get("text") is not None:
                await session.control(msg["text"])
                ever_started = ever_started or session.started

    routes = [
        Route("/", index),
        Route("/api/library", api_library),
        Route("/api/pieces/{piece}/pages/{k:int}", api_page),
        Route("/healthz", healthz),
        WebSocketRoute("/ws", ws_endpoint),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code, reason)
    except Exception:  # already closed by the other side
        pass
