"""Run the index service: ``python -m index_svc [--config FILE]`` (libraries from ``index.libraries``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from index_svc.library import ServedLibrary
from index_svc.server import IndexServicer, register
from scoreid.errors import UserError
from scoreid.serve.config import internal_token, load_config
from scoreid.serve.grpc_server import build_server, check_transport, serve_until_signal
from scoreid.serve.logs import log_event, setup_json_logging
from scoreid.serve.metrics import serve_metrics

log = logging.getLogger("scoreid.index")


def load_libraries(cfg: dict) -> dict[str, ServedLibrary]:
    ic = cfg["index"]
    if not ic["libraries"]:
        raise UserError("no libraries configured (index.libraries: {name: LIB_DIR})")
    out = {}
    for name, path in ic["libraries"].items():
        opts = {}
        if ic["backend"] == "milvus":
            state = Path(cfg["state_dir"]).expanduser()
            state.mkdir(parents=True, exist_ok=True)
            opts = {"uri": ic["milvus_uri"] or str(state / f"milvus-{name}.db"), "collection": f"lib_{name}"}
        out[name] = ServedLibrary.open(path, name, ic["backend"], **opts)
        log_event(log, "library loaded", service="index", library=name, vectors=len(out[name]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="index_svc", description=__doc__)
    ap.add_argument("--config", help="YAML configuration file")
    args = ap.parse_args(argv)
    setup_json_logging()
    try:
        cfg = load_config(args.config)
        # a missing token file is a start-up error; so is the token in clear text off loopback
        check_transport("index", cfg["host"], bool(internal_token(cfg)), False, cfg["allow_insecure"])
        libs = load_libraries(cfg)
    except (UserError, ValueError, OSError) as e:
        print(f"index_svc: error: {e}", file=sys.stderr)
        return 2
    ic = cfg["index"]
    servicer = IndexServicer(libs, ic["default_library"], ic["k"])
    server, port = build_server(register(servicer), f"{cfg['host']}:{ic['port']}", workers=ic["workers"],
                                max_message_bytes=64 << 20, token=internal_token(cfg), service="index")  # fmt: skip
    serve_metrics(ic["metrics_port"], cfg["host"])
    server.start()
    log_event(log, "listening", service="index", address=f"{cfg['host']}:{port}")
    serve_until_signal(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
