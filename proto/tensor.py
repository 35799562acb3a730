"""numpy float32 arrays <-> ``scoreid.v1.Tensor`` messages (little-endian, C order, no copies on read)."""

from __future__ import annotations

import numpy as np

from proto.scoreid.v1 import scoreid_pb2 as pb


def to_tensor(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, dtype="<f4")
    return pb.Tensor(shape=list(a.shape), data=a.tobytes())


def from_tensor(t: pb.Tensor) -> np.ndarray:
    """The array a Tensor holds; ValueError when the bytes do not match the shape."""
    shape = tuple(int(s) for s in t.shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative tensor dimension in {shape}")
    n = int(np.prod(shape)) if shape else 0
    if len(t.data) != 4 * n:
        raise ValueError(f"tensor of shape {shape} needs {4 * n} bytes, got {len(t.data)}")
    return np.frombuffer(t.data, dtype="<f4").reshape(shape)
