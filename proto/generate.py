"""Regenerate the committed Python stubs from the .proto files (run from the repository root).

    python -m proto.generate            # rewrite proto/scoreid/v1/scoreid_pb2*.py
    python -m proto.generate --out DIR  # write them under DIR instead (used by the freshness test)

The stubs are committed so that installing scoreid needs no code generation; the test
``tests/proto/test_stubs.py`` regenerates them into a temp dir and fails if they differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ["proto/scoreid/v1/scoreid.proto"]


def generate(out: Path = ROOT) -> list[Path]:
    """Run protoc (grpcio-tools) on every .proto; returns the written files."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(ROOT / p) for p in PROTOS],
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")
    written = []
    for p in PROTOS:
        stem = Path(p).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            written.append(out / f"{stem}{suffix}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT)
    args = ap.parse_args(argv)
    for f in generate(args.out):
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
