"""Run the index service: ``python -m index_svc [--config FILE]`` (libraries from ``index.libraries``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from index_svc.library import ServedLibrary
from index_svc.server import IndexServicer, register
from ops.config import internal_token
from ops.grpc_server import build_server, check_transport
from ops.logs import log_event
from ops.service_main import Started, run_service
from scoreid.errors import UserError

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


def build(cfg: dict) -> Started:
    # a missing token file is a start-up error; so is the token in clear text off loopback
    check_transport("index", cfg["host"], bool(internal_token(cfg)), False, cfg["allow_insecure"])
    libs = load_libraries(cfg)
    ic = cfg["index"]
    servicer = IndexServicer(libs, ic["default_library"], ic["k"])
    server, port = build_server(
        register(servicer),
        f"{cfg['host']}:{ic['port']}",
        workers=ic["workers"],
        max_message_bytes=64 << 20,
        token=internal_token(cfg),
        service="index",
    )
    return Started(server, port, ic["metrics_port"])


def main(argv: list[str] | None = None) -> int:
    return run_service("index_svc", __doc__, argv, build, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
