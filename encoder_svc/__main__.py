"""Run the encoder service (client-facing): ``python -m encoder_svc [--config FILE]``."""

from __future__ import annotations

import sys

from encoder_svc.backend import load_served_model
from encoder_svc.server import EmbedderServicer, EncoderSettings, IdentifyServicer, register
from ops.config import internal_token, secret
from ops.grpc_server import build_server, check_transport, keepalive_options
from ops.service_main import Started, run_service
from scoreid.audio.io import AudioError
from scoreid.contract import ContractError


def build(cfg: dict) -> Started:
    e = cfg["encoder"]
    settings = EncoderSettings.from_config(e)
    tokens = [t for t in (secret(e, "token"), *(settings.clients or {})) if t]
    check_transport("encoder", cfg["host"], bool(tokens), bool(e["tls_cert"]), cfg["allow_insecure"])
    encoder = load_served_model(
        e["model"], e["backend"], e["threads"], e["precision"], e["device"], incremental=e["incremental"]
    )
    identify = IdentifyServicer(
        encoder, cfg["index"]["address"], cfg["aggregator"]["address"], settings, internal_token(cfg)
    )
    # each open stream is a coroutine; the gate refuses streams beyond sessions + pending, so the
    # reserve always stays free for health checks and unary calls
    rpcs = max(e["workers"], e["max_sessions"] + e["max_pending_streams"] + e["health_reserve"])
    server, port = build_server(
        register(identify, EmbedderServicer(encoder, str(e["model"]))),
        f"{cfg['host']}:{e['port']}",
        workers=rpcs,
        maximum_concurrent_rpcs=rpcs,
        max_message_bytes=e["max_message_bytes"],
        token=tokens,
        tls_cert=e["tls_cert"],
        tls_key=e["tls_key"],
        options=keepalive_options(e["keepalive_s"]),
        service="encoder",
    )
    fields = {"model": str(e["model"]), "backend": e["backend"], "device": e["device"] or "default"}
    return Started(server, port, e["metrics_port"], fields, on_stop=identify.close)


def main(argv: list[str] | None = None) -> int:
    return run_service("encoder_svc", __doc__, argv, build, (ContractError, AudioError, OSError))


if __name__ == "__main__":
    sys.exit(main())
