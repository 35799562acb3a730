"""Running the whole service stack locally: ``scoreid up`` / ``scoreid down``.

``start_stack(cfg)`` launches redis-server on a private port (AOF on, data under
``state_dir/redis``) unless ``redis.url`` points at an existing one, then the index, aggregator and
encoder services as detached processes (``python -m <svc> --config state_dir/config.yaml``, logs
in ``state_dir/logs/``), waits until each answers its gRPC health check, starts the supervisor
(:mod:`ops.supervisor`: restarts any of them that dies) and records the pids and command
lines in ``state_dir/stack.json``. With ``web=(host, port)`` it also serves the page-turner beside
the stack (``scoreid web --stack ADDRESS --config state_dir/config.yaml``, log ``logs/web.log``),
a process of the stack like the others: supervised, and stopped by ``scoreid down``.
``stop_stack(state_dir)`` stops the supervisor, then the rest in reverse order (SIGTERM, then
SIGKILL after a timeout), checking each pid is still the process it started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ops.blas import single_thread_blas
from ops.cache import demo_cache
from ops.config import internal_token, secret
from scoreid.errors import UserError

REPO = Path(__file__).resolve().parents[1]
STACK_FILE = "stack.json"
SERVICES = (("index", "index_svc"), ("aggregator", "aggregator_svc"), ("encoder", "encoder_svc"))


def _alive(pid: int, marker: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmd


def read_stack(state_dir: Path) -> dict[str, Any] | None:
    p = state_dir / STACK_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A stack process: ``cmd`` from the repository root in its own session (``scoreid down`` stops
    it by its group), its output appended to ``log``."""
    return subprocess.Popen(
        cmd, env=env, cwd=str(REPO), stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _tcp_ready(host: str, port: int, timeout: float) -> bool:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on loopback (held open together, so they differ)."""
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or p.exists() else REPO / p


def demo_library(model: Path) -> Path:
    """The library `scoreid demo` builds (and caches) for ``model``: served when none is configured."""
    from scoreid.tensors import model_fingerprint

    lib = demo_cache() / f"library-{model_fingerprint(model)[:12]}"
    if not (lib / "library.json").is_file():
        raise UserError(
            f"no library configured and no demo library at {lib}: run `scoreid demo` once "
            "(it builds it), or set index.libraries {name: LIB_DIR} in a config file"
        )
    return lib


def served_libraries(cfg: dict[str, Any]) -> dict[str, Path]:
    """The libraries a stack of ``cfg`` serves, by name, their directories resolved: the index's
    ``libraries``, or without any the demo library of the encoder's model (UserError: not built)."""
    libraries = cfg["index"]["libraries"]
    if not libraries:
        return {"demo": demo_library(_resolve(str(cfg["encoder"]["model"])))}
    return {name: _resolve(str(lib)) for name, lib in libraries.items()}


def loopback_config(
    state_dir: str | Path,
    model: str | Path,
    libraries: Mapping[str, str | Path],
    **sections: Mapping[str, Any],
) -> dict[str, Any]:
    """A `scoreid up` configuration (overrides on the defaults, for :func:`load_config` or a YAML
    file) running everything on this machine: redis-server and each service on its own free
    loopback port (metrics too), state in ``state_dir``, ``model`` on the encoder, ``libraries``
    ({name: library dir}) on the index. ``sections`` ({"encoder": {...}, ...}) add to a section."""
    p = free_ports(7)
    cfg: dict[str, Any] = {
        "state_dir": str(state_dir),
        "redis": {"port": p[0]},
        "aggregator": {"port": p[1], "metrics_port": p[2]},
        "index": {"port": p[3], "metrics_port": p[4], "libraries": {k: str(v) for k, v in libraries.items()}},
        "encoder": {"port": p[5], "metrics_port": p[6], "model": str(model)},
    }
    for name, extra in sections.items():
        cfg.setdefault(name, {}).update(extra)
    return cfg


def start_stack(
    cfg: dict[str, Any], timeout: float = 120.0, web: tuple[str, int] | None = None
) -> dict[str, Any]:
    """Start everything; returns the stack record (``address`` is the client-facing host:port;
    with ``web`` = (host, port; 0: a free one), ``web`` is the page's URL)."""
    from ops.grpc_server import wait_healthy

    state = Path(cfg["state_dir"]).expanduser().resolve()
    current = read_stack(state)
    if current and any(_alive(p["pid"], p["marker"]) for p in current["processes"]):
        raise UserError(
            f"a stack is already running from {state} (address {current['address']}); run `scoreid down`"
        )
    model = _resolve(str(cfg["encoder"]["model"]))
    if not (model / "manifest.json").is_file():
        raise UserError(
            f"model {cfg['encoder']['model']} not found (no manifest.json); export one with trainer/run.py export"
        )
    cfg = json.loads(json.dumps(cfg))  # a copy with resolved paths for the children
    cfg["encoder"]["model"] = str(model)
    libraries = served_libraries(cfg)
    for name, lib in libraries.items():
        if not (lib / "library.json").is_file():
            shown = cfg["index"]["libraries"].get(name, lib)
            raise UserError(
                f"library {name!r}: {shown} is not a library directory (build one with `scoreid library build`)"
            )
    cfg["index"]["libraries"] = {n: str(p) for n, p in libraries.items()}
    cfg["state_dir"] = str(state)
    state.mkdir(parents=True, exist_ok=True)
    logs = private_dir(state / "logs")  # logs name sessions: readable by the stack's user only
    secrets_dir = private_dir(state / "secrets")
    if not internal_token(cfg):  # index and aggregator accept calls only with it (the encoder has it)
        cfg["internal"]["token_file"] = str(ensure_secret(secrets_dir / "internal.token"))
    if not secret(cfg["encoder"], "session_key"):  # resume tokens stay valid across encoder restarts
        cfg["encoder"]["session_key_file"] = str(ensure_secret(secrets_dir / "session.key"))
    if cfg["redis"].get("managed") and not secret(cfg["redis"], "password"):
        cfg["redis"]["password_file"] = str(ensure_secret(secrets_dir / "redis.password"))
    config_path = state / "config.yaml"
    saved = json.loads(json.dumps(cfg))
    saved["redis"].pop("managed", None)  # derived by load_config, not a file key
    write_private(config_path, yaml.safe_dump(saved, sort_keys=False))  # may hold the client token

    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREID__")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    single_thread_blas(env)  # see ops.blas
    procs: list[dict[str, Any]] = []

    def fail(msg: str) -> UserError:
        stop_processes(procs)
        return UserError(msg)

    host = cfg["host"]
    if cfg["redis"].get("managed"):
        exe = shutil.which("redis-server")
        if exe is None:
            raise UserError("redis-server is not installed (apt-get install redis-server), or set redis.url")
        rdir = state / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        conf = _resolve(str(cfg["redis"]["conf"]))
        auth = secrets_dir / "redis-auth.conf"  # the password in a 0600 file, not on the command line
        write_private(auth, f"requirepass {secret(cfg['redis'], 'password')}\n")
        cmd = [
            exe,
            *([str(conf)] if conf.is_file() else []),
            "--port",
            str(cfg["redis"]["port"]),
            "--bind",
            host,
            "--dir",
            str(rdir),
            "--daemonize",
            "no",
            "--appendonly",
            "yes",
            "--include",
            str(auth),
        ]
        log = logs / "redis.log"
        p = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append({"name": "redis", "pid": p.pid, "marker": "redis-server", "log": str(log), "cmd": cmd})
        if not _tcp_ready(host, int(cfg["redis"]["port"]), 10):
            raise fail(f"redis-server did not start on port {cfg['redis']['port']}: {_last_line(log)}")
    for name, module in SERVICES:
        log = logs / f"{name}.log"
        cmd = [sys.executable, "-m", module, "--config", str(config_path)]
        p = _spawn(cmd, log, env)
        procs.append(
            {
                "name": name,
                "pid": p.pid,
                "marker": module,
                "log": str(log),
                "cmd": cmd,
                "port": cfg[name]["port"],
                "metrics_port": cfg[name]["metrics_port"],
            }
        )
        deadline = time.monotonic() + timeout
        while True:
            if p.poll() is not None:
                raise fail(f"{name} service exited with code {p.returncode}: {_last_line(log)}")
            try:
                wait_healthy(f"{host}:{cfg[name]['port']}", timeout=1.0)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise fail(
                        f"{name} service not healthy within {timeout:g} s: {_last_line(log)}"
                    ) from None
    address = f"{host}:{cfg['encoder']['port']}"
    url = ""
    if web is not None:  # the page-turner, bridged to this stack (web.stack_session)
        whost, wport = web[0], web[1] or free_ports(1)[0]  # a fixed port: a restart serves the same URL
        log = logs / "web.log"
        cmd = [
            sys.executable,
            "-m",
            "cli",
            "web",
            "--stack",
            address,
            "--config",
            str(config_path),
            "--host",
            whost,
            "--port",
            str(wport),
        ]
        p = _spawn(cmd, log, env)
        procs.append(
            {"name": "web", "pid": p.pid, "marker": "cli web", "log": str(log), "cmd": cmd, "port": wport}
        )
        deadline = time.monotonic() + timeout
        while not _tcp_ready("::1" if whost == "::" else whost, wport, 0.5):
            if p.poll() is not None:
                raise fail(f"the page-turner exited with code {p.returncode}: {_last_line(log)}")
            if time.monotonic() > deadline:
                raise fail(f"the page-turner did not listen within {timeout:g} s: {_last_line(log)}")
        url = f"http://{f'[{whost}]' if ':' in whost else whost}:{wport}/"
    sv = cfg.get("supervisor", {})
    if sv.get("enabled", True):  # restarts a crashed process (ops.supervisor)
        log = logs / "supervisor.log"
        cmd = [
            sys.executable,
            "-m",
            "ops.supervisor",
            "--state",
            str(state),
            "--interval",
            str(sv.get("interval_s", 0.5)),
            "--restart-delay",
            str(sv.get("restart_delay_s", 1.0)),
            "--max-restarts",
            str(sv.get("max_restarts", 5)),
            "--window",
            str(sv.get("window_s", 60.0)),
        ]
        p = _spawn(cmd, log, env)
        procs.append({"name": "supervisor", "pid": p.pid, "marker": "ops.supervisor", "log": str(log)})
    record = {
        "address": address,
        "state_dir": str(state),
        "config": str(config_path),
        "web": url,
        "redis": cfg["redis"]["url"],
        "processes": procs,
        "metrics": {n: f"http://{host}:{cfg[n]['metrics_port']}/metrics" for n, _ in SERVICES},
    }
    write_stack(state, record)
    return record


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (mode 0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ensure_secret(path: Path) -> Path:
    """A random secret in ``path`` (mode 0600), made once and kept across restarts of the stack."""
    if not path.is_file() or not path.read_text().strip():
        write_private(path, secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
    return path


def write_stack(state: Path, record: dict[str, Any]) -> None:
    """Replace ``state/stack.json`` atomically (the supervisor reads it while it is rewritten)."""
    tmp = state / f".{STACK_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, state / STACK_FILE)


def stop_processes(procs: list[dict[str, Any]], timeout: float = 10.0) -> list[str]:
    """SIGTERM each live process (last started first), SIGKILL the ones still alive after ``timeout``."""
    stopped = []
    for p in reversed(procs):
        pid = int(p["pid"])
        if not _alive(pid, p["marker"]):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while _alive(pid, p["marker"]) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _alive(pid, p["marker"]):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
        stopped.append(p["name"])
    return stopped


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_stack(state_dir: str | Path) -> list[str]:
    state = Path(state_dir).expanduser().resolve()
    record = read_stack(state)
    if record is None:
        raise UserError(f"no stack is running from {state} (no {STACK_FILE})")
    # the supervisor first, so that it restarts nothing; then the pids it may have written since
    stopped = stop_processes([p for p in record["processes"] if p["name"] == "supervisor"])
    record = read_stack(state) or record
    stopped += stop_processes([p for p in record["processes"] if p["name"] != "supervisor"])
    (state / STACK_FILE).unlink(missing_ok=True)
    return stopped
