"""Run the aggregator service: ``python -m aggregator_svc [--config FILE]``."""

from __future__ import annotations

import sys

from aggregator_svc.libraries import Libraries
from aggregator_svc.server import AggregatorServicer, register
from aggregator_svc.store import EngineStates
from ops.config import internal_token, redis_client
from ops.grpc_server import build_server, check_transport
from ops.service_main import Started, run_service
from scoreid.errors import UserError
from scoreid.identify.engine import EngineSettings


def build(cfg: dict) -> Started:
    a = cfg["aggregator"]
    client, token = redis_client(cfg), internal_token(cfg)
    check_transport("aggregator", cfg["host"], bool(token), False, cfg["allow_insecure"])
    libraries = Libraries(cfg["index"]["libraries"], cfg["index"]["default_library"])
    try:
        servicer = AggregatorServicer(
            EngineStates(client, ttl_s=a["session_ttl_s"]),
            libraries,
            EngineSettings.from_config(cfg),
            a["top_k"],
        )
    except (TypeError, ValueError) as e:
        raise UserError(f"aggregator settings: {e}") from None
    server, port = build_server(
        register(servicer),
        f"{cfg['host']}:{a['port']}",
        workers=a["workers"],
        token=token,
        service="aggregator",
    )
    return Started(server, port, a["metrics_port"], {"redis": cfg["redis"]["url"]})


def main(argv: list[str] | None = None) -> int:
    return run_service("aggregator_svc", __doc__, argv, build)


if __name__ == "__main__":
    sys.exit(main())
