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
    assert {"redis", "index", "aggregator", "encoder", "web"} <= set(compose["services"])
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
    assert public == ["50051:50051"]  # the encoder's port only; the page, metrics, dashboards on loopback
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


def _web_args(command: list[str]):
    """The deploy files' page-turner command parsed by the real ``scoreid`` parser (``python -m cli``
    is ``scoreid``): it must be ``scoreid web`` bridged to a stack, with nothing the bridge refuses."""
    from cli.dispatch import build_parser
    from cli.main import COMMAND_MODULES

    assert command[:4] == ["python", "-m", "cli", "web"], command
    args = build_parser("scoreid", "", COMMAND_MODULES).parse_args(command[3:])
    assert args.command == "web" and args._run.__module__ == "cli.commands.web"
    # what stack_app_parts refuses beside --stack, and a CA given on the command line
    assert args.lib is None and args.model is None and args.backend is None and args.tls_ca is None
    return args


def _secret_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins of the secret files a deploy file mounts, by their name in it."""
    web_token = "web-client-token-0123456789"
    files = {
        "clients": "alice: alice-client-token-0123456789\nweb: web-client-token-0123456789\n",
        "web-client": f"web: {web_token}\n",  # the page-turner's entry of clients.yaml only
        "tls-cert": "-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n",
    }
    out = {}
    for name, text in files.items():
        out[name] = tmp_path / name
        out[name].write_text(text)
        out[name].chmod(0o600)
    return out


def _library_stand_in(tmp_path: Path) -> Path:
    lib = tmp_path / "library"
    lib.mkdir()
    (lib / "library.json").write_text("{}")  # all stack_target looks at
    return lib


def test_compose_serves_the_page_turner_bridged_to_the_encoder(tmp_path):
    """deploy/compose.yaml's ``web``: ``scoreid web --stack encoder:50051`` (its command parses with
    the real parser), on the public network only, published on the host's loopback only, a
    read-only container with the library read-only, its credentials file secrets — the `web`
    client's token and the encoder's certificate as the CA, never an env value or an argument —
    which its configuration resolves to the token and CA the bridge sends (:func:`stack_target`)."""
    from ops.config import client_token
    from web.stack_target import stack_target

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    web, enc = compose["services"]["web"], compose["services"]["encoder"]
    args = _web_args(web["command"])
    assert args.stack == "encoder:50051" and "50051:50051" in enc["ports"] and "encoder" in web["depends_on"]
    assert args.host == "0.0.0.0" and args.port == 8000
    assert web["ports"] == ["127.0.0.1:8000:8000"]  # the host's loopback: a TLS proxy serves browsers
    assert web["networks"] == ["public"] and "public" in enc["networks"]  # no backend: the encoder only
    assert " ".join(web["healthcheck"]["test"]).count("http://127.0.0.1:8000/healthz") == 1
    assert web["read_only"] is True and web["image"] == enc["image"]
    mounts = {v.split(":")[1]: v for v in web["volumes"]}
    assert mounts[args.config].endswith(":ro") and "./libraries:/app/libraries:ro" in web["volumes"]
    assert all(v.endswith(":ro") for v in web["volumes"]), web["volumes"]
    secrets = {s["source"]: s for s in web["secrets"]}
    assert set(secrets) == {"web_client", "tls_cert"}  # no internal token, no key, not every client's token
    assert all(s["mode"] == 0o400 for s in secrets.values())
    env = web["environment"]
    assert set(env) == {"SCOREID__ENCODER__CLIENTS_FILE", "SCOREID__ENCODER__TLS_CERT"}
    assert {v.removeprefix("/run/secrets/") for v in env.values()} == set(secrets)
    assert env["SCOREID__ENCODER__TLS_CERT"] == enc["environment"]["SCOREID__ENCODER__TLS_CERT"]
    assert compose["secrets"]["web_client"] != compose["secrets"]["clients"]

    # the web's configuration: the shipped file, its environment with the secrets at stand-in paths
    files = _secret_files(tmp_path)
    where = {"/run/secrets/web_client": files["web-client"], "/run/secrets/tls_cert": files["tls-cert"]}
    environ = {k: str(where[v]) for k, v in env.items()}
    environ["SCOREID__INDEX__LIBRARIES"] = f"{{default: {_library_stand_in(tmp_path)}}}"
    cfg = load_config(DEPLOY / "scoreid.yaml", environ=environ)
    assert client_token(cfg["encoder"]) == "web-client-token-0123456789"
    target = stack_target(args.stack, cfg, args.library, args.hop, args.tls_ca)
    assert target.address == "encoder:50051" and target.tls_ca == files["tls-cert"].read_bytes()
    assert target.metadata == (("authorization", "Bearer web-client-token-0123456789"),)
    # the same entry in the encoder's clients file: the encoder knows the page's server as `web`
    enc_cfg = load_config(None, environ={"SCOREID__ENCODER__CLIENTS_FILE": str(files["clients"])})
    assert client_token(enc_cfg["encoder"]) == target.token


def test_kubernetes_serves_the_page_turner_behind_the_ingress(tmp_path):
    """deploy/k8s/scoreid.yaml's ``web`` Deployment, Service and NetworkPolicy: the same command,
    health probes on /healthz, a read-only root file system, no credential in the environment, the
    ConfigMap's clients_file and tls_cert mounted from secrets (the `web` client's entry only, the
    certificate without its key), the data volume read-only; a ClusterIP Service reached only from
    the ingress controller; it calls only the encoder's public port."""
    from web.stack_target import stack_target

    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "scoreid.yaml").read_text()))
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    pod = by[("Deployment", "web")]["spec"]["template"]
    assert by[("Deployment", "web")]["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    (c,) = pod["spec"]["containers"]
    args = _web_args(c["command"])
    assert args.stack == "encoder:50051" and args.host == "0.0.0.0" and args.port == 8000
    assert by[("Service", "encoder")]["spec"]["ports"][0]["port"] == 50051
    assert c["ports"] == [{"containerPort": 8000, "name": "http"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": 8000}, probe
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not c.get("env") and not c.get("envFrom")  # credentials are mounted files
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert all(v["secret"]["defaultMode"] == 0o400 for v in vols.values() if "secret" in v)
    assert {
        vols[m["name"]]["secret"]["secretName"] for m in mounts.values() if "secret" in vols[m["name"]]
    } == {
        "scoreid-web-client",
        "scoreid-tls",
    }
    assert vols["tls"]["secret"]["items"] == [{"key": "tls.crt", "path": "tls.crt"}]  # not the key
    assert mounts["/data"]["readOnly"] and vols["data"]["persistentVolumeClaim"]["readOnly"]
    assert vols[mounts["/tmp"]["name"]]["emptyDir"]
    assert vols[mounts[str(Path(args.config).parent)]["name"]]["configMap"]["name"] == "scoreid-config"

    # the ConfigMap's paths the bridge reads lie in the web container's mounts (secrets read-only)
    inner = yaml.safe_load(by[("ConfigMap", "scoreid-config")]["data"]["scoreid.yaml"])
    enc = inner["encoder"]
    for path, volume in (
        (enc["clients_file"], "web-client"),
        (enc["tls_cert"], "tls"),
        (inner["index"]["libraries"]["default"], "data"),
    ):
        mount = next(m for p, m in mounts.items() if path.startswith(p + "/"))
        assert mount["name"] == volume and mount["readOnly"], path
    assert Path(enc["clients_file"]).name == "clients.yaml" and Path(enc["tls_cert"]).name == "tls.crt"
    files = _secret_files(tmp_path)
    (tmp_path / "tls.crt").write_bytes(files["tls-cert"].read_bytes())
    cfg = load_config(
        None,
        overrides=inner,
        environ={
            "SCOREID__ENCODER__CLIENTS_FILE": str(files["web-client"]),
            "SCOREID__ENCODER__TLS_CERT": str(tmp_path / "tls.crt"),
            "SCOREID__INDEX__LIBRARIES": f"{{default: {_library_stand_in(tmp_path)}}}",
        },
    )
    target = stack_target(args.stack, cfg)
    assert target.token == "web-client-token-0123456789" and target.tls_ca == files["tls-cert"].read_bytes()

    svc = by[("Service", "web")]["spec"]
    assert svc["selector"] == {"app": "web"} and svc["ports"][0]["targetPort"] == 8000
    assert svc.get("type", "ClusterIP") == "ClusterIP"  # reached through the ingress, never directly
    policies = {n: d["spec"] for (k, n), d in by.items() if k == "NetworkPolicy"}
    web_in = [p for p in policies.values() if p["podSelector"] == {"matchLabels": {"app": "web"}}]
    assert len(web_in) == 1 and all(
        r.get("from") and r["ports"] == [{"port": 8000}] for r in web_in[0]["ingress"]
    )  # from the ingress controller only
    assert policies["encoder-public"]["ingress"] == [{"ports": [{"port": 50051}]}]  # the web reaches it
    for name in ("internals-from-encoder", "redis-from-aggregator"):
        assert "web" not in json.dumps(policies[name]), name  # not the internals


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


def test_where_windows_are_searched_follows_the_index_backend_and_a_bad_choice_is_one_line():
    from ops.config import search_place

    assert search_place(load_config(environ={})) == "aggregator"  # the default: exact index, auto
    assert load_config(environ={}, overrides={"index": {"backend": "faiss"}})["encoder"]["search"] == "index"
    faiss = {"index": {"backend": "faiss"}}
    assert search_place(load_config(environ={}, overrides=faiss)) == "index"
    assert search_place(load_config(environ={}, overrides={"encoder": {"search": "index"}})) == "index"
    with pytest.raises(UserError, match="searches exactly"):  # refused with the configuration
        load_config(environ={}, overrides={**faiss, "encoder": {"search": "aggregator"}})
    with pytest.raises(UserError, match="encoder.search must be one of"):
        load_config(environ={"SCOREID__ENCODER__SEARCH": "redis"})


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
