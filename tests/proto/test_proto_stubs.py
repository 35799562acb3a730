"""The committed Python stubs are exactly what ``python -m proto.generate`` makes from the .proto."""

from __future__ import annotations

from pathlib import Path

from proto.generate import PROTOS, ROOT, generate
from proto.scoreid.v1 import scoreid_pb2 as pb


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path):
    written = generate(tmp_path)
    assert written
    for f in written:
        rel = f.relative_to(tmp_path)
        committed = ROOT / rel
        assert committed.is_file(), f"{rel} is not committed; run python -m proto.generate"
        assert committed.read_bytes() == f.read_bytes(), f"{rel} is stale; run python -m proto.generate"
    assert PROTOS == ["proto/scoreid/v1/scoreid.proto"]


def test_api_shape():
    names = set(pb.DESCRIPTOR.services_by_name)
    assert names == {"Identify", "Embedder", "Index", "Aggregator"}
    stream = pb.DESCRIPTOR.services_by_name["Identify"].methods_by_name["Stream"]
    assert stream.client_streaming and stream.server_streaming
    req = pb.StreamRequest(options=pb.SessionOptions(sample_rate=44100, encoding=pb.PCM_INT16))
    assert req.WhichOneof("msg") == "options"
    assert pb.StreamRequest.FromString(req.SerializeToString()) == req
