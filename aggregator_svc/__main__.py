"""Run the aggregator service: ``python -m aggregator_svc [--config FILE]``."""

from __future__ import annotations

import argparse
import logging
import sys

from aggregator_svc.libraries import Libraries
from aggregator_svc.server import AggregatorServicer, register
from aggregator_svc.store import EngineStates
from scoreid.errors import UserError
from scoreid.serve.config import internal_token, load_config, redis_client
from scoreid.serve.grpc_server import build_server, check_transport, serve_until_signal
from scoreid.serve.logs import log_event, setup_json_logging
from scoreid.serve.metrics import serve_metrics

log = logging.getLogger("scoreid.aggregator")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="aggregator_svc", description=__doc__)
    ap.add_argument("--config", help="YAML configuration file")
    args = ap.parse_args(argv)
    setup_json_logging()
    try:
        cfg = load_config(args.config)
    except UserError as e:
        print(f"aggregator_svc: error: {e}", file=sys.stderr)
        return 2
    a = cfg["aggregator"]
    try:
        client, token = redis_client(cfg), internal_token(cfg)
        check_transport("aggregator", cfg["host"], bool(token), False, cfg["allow_insecure"])
    except UserError as e:
        print(f"aggregator_svc: error: {e}", file=sys.stderr)
        return 2
    libraries = Libraries(cfg["index"]["libraries"], cfg["index"]["default_library"])
    try:
        servicer = AggregatorServicer(EngineStates(client, ttl_s=a["session_ttl_s"]), libraries, a["half_life_s"],
                                      a["top_k"], vote_temperature=float(a["vote_temperature"]),
                                      hop_s=float(cfg["encoder"]["hop_s"]),
                                      sequence_weight=float(a["sequence_weight"]),
                                      candidates=a["candidates"])  # fmt: skip
    except (TypeError, ValueError) as e:
        print(f"aggregator_svc: error: aggregator settings: {e}", file=sys.stderr)
        return 2
    server, port = build_server(
        register(servicer),
        f"{cfg['host']}:{a['port']}",
        workers=a["workers"],
        token=token,
        service="aggregator",
    )
    serve_metrics(a["metrics_port"], cfg["host"])
    server.start()
    log_event(
        log, "listening", service="aggregator", address=f"{cfg['host']}:{port}", redis=cfg["redis"]["url"]
    )
    serve_until_signal(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
