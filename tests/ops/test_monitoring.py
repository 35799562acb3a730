"""The monitoring of deploy/, run for real: Debian's ``prometheus`` scrapes a real stack under load,
and every query of the Grafana dashboard returns data through Prometheus's HTTP API.

A real stack (redis-server + the three services on free loopback ports, a randomly initialised
model exported in the test and a one-piece library) is scraped every second by the real
``/usr/bin/prometheus`` (installed by ``./setup.sh``) with a configuration generated from
``deploy/prometheus/prometheus.yml``: the same static jobs, labels and metric paths, each target
rewritten to the metrics port its service got here. Clients stream the committed recording in two
rounds (a first one that creates every series, then three concurrent streams, each round with one
request that fails, for the error panel); then every scrape target must be ``up`` and every PromQL
expression of ``deploy/grafana/scoreid-dashboard.json`` must evaluate to a non-empty result with a
finite value. Neither process depends on a fixed port (no :9090, no 9101-9103).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from svc_helpers import cli, free_port, terminate

from cli.client import stream_audio
from ops.config import load_config
from ops.stack import loopback_config, start_stack, stop_stack
from scoreid.audio.io import load_audio
from scoreid.contract import SAMPLE_RATE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RECORDING = ROOT / "tests" / "data" / "chopin-mazurka06-2-20s.flac"
PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_S = 1
SERVICES = ("encoder", "index", "aggregator")
# Grafana's built-in interval variables, as Grafana would expand them at a 1 s scrape interval
GRAFANA_INTERVALS = {"__rate_interval": "30s", "__interval": "15s", "__range": "5m"}


# ---------------------------------------------------------------- the dashboard and the config
def dashboard_queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, rows' nested panels included."""

    def panels(ps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    return [
        (p.get("title", "?"), t["expr"])
        for p in panels(dash["panels"])
        for t in p.get("targets", [])
        if t.get("expr")
    ]


def substitute_variables(expr: str, dash: dict[str, Any]) -> str:
    """The expression with Grafana's variables replaced: interval variables by a duration, the
    dashboard's template variables by a regex matching every value (their matchers become ``=~``)."""
    for name, value in GRAFANA_INTERVALS.items():
        expr = re.sub(r"\$\{" + name + r"\}|\$" + name + r"\b", value, expr)
    for var in dash.get("templating", {}).get("list", []):
        name = re.escape(var["name"])
        matcher = r'(\w+)\s*(=~|!~|=|!=)\s*"\$\{?' + name + r'(:\w+)?\}?"'
        expr = re.sub(matcher, lambda m: m.group(1) + ("!~" if m.group(2)[0] == "!" else "=~") + '".*"', expr)
        expr = re.sub(r"\$\{" + name + r"(:\w+)?\}|\$" + name + r"\b", ".*", expr)
    assert "$" not in expr, f"a dashboard variable this test does not know: {expr}"
    return expr


def prometheus_config(shipped: dict[str, Any], metrics_ports: dict[str, int], host: str) -> dict[str, Any]:
    """``shipped`` (deploy/prometheus/prometheus.yml) for this stack: its static jobs with their
    labels and paths, each target pointed at its service's metrics port here, scraped every second."""
    jobs = []
    for job in shipped["scrape_configs"]:
        if "static_configs" not in job:
            continue
        job = json.loads(json.dumps(job))
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        for sc in job["static_configs"]:
            service = sc.get("labels", {}).get("service")
            assert service in metrics_ports, f"job {job['job_name']}: no service label of {SERVICES}"
            sc["targets"] = [f"{host}:{metrics_ports[service]}"]
        jobs.append(job)
    glob = {**shipped.get("global", {}), "scrape_interval": f"{SCRAPE_S}s", "scrape_timeout": f"{SCRAPE_S}s"}
    return {"global": glob, "scrape_configs": jobs}


def test_shipped_scrape_targets_are_the_shipped_metrics_ports():
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    cfg = load_config(DEPLOY / "scoreid.yaml", environ={})
    seen = {}
    for job in shipped["scrape_configs"]:
        for sc in job.get("static_configs", []):
            (target,) = sc["targets"]
            seen[sc["labels"]["service"]] = target
    assert seen == {s: f"{cfg['host']}:{cfg[s]['metrics_port']}" for s in SERVICES}


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-compose.yml"])
def test_shipped_scrape_configs_load_in_debian_prometheus(name):
    """promtool (Debian's prometheus package) accepts the scrape configs a user runs as shipped."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run ./setup.sh (Debian package prometheus)"
    res = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_variable_substitution():
    dash = {"templating": {"list": [{"name": "instance"}, {"name": "datasource"}]}}
    assert (
        substitute_variables('rate(x{instance="$instance",a="b"}[$__rate_interval])', dash)
        == 'rate(x{instance=~".*",a="b"}[30s])'
    )
    assert substitute_variables('x{instance!="${instance}"}[$__interval]', dash) == 'x{instance!~".*"}[15s]'
    with pytest.raises(AssertionError, match="does not know"):
        substitute_variables('x{a=~"$other"}', dash)


# ---------------------------------------------------------------- Prometheus over HTTP
def get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


class Prometheus:
    def __init__(self, binary: str, config: Path, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "prometheus.log"
        cmd = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"prometheus not ready within {timeout:g} s:\n{self.tail()}")

    def query(self, expr: str) -> dict[str, Any]:
        return get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))

    def targets(self) -> list[dict[str, Any]]:
        r = get_json(f"{self.url}/api/v1/targets?state=active")
        assert r["status"] == "success", r
        return r["data"]["activeTargets"]

    def wait_scraped_after(
        self, t_wall: float, n_targets: int, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Wait until every target was scraped (successfully) after ``t_wall`` (time.time())."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = self.targets()
            if len(targets) == n_targets and all(
                t["health"] == "up" and scrape_time(t["lastScrape"]) > t_wall + 0.1 for t in targets
            ):
                return targets
            time.sleep(0.25)
        pytest.fail(
            f"not every target was scraped after the load within {timeout:g} s: "
            f"{[(t['labels'], t['health'], t['lastScrape'], t['lastError']) for t in targets]}"
        )

    def stop(self) -> None:
        terminate(self.proc, 15)


def scrape_time(stamp: str) -> float:
    """Prometheus's lastScrape (RFC 3339 with nanoseconds) as a Unix time."""
    from datetime import datetime

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp)
    assert m, stamp
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return base.timestamp() + float(m.group(2) or 0)


def finite_values(result: dict[str, Any]) -> list[float]:
    data = result.get("data", {})
    rows = data.get("result", [])
    if data.get("resultType") == "scalar":
        rows = [{"value": rows}]
    return [float(r["value"][1]) for r in rows if math.isfinite(float(r["value"][1]))]


# ---------------------------------------------------------------- the load
def stream(address: str, audio: np.ndarray, speed: float, **kw: Any) -> int:
    msgs = list(stream_audio(address, audio, SAMPLE_RATE, speed=speed, timeout=120, **kw))
    assert msgs and msgs[-1].final
    return len(msgs)


def failing_stream(address: str, audio: np.ndarray) -> None:
    """A stream for a library the index does not have: NOT_FOUND, counted in the errors panel."""
    with pytest.raises(grpc.RpcError) as e:
        stream(address, audio, speed=0, library="no-such-library")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value


def concurrent_streams(address: str, pieces: list[np.ndarray], speed: float) -> None:
    errors: list[BaseException] = []

    def run(x: np.ndarray) -> None:
        try:
            stream(address, x, speed)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(x,), daemon=True) for x in pieces]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads), "a stream did not finish within 180 s"
    assert not errors, errors


@pytest.fixture(scope="module")
def one_piece_lib(tmp_path_factory, sheets_dir, random_model) -> Path:
    sheets = tmp_path_factory.mktemp("one-piece")
    shutil.copytree(sheets_dir / "schoenberg-19-2", sheets / "schoenberg-19-2")
    out = tmp_path_factory.mktemp("lib") / "lib"
    r = cli("library", "build", sheets, "--out", out, "--model", random_model, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def test_prometheus_scrapes_a_loaded_stack_and_every_dashboard_query_returns_data(
    tmp_path, one_piece_lib, random_model
):
    if not Path(PROMETHEUS).is_file():
        pytest.fail(f"{PROMETHEUS} is missing: run ./setup.sh (it installs Debian's prometheus package)")
    dash = json.loads((DEPLOY / "grafana" / "scoreid-dashboard.json").read_text())
    queries = [(title, substitute_variables(expr, dash)) for title, expr in dashboard_queries(dash)]
    assert queries, "the dashboard has no queries"
    audio = load_audio(RECORDING)
    sr = SAMPLE_RATE

    state = tmp_path / "state"
    cfg = load_config(
        None, environ={}, overrides=loopback_config(state, random_model, {"test": one_piece_lib})
    )
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    prom_cfg = prometheus_config(shipped, {s: cfg[s]["metrics_port"] for s in SERVICES}, cfg["host"])
    n_targets = sum(len(sc["targets"]) for job in prom_cfg["scrape_configs"] for sc in job["static_configs"])
    assert n_targets == len(SERVICES)
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(prom_cfg, sort_keys=False))

    prom: Prometheus | None = None
    record = start_stack(cfg)
    try:
        prom = Prometheus(PROMETHEUS, config_file, tmp_path / "prometheus")
        prom.wait_ready()
        prom.wait_scraped_after(time.time(), n_targets)
        # round 1: one stream and one failure, so that every series exists before round 2 moves it
        address = record["address"]
        stream(address, audio[: 5 * sr], speed=0)
        failing_stream(address, audio[:sr])
        prom.wait_scraped_after(time.time(), n_targets)
        # round 2: three concurrent streams spanning several scrapes, and another failure
        concurrent_streams(address, [audio[i * 4 * sr : (i * 4 + 8) * sr] for i in range(3)], speed=2.0)
        failing_stream(address, audio[:sr])
        targets = prom.wait_scraped_after(time.time(), n_targets)
        assert sorted(t["labels"]["service"] for t in targets) == sorted(SERVICES)
        assert all(t["health"] == "up" and not t["lastError"] for t in targets), targets

        empty: list[str] = []
        for title, expr in queries:
            deadline = time.monotonic() + 15
            while True:
                r = prom.query(expr)
                assert r["status"] == "success", (title, expr, r)
                if finite_values(r) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if not finite_values(r):
                empty.append(f"{title}: {expr} -> {r['data']}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
        # the load is visible as what it was: 6 streams opened (1 + 3, and the 2 failed ones, counted
        # when admitted, before the library check), errors by service and code, the library's vectors
        opened = finite_values(prom.query('sum(scoreid_sessions_total{service="encoder"})'))
        assert opened == [6.0], opened
        codes = prom.query("sum by (service, code) (scoreid_errors_total)")["data"]["result"]
        assert {(c["metric"]["service"], c["metric"]["code"]) for c in codes} >= {("encoder", "NOT_FOUND")}
        assert finite_values(prom.query("sum(scoreid_index_vectors)"))[0] > 0
    finally:
        if prom is not None:
            prom.stop()
        stop_stack(state)
