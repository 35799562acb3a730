"""Service configuration (YAML + env overrides), the shipped deploy files, and the metrics endpoint."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml
from svc_helpers import free_port

from ops import metrics
from ops.config import DEFAULTS, load_config
from scoreid.errors import UserError
from scoreid.identify import engine, tally

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_defaults_file_and_env_overrides(tmp_path):
    cfg = load_config(None, environ={})
    assert cfg["redis"]["managed"] and cfg["redis"]["url"] == "redis://127.0.0.1:6391/0"
    assert cfg["aggregator"]["address"] == "127.0.0.1:50053"
    f = tmp_path / "c.yaml"
    f.write_text("encoder: {max_batch: 8}\nredis: {url: 'redis://h:1/0'}\n")
    cfg = load_config(
        f, environ={"SCOREID__ENCODER__MAX_WAIT_MS": "2.5", "SCOREID__INDEX__LIBRARIES": "{a: /x}"}
    )
    assert cfg["encoder"]["max_batch"] == 8 and cfg["encoder"]["max_wait_ms"] == 2.5
    assert cfg["index"]["libraries"] == {"a": "/x"} and not cfg["redis"]["managed"]
    f.write_text("encoder: {max_bach: 8}\n")
    with pytest.raises(UserError, match="encoder.max_bach"):
        load_config(f, environ={})
    f.write_text("- a list\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(f, environ={})
    with pytest.raises(UserError, match="no such"):
        load_config(tmp_path / "missing.yaml", environ={})


def test_engine_defaults_are_the_engines_in_the_service_config_and_the_shipped_file():
    """The service defaults read the engine's constants, and deploy/scoreid.yaml (which documents
    every key) writes the same values, so a change of the engine's defaults cannot leave the
    services or the shipped config behind."""
    want = {
        ("aggregator", "half_life_s"): tally.DEFAULT_HALF_LIFE_S,
        ("aggregator", "vote_temperature"): tally.VOTE_TEMPERATURE,
        ("aggregator", "sequence_weight"): engine.SEQUENCE_WEIGHT,
        ("aggregator", "candidates"): engine.CANDIDATES,
        ("aggregator", "evidence"): engine.EVIDENCE,
        ("index", "k"): engine.TOP_K,
        ("encoder", "k"): engine.TOP_K,
        ("encoder", "hop_s"): engine.EngineSettings().hop_s,
    }
    shipped = yaml.safe_load((DEPLOY / "scoreid.yaml").read_text())
    for (section, key), value in want.items():
        assert DEFAULTS[section][key] == value, (section, key)
        assert shipped[section][key] == value, (section, key)


def test_the_engine_settings_are_read_whole_from_the_config():
    """``EngineSettings.from_config``: the defaults give the engine's defaults, and each engine key of
    the file (the encoder's hop, the aggregator's engine keys) reaches its field."""
    assert engine.EngineSettings.from_config(load_config(None, environ={})) == engine.EngineSettings()
    env = {
        "SCOREID__ENCODER__HOP_S": "0.25",
        "SCOREID__AGGREGATOR__HALF_LIFE_S": "8",
        "SCOREID__AGGREGATOR__VOTE_TEMPERATURE": "inf",
        "SCOREID__AGGREGATOR__SEQUENCE_WEIGHT": "0",
        "SCOREID__AGGREGATOR__CANDIDATES": "3",
        "SCOREID__AGGREGATOR__EVIDENCE": "piece",
    }
    got = engine.EngineSettings.from_config(load_config(None, environ=env))
    assert got == engine.EngineSettings(
        hop_s=0.25,
        half_life=8.0,
        vote_temperature=float("inf"),
        sequence_weight=0.0,
        candidates=3,
        evidence="piece",
    )
    with pytest.raises(ValueError, match="candidates"):
        engine.EngineSettings.from_config(load_config(None, environ={"SCOREID__AGGREGATOR__CANDIDATES": "0"}))


def test_the_shipped_file_documents_every_key():
    """deploy/scoreid.yaml names every configuration key (README: "documents every key"), except
    ``redis.managed``, which load_config derives."""

    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            nested = isinstance(v, dict) and v and k != "libraries"  # libraries: a name -> dir map
            out |= keys(v, f"{prefix}{k}.") if nested else {f"{prefix}{k}"}
        return out

    shipped = yaml.safe_load((DEPLOY / "scoreid.yaml").read_text())
    missing = keys(DEFAULTS) - {"redis.managed"} - keys(shipped)
    assert not missing, sorted(missing)


def test_shipped_configs_load():
    assert load_config(DEPLOY / "scoreid.yaml", environ={})["index"]["libraries"]
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "scoreid.yaml").read_text()))
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    inner = DEPLOY / "k8s-config.yaml"
    try:
        inner.write_text(cm["data"]["scoreid.yaml"])
        assert load_config(inner, environ={})["redis"]["url"] == "redis://redis:6379/0"
    finally:
        inner.unlink()
    assert "appendonly yes" in cm["data"]["redis.conf"]
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "StatefulSet", "HorizontalPodAutoscaler"}
    assert re.search(r"^appendonly yes$", (DEPLOY / "redis" / "redis.conf").read_text(), re.M)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"redis", "index", "aggregator", "encoder"} <= set(compose["services"])
    assert yaml.safe_load((DEPLOY / "k8s" / "milvus.yaml").read_text())["kind"] == "Milvus"


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from a secret>") for e in container.get("env", [])}


def test_deploy_files_carry_the_security_of_the_stack():
    """The security of the stack in the deploy files: Redis with a password and no unprotected bind, internal services reachable only
    from where they are called, every credential a file secret (never an env value or an argument),
    TLS on the one public port, bounded Redis memory that never evicts live sessions."""
    conf = (DEPLOY / "redis" / "redis.conf").read_text()
    assert re.search(r"^maxmemory \d+[kmg]b$", conf, re.M) and re.search(
        r"^maxmemory-policy noeviction$", conf, re.M
    )
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    text = (DEPLOY / "compose.yaml").read_text()
    assert "protected-mode no" not in text.replace('"', "").replace(",", "")
    assert (
        "requirepass" in " ".join(services["redis"]["entrypoint"]) and "/run/secrets/redis_password" in text
    )
    assert compose["networks"]["backend"] == {"internal": True}
    for name in ("redis", "index", "aggregator"):
        assert services[name]["networks"] == ["backend"] and "ports" not in services[name], name
    public = [
        p for name, svc in services.items() for p in svc.get("ports", []) if not p.startswith("127.0.0.1:")
    ]
    assert public == ["50051:50051"]  # the encoder's port only; metrics and dashboards on loopback
    for name, svc in services.items():
        env = svc.get("environment", {})
        assert not [k for k in env if re.search(r"TOKEN$|PASSWORD$|KEY$", k) and not k.endswith("TLS_KEY")], (
            name
        )
        for secret in svc.get("secrets", []):
            src = secret["source"] if isinstance(secret, dict) else secret
            assert src in compose["secrets"], (name, src)
    enc = services["encoder"]["environment"]
    assert enc["SCOREID__ENCODER__TLS_CERT"] and enc["SCOREID__ENCODER__CLIENTS_FILE"]
    assert "SCOREID__ALLOW_INSECURE" not in enc
    assert services["aggregator"]["environment"]["SCOREID__REDIS__PASSWORD_FILE"].startswith("/run/secrets/")

    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "scoreid.yaml").read_text()))
    k8s_text = (DEPLOY / "k8s" / "scoreid.yaml").read_text()
    assert "--protected-mode" not in k8s_text and "kind: Secret\n" not in k8s_text  # no secret values here
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    cm = by[("ConfigMap", "scoreid-config")]
    inner = yaml.safe_load(cm["data"]["scoreid.yaml"])
    assert inner["internal"]["token_file"] and inner["redis"]["password_file"]
    assert (
        inner["encoder"]["tls_cert"]
        and inner["encoder"]["clients_file"]
        and inner["encoder"]["session_key_file"]
    )
    assert (
        "maxmemory-policy noeviction" in cm["data"]["redis.conf"] and "maxmemory " in cm["data"]["redis.conf"]
    )
    redis = by[("StatefulSet", "redis")]["spec"]["template"]["spec"]["containers"][0]
    assert "requirepass" in " ".join(redis["command"]) and "--requirepass" not in " ".join(redis["command"])
    for kind, name in (("Deployment", "index"), ("Deployment", "aggregator"), ("Deployment", "encoder")):
        c = by[(kind, name)]["spec"]["template"]["spec"]["containers"][0]
        env = _env(c)
        assert not [k for k in env if re.search(r"TOKEN|PASSWORD", k)], name  # credentials are mounted files
        assert ("SCOREID__ALLOW_INSECURE" in env) == (name != "encoder"), name
        vols = by[(kind, name)]["spec"]["template"]["spec"]["volumes"]
        assert all(v["secret"]["defaultMode"] == 0o400 for v in vols if "secret" in v), name
    policies = {n: d["spec"] for (k, n), d in by.items() if k == "NetworkPolicy"}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert policies["redis-from-aggregator"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app": "aggregator"}}}
    ]
    assert policies["internals-from-encoder"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app": "encoder"}}}
    ]
    # the shipped configs pass the services' own start-up check (TLS or an explicit allow_insecure)
    from ops.grpc_server import check_transport

    check_transport("encoder", inner["host"], True, bool(inner["encoder"]["tls_cert"]), False)


def test_dashboard_queries_only_metrics_that_exist():
    dash = json.loads((DEPLOY / "grafana" / "scoreid-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = set(re.findall(r"scoreid_[a-z_]+", " ".join(exprs)))
    known = set()
    for m in (
        metrics.STAGE_SECONDS,
        metrics.RPC_SECONDS,
        metrics.ERRORS,
        metrics.ACTIVE_SESSIONS,
        metrics.UPDATES,
        metrics.BATCH_SIZE,
        metrics.QUEUE_DEPTH,
        metrics.REDIS_SECONDS,
        metrics.INDEX_VECTORS,
        metrics.SESSIONS,
    ):
        for fam in m.collect():
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}.get(
                fam.type, ("",)
            )
            known |= {fam.name + s for s in suffixes}
    assert names and names <= known, names - known
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert len(prom["scrape_configs"]) >= 3
    k8s = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-k8s.yml").read_text())
    (job,) = k8s["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}] and job["honor_labels"] is True


def test_metrics_endpoint_serves_stage_histograms():
    port = free_port()
    metrics.serve_metrics(port)
    with metrics.timed("encoder", "resample"):
        pass
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'scoreid_stage_seconds_bucket{le="0.0005",service="encoder",stage="resample"}' in body


def test_up_without_a_library_points_at_the_demo_and_bad_inputs_are_one_line(tmp_path, monkeypatch):
    import subprocess
    import sys

    from ops.stack import start_stack

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.json").write_text("{}")
    cfg = load_config(
        None, environ={"SCOREID__STATE_DIR": str(tmp_path / "state"), "SCOREID__ENCODER__MODEL": str(model)}
    )
    with pytest.raises(UserError, match="scoreid demo"):
        start_stack(cfg)
    env = {
        "SCOREID__STATE_DIR": str(tmp_path / "state"),
        "PATH": "/usr/bin:/bin",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    shipped = (ROOT / "models" / "default" / "manifest.json").is_file()
    no_model = (
        "run `scoreid demo` once" if shipped else "model models/default not found"
    )  # no demo library yet
    for args, text in ((["up"], no_model), (["down"], "no stack is running")):
        r = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
        )
        assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr


def test_there_is_one_encoder_front_and_a_config_choosing_one_is_refused_at_start(tmp_path):
    import subprocess
    import sys

    shipped = yaml.safe_load((DEPLOY / "scoreid.yaml").read_text())
    assert "server" not in DEFAULTS["encoder"] and "server" not in shipped["encoder"]
    env = {
        "SCOREID__ENCODER__SERVER": "threads",
        "SCOREID__ENCODER__PORT": str(free_port()),
        "SCOREID__ENCODER__METRICS_PORT": "0",
        "PATH": "/usr/bin:/bin",
    }
    r = subprocess.run(
        [sys.executable, "-m", "encoder_svc"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert r.returncode == 2 and "encoder.server" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
