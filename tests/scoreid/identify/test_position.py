"""The one position type and its adapters: the gRPC message and the JSON line give it back whole."""

from __future__ import annotations

import json
from dataclasses import fields

from proto.scoreid.v1 import scoreid_pb2 as pb
from scoreid.identify.position import Position

POS = Position(
    piece="chopin-op28-4",
    page=1,
    system=2,
    x=812.4,
    y0=912.0,
    y1=1338.5,
    strip_x=5123.7,
    file="score.pdf",
    file_page=1,
    show_page=2,
)


def test_every_field_is_a_field_of_the_grpc_message_and_comes_back():
    names = set(pb.Position.DESCRIPTOR.fields_by_name)
    assert {f.name for f in fields(Position)} <= names  # a new field needs its field in the .proto
    msg = POS.to_message(pb.Position)
    assert isinstance(msg, pb.Position) and msg.piece == POS.piece and msg.strip_x == POS.strip_x
    assert Position.from_message(pb.Position.FromString(msg.SerializeToString())) == POS


def test_the_json_entry_is_the_lines_shape_and_comes_back():
    d = POS.to_json()
    assert list(d) == ["page", "system", "x", "file", "file_page", "show_page", "band"]
    assert d["band"] == [POS.y0, POS.y1]
    entry = json.loads(json.dumps({"piece": POS.piece, "score": 0.5, "votes": 1.0, **d}))
    assert Position.from_json(entry, strip_x=POS.strip_x) == POS


def test_an_empty_message_reads_as_the_defaults():
    assert Position.from_message(pb.Position(piece="p", page=3)) == Position("p", 3, 0, 0.0, 0.0, 0.0, 0.0)
