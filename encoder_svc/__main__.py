"""Run the encoder service (client-facing): ``python -m encoder_svc [--config FILE]``."""

from __future__ import annotations

import argparse
import logging
import sys

from encoder_svc.backend import load_encoder
from encoder_svc.server import EmbedderServicer, EncoderSettings, IdentifyServicer, register
from scoreid.audio.io import AudioError
from scoreid.contract import ContractError
from scoreid.errors import UserError
from scoreid.serve.config import internal_token, load_config, secret
from scoreid.serve.grpc_server import build_server, check_transport, keepalive_options, serve_until_signal
from scoreid.serve.logs import log_event, setup_json_logging
from scoreid.serve.metrics import serve_metrics

log = logging.getLogger("scoreid.encoder")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="encoder_svc", description=__doc__)
    ap.add_argument("--config", help="YAML configuration file")
    args = ap.parse_args(argv)
    setup_json_logging()
    try:
        cfg = load_config(args.config)
        e = cfg["encoder"]
        settings = EncoderSettings.from_config(e)
        tokens = [t for t in (secret(e, "token"), *(settings.clients or {})) if t]
        check_transport("encoder", cfg["host"], bool(tokens), bool(e["tls_cert"]), cfg["allow_insecure"])
        encoder = load_encoder(e["model"], e["backend"], e["threads"], e["precision"])
        identify = IdentifyServicer(encoder, cfg["index"]["address"], cfg["aggregator"]["address"],
                                    settings, internal_token(cfg))  # fmt: skip
        # each open stream holds a thread; the gate refuses streams beyond sessions + pending, so the
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
    except (UserError, ContractError, AudioError, OSError) as err:
        print(f"encoder_svc: error: {err}", file=sys.stderr)
        return 2
    serve_metrics(e["metrics_port"], cfg["host"])
    server.start()
    log_event(log, "listening", service="encoder", address=f"{cfg['host']}:{port}", model=str(e["model"]),
              backend=e["backend"])  # fmt: skip
    serve_until_signal(server)
    identify.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
