"""``scoreid web [LIB_DIR | --stack ADDRESS]``: the page a musician opens — listen, name the piece, turn its pages.

Serves one page (``web/static``) and its WebSocket with uvicorn on ``--host`` (loopback unless
told otherwise) and ``--port``; the browser sends the microphone (or a chosen recording) and every
browser session gets the same streaming engine as ``scoreid identify`` (:mod:`web.app`,
:mod:`web.session`):

- ``scoreid web [LIB_DIR]``: the engine in this process, one per session, for ``LIB_DIR`` (default:
  the demo library, as ``scoreid up`` serves it) (:mod:`web.offline_session`);
- ``scoreid web --stack ADDRESS [--config FILE]``: each session is one ``Identify.Stream`` call to
  the running stack at ``ADDRESS`` (``scoreid up`` prints it), with that stack's credentials,
  library and limits from its configuration (:mod:`web.stack_target`, :mod:`web.stack_session`);
  ``scoreid up --web`` starts it beside the stack.

Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any

from scoreid.errors import UserError
from scoreid.identify.engine import DEFAULT_HOP_S, EngineSettings

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "default"  #: the demo library's model

NAME = "web"
HELP = "serve the page-turner: a web page that listens, names the piece and follows it in the score"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from web.limits import DEFAULT_MAX_SESSIONS, Limits

    d = Limits()
    p.add_argument(
        "lib",
        type=Path,
        nargs="?",
        metavar="LIB_DIR",
        help="library folder (scoreid library build); default: the demo library (scoreid demo builds it)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the library's)")
    p.add_argument("--backend", default=None, choices=("onnx", "torch", "tensorrt"), help="default onnx")
    p.add_argument(
        "--hop",
        type=float,
        default=None,
        help=f"seconds of audio between updates (default {DEFAULT_HOP_S:g}; with --stack the stack's)",
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        help=f"browser sessions at once (default {DEFAULT_MAX_SESSIONS})",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help=f"close a session that sends nothing for this many seconds (default {d.idle_timeout_s:g}; "
        "with --stack the stack's)",
    )
    s = p.add_argument_group("bridged to a running stack")
    s.add_argument(
        "--stack",
        metavar="ADDRESS",
        help="identify through the stack at host:port (scoreid up prints it) instead of in this process",
    )
    s.add_argument(
        "--config",
        metavar="FILE",
        help="with --stack: the stack's configuration (credentials, libraries, limits); default: the "
        "one `scoreid up` started it with, found in the default state_dir",
    )
    s.add_argument(
        "--library", metavar="NAME", help="with --stack: which of its libraries (default: its default)"
    )
    s.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="with --stack: CA certificate of its TLS port (default: encoder.tls_cert of the config)",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    if args.hop is not None and args.hop <= 0:
        raise UserError("--hop must be positive")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535, got {args.port}")
    lib, backend, limits, what = stack_app_parts(args) if args.stack else offline_app_parts(args)
    from web.app import create_app

    app = create_app(lib, backend, limits)
    if len(lib.piece_ids) == 0:
        print(
            f"scoreid: warning: {lib.dir}: the library has no pieces; the page will say so", file=sys.stderr
        )
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", ws_max_size=limits.max_message_bytes + 65536
    )
    sock = listen_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"scoreid web: serving {len(lib.piece_ids)} pieces{what} on http://{shown}:{port}/ (Ctrl-C stops)",
        flush=True,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def limits_of(args: argparse.Namespace, encoder: dict[str, Any] | None = None) -> Any:
    """The session limits: the stack's ``encoder`` section's (default: the services' defaults), the
    options over them."""
    from web.limits import Limits

    try:
        return Limits.from_config(
            encoder or {}, max_sessions=args.max_sessions, idle_timeout_s=args.idle_timeout
        )
    except ValueError as e:
        raise UserError(str(e)) from None


def offline_app_parts(args: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    """The library, the in-process backend and the limits of ``scoreid web [LIB_DIR]``."""
    from scoreid.inference import load_model
    from scoreid.library.store import Library
    from web.offline_session import OfflineBackend

    for given, flag in ((args.config, "--config"), (args.library, "--library"), (args.tls_ca, "--tls-ca")):
        if given is not None:
            raise UserError(f"{flag} goes with --stack ADDRESS")
    limits = limits_of(args)
    if args.lib is None:  # the demo's library, as `scoreid up` serves it when none is configured
        from ops.cache import demo_cache
        from ops.stack import demo_library

        try:
            args.lib = demo_library(args.model or MODEL_DIR)
        except UserError:
            raise UserError(
                f"no LIB_DIR given and no demo library in {demo_cache()}: run `scoreid demo` "
                "once (it builds it), or give a library folder"
            ) from None
    lib = Library.open(args.lib)
    model_dir = args.model or Path(lib.index["model"]["dir"])
    enc = load_model(model_dir, args.backend or "onnx", expected=lib.contract)
    settings = EngineSettings(hop_s=DEFAULT_HOP_S if args.hop is None else args.hop)
    return lib, OfflineBackend(lib, enc, settings), limits, ""


def stack_app_parts(args: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    """The library, the stack backend and the limits of ``scoreid web --stack ADDRESS``."""
    from scoreid.library.store import Library
    from web.stack_session import StackBackend
    from web.stack_target import running_config, stack_target

    for given, flag in ((args.lib, "LIB_DIR"), (args.model, "--model"), (args.backend, "--backend")):
        if given is not None:
            raise UserError(
                f"{flag} is the stack's with --stack (its index.libraries and encoder.model); "
                "choose one of its libraries with --library NAME"
            )
    cfg = running_config(args.stack, args.config)
    target = stack_target(args.stack, cfg, args.library, args.hop, args.tls_ca)
    limits = limits_of(args, cfg["encoder"])
    lib = Library.open(target.library_dir)
    return (
        lib,
        StackBackend(target),
        limits,
        f" of library {target.library!r} identified by the stack at {args.stack}",
    )


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
