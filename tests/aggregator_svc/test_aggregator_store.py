"""Redis tallies (real redis-server): exact parity with the core VoteTally, TTL, close, AOF restart."""

from __future__ import annotations

import math
import random
import time

import pytest
from svc_helpers import start_redis, stop_redis

from aggregator_svc.store import RedisTallies, TimeWentBackwards, keys
from scoreid.identify.tally import VoteTally


def random_sequence(rng: random.Random, n: int) -> list[tuple[dict[str, float], float]]:
    pieces = [f"p{i}" for i in range(12)] + ["Ünïcode", "a b"]
    t, seq = 0.0, []
    for _ in range(n):
        t += rng.choice([0.0, 0.5, rng.uniform(0, 3.0), 0.05])
        votes = {
            p: float(rng.choice([1, 1, 2, 3, rng.uniform(0, 5)]))
            for p in rng.sample(pieces, rng.randint(0, 6))
        }
        seq.append((votes, t))
    return seq


@pytest.mark.parametrize("half_life", [0.7, 5.0, 20.0, math.inf])
def test_lua_update_matches_the_core_vote_tally(redis_server, half_life):
    store = RedisTallies(redis_server.client(), ttl_s=60)
    rng = random.Random(int(half_life) if math.isfinite(half_life) else 99)
    for trial in range(5):
        ref = VoteTally(half_life=half_life)
        sid = f"s{trial}-{half_life}"
        for votes, t in random_sequence(rng, 60):
            ref.update(votes, t)
            st = store.update(sid, votes, t, half_life, top_k=20)
            want = ref.top(20)
            assert [p for p, _ in st.top] == [p for p, _ in want]
            for (_, got), (_, exp) in zip(st.top, want):
                assert got == pytest.approx(exp, rel=1e-12, abs=1e-300)
            assert st.t_last == t
        got_all = dict(store.get(sid, top_k=100).top)
        assert got_all.keys() == ref.tallies.keys()


def test_time_going_backwards_is_refused_like_the_core(redis_server):
    store = RedisTallies(redis_server.client())
    store.update("s", {"a": 1}, 5.0, 10.0)
    with pytest.raises(TimeWentBackwards, match="backwards"):
        store.update("s", {"a": 1}, 4.0, 10.0)
    with pytest.raises(ValueError):
        store.update("s", {"a": 1}, 6.0, 0.0)
    assert store.get("s").top == [("a", 1.0)]


def test_positions_follow_the_top_piece(redis_server):
    store = RedisTallies(redis_server.client())
    pa = {"piece": "a", "page": 1, "system": 0, "x": 10.0}
    pb_ = {"piece": "b", "page": 2, "system": 3, "x": 99.0}
    st = store.update("s", {"a": 3, "b": 1}, 0.0, 20.0, positions={"a": pa, "b": pb_})
    assert st.position == pa
    st = store.update("s", {"b": 5}, 0.5, 20.0)
    assert st.top[0][0] == "b" and st.position == pb_


def test_idle_sessions_expire_and_close_deletes(redis_server):
    r = redis_server.client()
    store = RedisTallies(r, ttl_s=1)
    store.update("idle", {"a": 1}, 0.0, 20.0, positions={"a": {"piece": "a"}})
    store.update("closed", {"a": 1}, 0.0, 20.0)
    assert all(0 < r.ttl(k) <= 1 for k in keys("idle"))
    assert store.close("closed") and not store.exists("closed")
    assert not store.close("closed")
    time.sleep(1.6)
    assert not store.exists("idle")
    assert r.dbsize() == 0


def test_aof_restart_keeps_tallies(tmp_path):
    server = start_redis(tmp_path / "r")
    try:
        store = RedisTallies(server.client(), ttl_s=600)
        ref = VoteTally(half_life=3.0)
        for votes, t in random_sequence(random.Random(3), 40):
            ref.update(votes, t)
            store.update("s", votes, t, 3.0, top_k=50)
        before = store.get("s", 50)
    finally:
        # a hard kill: nothing but the AOF (appendfsync always) survives
        server.proc.kill()
        server.proc.wait()
    server2 = start_redis(tmp_path / "r", port=server.port)
    try:
        store2 = RedisTallies(server2.client(), ttl_s=600)
        after = store2.get("s", 50)
        assert after.top == before.top and after.t_last == before.t_last
        ref.update({"p1": 1.0}, ref.t_last + 1.0)
        st = store2.update("s", {"p1": 1.0}, after.t_last + 1.0, 3.0, top_k=50)
        assert [p for p, _ in st.top] == [p for p, _ in ref.top(50)]
    finally:
        stop_redis(server2)
