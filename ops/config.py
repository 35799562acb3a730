"""Service configuration: one YAML file, defaults for every key, environment overrides.

``load_config(path)`` deep-merges the file over :data:`DEFAULTS`, then applies environment
variables named ``SCOREID__<SECTION>__<KEY>`` (values parsed as YAML scalars), e.g.
``SCOREID__ENCODER__MAX_BATCH=32`` or ``SCOREID__REDIS__URL=redis://host:6379/0``.
Unknown sections or keys are an error (a typo must not be silently ignored).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from scoreid.errors import UserError
from scoreid.identify import engine, tally

ENV_PREFIX = "SCOREID__"

DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    # a bearer token on a non-loopback host without TLS is refused at start; true: the network is
    # protected otherwise (private network, NetworkPolicy, a mesh with mTLS) — see README "Security"
    "allow_insecure": False,
    "state_dir": "~/.cache/scoreid/stack",
    "redis": {
        "url": "",  # empty: `scoreid up` starts redis-server on `port` and uses it
        "port": 6391,
        "conf": "deploy/redis/redis.conf",
        "timeout_s": 2.0,
        "password": "",  # Redis AUTH password; prefer password_file (mode 0600). `scoreid up` makes one
        "password_file": "",
        "managed": False,  # set by load_config: true when `scoreid up` runs its own redis-server
    },
    "internal": {  # service-to-service credential: index and aggregator refuse calls without it
        "token": "",  # bearer token; prefer token_file (mode 0600). `scoreid up` generates one
        "token_file": "",
    },
    "supervisor": {  # `scoreid up` restarts a service or redis-server that dies (ops.supervisor)
        "enabled": True,
        "interval_s": 0.5,
        "restart_delay_s": 1.0,
        "max_restarts": 5,  # within window_s; more is a crash loop and the process is left down
        "window_s": 60.0,
    },
    "aggregator": {
        "address": "",  # empty: host:port
        "port": 50053,
        "metrics_port": 9103,
        "half_life_s": tally.DEFAULT_HALF_LIFE_S,
        "vote_temperature": tally.VOTE_TEMPERATURE,  # similarity temperature of a window's votes (scoreid.identify.tally)
        "sequence_weight": engine.SEQUENCE_WEIGHT,  # weight of the followers' sequence evidence (scoreid.identify.engine)
        "candidates": engine.CANDIDATES,  # pieces of the tally followed and reordered (scoreid.identify.engine)
        "evidence": engine.EVIDENCE,  # null of the sequence evidence: piece | library (scoreid.identify.follow)
        "session_ttl_s": 300,
        "top_k": 5,
        "workers": 8,
    },
    "index": {
        "address": "",
        "port": 50052,
        "metrics_port": 9102,
        "libraries": {},  # name -> library dir
        "default_library": "",
        "backend": "exact",  # exact | faiss | milvus
        "milvus_uri": "",  # empty: a milvus-lite file in state_dir
        "k": engine.TOP_K,  # neighbours per window (votes)
        "workers": 8,
    },
    "encoder": {
        "port": 50051,
        "metrics_port": 9101,
        "model": "models/default",
        "backend": "onnx",  # onnx | tensorrt | torch
        "precision": "",  # empty: the backend's default (onnx fp32, tensorrt fp16, torch fp32); onnx int8 = audio.int8.onnx
        "device": "",  # empty: the backend's default (onnx/torch cpu, tensorrt cuda); "cuda" or "cuda:N" for torch on a GPU
        "incremental": True,  # the incremental audio encoder when the model has it (scoreid.incremental); false: whole windows
        "threads": 1,  # intra-op CPU threads of the onnx backend (0: one per core); see BENCHMARKS.md "Encoder"
        "max_batch": 64,
        "max_wait_ms": 5.0,
        "batch_workers": 2,  # batches in flight at once (encode one while the last one searches/votes)
        "hop_s": engine.DEFAULT_HOP_S,  # seconds of audio between updates (a session may ask for its own)
        "k": engine.TOP_K,  # neighbours per window (votes)
        "search": "auto",  # who finds a window's neighbours: aggregator | index | auto (aggregator with an exact index)
        "workers": 64,
        "tls_cert": "",
        "tls_key": "",
        "token": "",  # bearer token required on the client-facing port when set; prefer token_file
        "token_file": "",
        "clients_file": "",  # YAML {client name: token} (mode 0600): named clients, each its own session cap
        "session_key": "",  # HMAC key of the sessions' resume tokens; prefer session_key_file (0600).
        "session_key_file": "",  # empty both: a random key per process (resume only on that process)
        "max_message_bytes": 1 << 20,
        "max_chunk_seconds": 10.0,
        "max_session_s": 3600.0,
        "max_sessions_per_client": 16,
        "max_sessions": 1000,
        "max_pending_streams": 32,  # streams that have not sent SessionOptions yet
        "options_timeout_s": 5.0,  # SessionOptions must arrive within this of the stream's start
        "idle_timeout_s": 30.0,  # a stream that sends nothing for this long is ended
        "keepalive_s": 20.0,  # HTTP/2 pings on idle connections; unanswered -> the connection is dropped
        "health_reserve": 16,  # concurrent RPCs kept free of streams (health checks, unary calls)
    },
}


def deep_merge(base: dict[str, Any], over: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``base`` updated by ``over`` recursively; keys absent from ``base`` are an error."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in out:
            if where == "redis." and k == "managed":
                continue  # derived, never read from a file
            raise UserError(f"unknown configuration key {where}{k}")
        if isinstance(out[k], dict) and out[k] and isinstance(v, Mapping):
            out[k] = deep_merge(out[k], v, f"{where}{k}.")
        elif isinstance(out[k], dict) and not isinstance(v, Mapping):
            raise UserError(f"configuration key {where}{k} must be a mapping")
        else:
            out[k] = copy.deepcopy(v)
    return out


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from ``SCOREID__A__B=value`` variables."""
    over: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = over
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return over


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults <- YAML file (optional) <- ``overrides`` (optional) <- environment. Returns a plain
    nested dict."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: no such configuration file")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise UserError(f"{p}: the configuration must be a mapping")
        cfg = deep_merge(cfg, data)
    if overrides:
        cfg = deep_merge(cfg, dict(overrides))
    cfg = deep_merge(cfg, env_overrides(os.environ if environ is None else environ))
    for svc in ("aggregator", "index"):
        if not cfg[svc]["address"]:
            cfg[svc]["address"] = f"{cfg['host']}:{cfg[svc]['port']}"
    if not cfg["redis"]["url"]:  # `scoreid up` starts (and `scoreid down` stops) this redis-server
        cfg["redis"]["url"] = f"redis://{cfg['host']}:{cfg['redis']['port']}/0"
        cfg["redis"]["managed"] = True
    # resolved (auto -> where) and checked with the configuration, not at the encoder's start
    cfg["encoder"]["search"] = search_place(cfg)
    return cfg


SEARCH_PLACES = ("auto", "aggregator", "index")


def search_place(cfg: dict[str, Any]) -> str:
    """Where the encoder's windows are searched: ``"aggregator"`` (in the vote call: one RPC per
    batch; exact search, so only for an ``exact`` index, whose answers it reproduces) or ``"index"``
    (Index.Search, then the vote). ``encoder.search: auto`` is the aggregator when the index
    backend is exact, the index otherwise."""
    place, backend = cfg["encoder"].get("search", "auto"), cfg["index"]["backend"]
    if place not in SEARCH_PLACES:
        raise UserError(f"encoder.search must be one of {', '.join(SEARCH_PLACES)}, got {place!r}")
    if place == "aggregator" and backend != "exact":
        raise UserError(
            f"encoder.search: aggregator searches exactly; the index serves {backend!r} (use index or auto)"
        )
    if place == "auto":
        return "aggregator" if backend == "exact" else "index"
    return str(place)


def secret(section: dict[str, Any], key: str) -> str:
    """A secret given inline (``key``) or in a file (``key_file``, read and stripped)."""
    if section.get(key):
        return str(section[key])
    path = section.get(f"{key}_file") or ""
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as e:
        raise UserError(f"cannot read {key}_file {path}: {e.strerror}") from None


def client_tokens(enc: dict[str, Any]) -> dict[str, str]:
    """Bearer token -> client name of the named clients: ``encoder.clients_file``, a YAML mapping of
    names to tokens that must not be readable by group or others (``encoder.token`` is a shared
    token: its callers are told apart by their address)."""
    out: dict[str, str] = {}
    shared = secret(enc, "token")
    path = enc.get("clients_file") or ""
    if path:
        p = Path(path).expanduser()
        try:
            if p.stat().st_mode & 0o077:
                raise UserError(f"clients_file {p} is readable by others; chmod 600 it")
            data = yaml.safe_load(p.read_text()) or {}
        except OSError as e:
            raise UserError(f"cannot read clients_file {p}: {e.strerror}") from None
        except yaml.YAMLError:
            raise UserError(f"clients_file {p}: not valid YAML") from None
        if not isinstance(data, dict):
            raise UserError(f"clients_file {p}: must map client names to tokens")
        for name, token in data.items():
            if not (
                isinstance(token, str)
                and len(token) >= 16
                and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", str(name))
            ):
                raise UserError(
                    f"clients_file {p}: client {str(name)[:64]!r} needs a name of letters, digits, "
                    "'_.-' and a token of at least 16 characters"
                )
            if token in out or token == shared:
                raise UserError(f"clients_file {p}: two clients share a token")
            out[token] = str(name)
    return out


def client_token(enc: dict[str, Any], name: str = "web") -> str:
    """The bearer token a client of the stack's ``encoder`` section sends: the named client
    ``name``'s (``encoder.clients_file``) when there is one, else the shared ``encoder.token``
    ("" = none required)."""
    for token, client in client_tokens(enc).items():
        if client == name:
            return token
    return secret(enc, "token")


def internal_token(cfg: dict[str, Any]) -> str:
    """The service-to-service bearer token ("" = internal calls are not authenticated)."""
    return secret(cfg["internal"], "token")


def redis_client(cfg: dict[str, Any]) -> Any:
    """A client of the configured Redis, with its password when one is set."""
    import redis

    r = cfg["redis"]
    return redis.Redis.from_url(
        r["url"],
        password=secret(r, "password") or None,
        socket_timeout=r["timeout_s"],
        socket_connect_timeout=r["timeout_s"],
    )
