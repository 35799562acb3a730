"""``scoreid web [LIB_DIR]``: the page a musician opens — listen, name the piece, show and turn its pages.

Serves one page (``web/static``) and its WebSocket with uvicorn on ``--host`` (loopback unless
told otherwise) and ``--port``, for ``LIB_DIR`` (default: the demo library, as ``scoreid up``
serves it); the browser sends the microphone (or a chosen recording) and the server runs the same
streaming engine as ``scoreid identify`` on it, one per browser session (:mod:`web.app`,
:mod:`web.session`). Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from scoreid.errors import UserError
from scoreid.identify.engine import DEFAULT_HOP_S, EngineSettings

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "default"  #: the demo library's model

NAME = "web"
HELP = "serve the page-turner: a web page that listens, names the piece and follows it in the score"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from web.limits import DEFAULT_MAX_SESSIONS, Limits

    d = Limits()
    p.add_argument("lib", type=Path, nargs="?", metavar="LIB_DIR",
                   help="library folder (scoreid library build); default: the demo library (scoreid demo builds it)")  # fmt: skip
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the library's)")
    p.add_argument("--backend", default="onnx", choices=("onnx", "torch", "tensorrt"))
    p.add_argument("--hop", type=float, default=DEFAULT_HOP_S,
                   help=f"seconds of audio between updates (default {DEFAULT_HOP_S:g})")  # fmt: skip
    p.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                   help=f"browser sessions at once (default {DEFAULT_MAX_SESSIONS})")  # fmt: skip
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout_s,
                   help=f"close a session that sends nothing for this many seconds (default {d.idle_timeout_s:g})")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from scoreid.inference import load_model
    from scoreid.library.store import Library
    from web.app import create_app
    from web.limits import Limits
    from web.offline_session import OfflineBackend

    if args.hop <= 0:
        raise UserError("--hop must be positive")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535, got {args.port}")
    try:
        limits = Limits(max_sessions=args.max_sessions, idle_timeout_s=args.idle_timeout)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.lib is None:  # the demo's library, as `scoreid up` serves it when none is configured
        from ops.cache import demo_cache
        from ops.stack import demo_library

        try:
            args.lib = demo_library(args.model or MODEL_DIR)
        except UserError:
            raise UserError(f"no LIB_DIR given and no demo library in {demo_cache()}: run `scoreid demo` "
                            "once (it builds it), or give a library folder") from None  # fmt: skip
    lib = Library.open(args.lib)
    model_dir = args.model or Path(lib.index["model"]["dir"])
    enc = load_model(model_dir, args.backend, expected=lib.contract)
    app = create_app(lib, OfflineBackend(lib, enc, EngineSettings(hop_s=args.hop)), limits)
    if len(lib.piece_ids) == 0:
        print(
            f"scoreid: warning: {args.lib}: the library has no pieces; the page will say so", file=sys.stderr
        )
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            ws_max_size=limits.max_message_bytes + 65536)  # fmt: skip
    sock = listen_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"scoreid web: serving {len(lib.piece_ids)} pieces on http://{shown}:{port}/ (Ctrl-C stops)",
        flush=True,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound socket on ``host``:``port`` (0: a free one), so the address is known before serving."""
    try:
        family, kind, proto, _name, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)  # connections made before uvicorn runs wait in the backlog
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock
