"""The layering rule: the core imports no service and not the trainer; services import no trainer
and no other service; the trainer imports no service. (Checked on the source, statically.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"encoder_svc", "index_svc", "aggregator_svc"}
FORBIDDEN = {
    "scoreid": SERVICES | {"trainer"},
    "trainer": SERVICES,
    "encoder_svc": {"trainer", "index_svc", "aggregator_svc"},
    "index_svc": {"trainer", "encoder_svc", "aggregator_svc"},
    "aggregator_svc": {"trainer", "encoder_svc", "index_svc"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_layering(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    bad = [
        f"{f.relative_to(ROOT)} imports {sorted(imported_top_levels(f) & FORBIDDEN[package])}"
        for f in files
        if imported_top_levels(f) & FORBIDDEN[package]
    ]
    assert not bad, "\n".join(bad)
