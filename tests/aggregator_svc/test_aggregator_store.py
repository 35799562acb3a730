"""Session engine states in Redis (real redis-server): compare-and-set, TTL, close, AOF restart."""

from __future__ import annotations

import time

import pytest
from svc_helpers import start_redis, stop_redis

from aggregator_svc.store import Conflict, EngineStates, key


def test_compare_and_set_refuses_a_stale_version(redis_server):
    store = EngineStates(redis_server.client(), ttl_s=60)
    assert store.get("s").state is None and store.get("s").version == 0
    store.put("s", 0, b"one", "lib")
    st = store.get("s")
    assert (st.state, st.version, st.library) == (b"one", 1, "lib")
    with pytest.raises(Conflict):
        store.put("s", 0, b"stale")  # a writer that read before "one" was written
    assert store.get("s").state == b"one"
    assert store.put_many(
        [("s", 1, b"two", "lib"), ("t", 0, b"x" * 100_000, "lib"), ("s", 1, b"late", "lib")]
    ) == [
        True,
        True,
        False,
    ]
    assert [s.state for s in store.get_many(["s", "t", "u"])] == [b"two", b"x" * 100_000, None]


def test_idle_sessions_expire_and_close_deletes(redis_server):
    r = redis_server.client()
    store = EngineStates(r, ttl_s=1)
    store.put("idle", 0, b"a")
    store.put("closed", 0, b"a")
    assert 0 < r.ttl(key("idle")) <= 1
    assert store.close("closed") and not store.exists("closed")
    assert not store.close("closed")
    time.sleep(1.6)
    assert not store.exists("idle")
    assert r.dbsize() == 0


def test_aof_restart_keeps_states(tmp_path):
    server = start_redis(tmp_path / "r")
    try:
        store = EngineStates(server.client(), ttl_s=600)
        for v in range(5):
            store.put("s", v, bytes([v]) * 1000, "lib")
    finally:  # a hard kill: nothing but the AOF (appendfsync always) survives
        server.proc.kill()
        server.proc.wait()
    server2 = start_redis(tmp_path / "r", port=server.port)
    try:
        st = EngineStates(server2.client(), ttl_s=600).get("s")
        assert (st.state, st.version, st.library) == (bytes([4]) * 1000, 5, "lib")
    finally:
        stop_redis(server2)


def test_a_reader_holding_the_version_skips_the_blob(redis_server):
    store = EngineStates(redis_server.client(), ttl_s=60)
    store.put_many([("held", 0, b"h" * 50_000, "lib"), ("other", 0, b"o", "lib")])
    got = store.get_many(["held", "other", "none"], have=lambda sid, version: sid == "held" and version == 1)
    assert [(s.state, s.version, s.library, s.exists) for s in got] == [
        (None, 1, "lib", True),  # only the version: the caller has it decoded
        (b"o", 1, "lib", True),
        (None, 0, "", False),
    ]
    stale = store.get_many(["held"], have=lambda sid, version: version == 0)  # holds an older version
    assert stale[0].state == b"h" * 50_000


def test_compare_and_set_survives_redis_losing_its_scripts(redis_server):
    r = redis_server.client()
    store = EngineStates(r, ttl_s=60)
    store.put("s", 0, b"one")
    r.script_flush()  # as after a restart without persistence of the script cache
    assert store.put_many([("s", 1, b"two", ""), ("s", 1, b"late", "")]) == [True, False]
    assert (store.get("s").state, store.get("s").version) == (b"two", 2)


def test_a_write_whose_reply_was_lost_is_not_a_conflict_when_the_client_retries(redis_server, monkeypatch):
    """The reply of a compare-and-set times out after Redis applied it (a loaded machine: the
    socket timeout); redis-py then sends the whole pipeline again (its default Retry). The second
    try must see its own write, not "another writer" — the cause of an ABORTED vote seen once in CI."""
    import redis

    r = redis_server.client()
    store = EngineStates(r, ttl_s=60)
    store.put("s", 0, b"one", "lib")
    real = redis.connection.Connection.read_response
    lost = {"n": 0}

    def read_response(self, *a, **kw):  # the first reply of the next pipeline is lost in transit
        reply = real(self, *a, **kw)
        if lost["n"] == 0:
            lost["n"] += 1
            self.disconnect()
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return reply

    monkeypatch.setattr(redis.connection.Connection, "read_response", read_response)
    assert store.put_many([("s", 1, b"two", "lib")]) == [True]
    monkeypatch.undo()
    assert lost["n"] == 1
    st = store.get("s")
    assert (st.state, st.version) == (b"two", 2)
    with pytest.raises(Conflict):  # a stale writer is still refused
        store.put("s", 1, b"late", "lib")
