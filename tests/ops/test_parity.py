"""One engine in every path: the same audio through ``scoreid identify`` (one process) and through a
real ``scoreid up`` stack (redis-server, encoder, index and aggregator processes) gives the same
answer at every hop — ranking, votes, identity, confidence and every position field of the top
pieces — with the shipped trained model, so that the score follower really moves.
The sessions' engine state lives in Redis between hops (a killed aggregator's sessions continue
exactly: ``tests/aggregator_svc/test_aggregator_server.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from svc_helpers import cli

from ops.stack import loopback_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "default"
RECORDING = ROOT / "tests" / "data" / "chopin-mazurka06-2-20s.flac"


@pytest.fixture(scope="module")
def trained_lib(tmp_path_factory, sheets_dir) -> Path:
    out = tmp_path_factory.mktemp("parity") / "lib"
    r = cli("library", "build", sheets_dir, "--out", out, "--model", DEFAULT_MODEL)
    assert r.returncode == 0, r.stderr
    return out


def lines(stdout: str) -> list[dict]:
    return [json.loads(s) for s in stdout.splitlines()]


@pytest.mark.skipif(not (DEFAULT_MODEL / "manifest.json").is_file(), reason="needs the shipped model")
@pytest.mark.parametrize("search", ["aggregator", "index"])
def test_identify_and_a_real_stack_give_the_same_answer_at_every_hop(tmp_path, trained_lib, search):
    """Both places a window is searched (``encoder.search``): in the aggregator's vote call (the
    default with an exact index) and by Index.Search before it."""
    wav = tmp_path / "rec.wav"  # the committed recording, and 3 s of silence before it
    x, sr = sf.read(RECORDING, dtype="float32")
    sf.write(wav, np.concatenate([np.zeros((3 * sr, *x.shape[1:]), np.float32), x]), sr)
    r = cli("identify", trained_lib, wav, "--json", "--model", DEFAULT_MODEL)
    assert r.returncode == 0, r.stderr
    offline = lines(r.stdout)
    cfg = loopback_config(
        tmp_path / "state", DEFAULT_MODEL, {"test": trained_lib}, encoder={"search": search}
    )
    (tmp_path / "scoreid.yaml").write_text(yaml.safe_dump(cfg))
    up = cli("up", "--config", tmp_path / "scoreid.yaml")
    assert up.returncode == 0, up.stderr
    try:
        r = cli("identify", "--server", up.stdout.strip(), wav, "--json", "--speed", "0")
        assert r.returncode == 0, r.stderr
        online = lines(r.stdout)
    finally:
        assert cli("down", "--config", tmp_path / "scoreid.yaml").returncode == 0
    hops = offline[:-1]  # the offline final line is a summary (all pieces, speed)
    final = online[-1]
    assert final.pop("final") is True
    if len(online) == len(hops) + 1:  # the audio ended on a hop: the final answer repeats the last hop's
        online.pop()
        assert final == online[-1]
    assert len(online) == len(hops)
    followed = 0
    for k, (got, want) in enumerate(zip(online, hops)):
        assert got == want, f"hop {k} (t = {want['t']})"
        followed += sum("page" in e for e in want["top"])
    assert followed > len(hops)  # positions were compared, not only rankings
    assert offline[-1]["top"][0]["piece"] == online[-1]["top"][0]["piece"] == "chopin-mazurka-6-2"
