"""Shared fixtures for real components: a real ``redis-server`` and an in-process gRPC server.

Nothing here fakes Redis or gRPC: ``redis_server`` starts the real binary on a free port in a
temp dir, and ``grpc_server`` starts a real gRPC server on a free localhost port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

# session fixtures with engraved sheets, a random model and a built library (tests/engraved.py),
# shared by the core, CLI, operations and synthesis tests
from engraved import engrave, lib, random_model, sheets_dir  # noqa: F401


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    host: str
    port: int
    dir: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host=self.host, port=self.port, decode_responses=False)


def start_redis(workdir: Path, port: int | None = None, appendonly: bool = True) -> RedisServer:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; run ./setup.sh")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        "always",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer("127.0.0.1", port, workdir, proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited with {proc.returncode}")
        try:
            if server.client().ping():
                return server
        except Exception:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not answer within 10 s")


def terminate(proc: subprocess.Popen, wait_s: float = 5.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL when it has not exited within ``wait_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(cond, timeout: float = 30.0, poll_s: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``cond()`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll_s)
    return False


def stop_redis(server: RedisServer) -> None:
    terminate(server.proc)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free port with its data dir in a temp dir (AOF on)."""
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        stop_redis(server)


@dataclass
class GrpcServer:
    server: object  #: an ops.grpc_server.AsyncioServer (a grpc.aio server on its own loop)
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def grpc_server() -> Iterator[Callable[..., GrpcServer]]:
    """Factory: ``grpc_server(register)`` starts a real in-process ``grpc.aio`` server on a free port
    (blocking handlers run in its ``max_workers`` threads).

    ``register(server)`` adds servicers before start. Every started server is stopped at teardown.
    """
    import inspect

    from ops.grpc_server import AsyncioServer

    started: list[AsyncioServer] = []

    def start(register: Callable[[grpc.aio.Server], object], max_workers: int = 8) -> GrpcServer:
        async def build(pool):
            server = grpc.aio.server(pool)
            added = register(server)
            if inspect.isawaitable(added):
                await added
            return server, server.add_insecure_port("127.0.0.1:0")

        server = AsyncioServer(build, name="test-grpc", workers=max_workers)
        server.start()
        started.append(server)
        return GrpcServer(server, server.port)

    yield start
    for s in started:
        s.stop(grace=None).wait(10)
