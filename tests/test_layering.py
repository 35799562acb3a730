"""The layering rules of README's layout table, checked on the source, statically:

- the core (``scoreid``) imports nothing from the layers around it: no service, not the trainer,
  the command line (``cli``), operations (``ops``), synthesis (``synthesis``) or ``proto``;
- ``synthesis`` and ``ops`` import only the core;
- the command line imports the core, ``ops``, ``synthesis`` and ``proto`` (its client), never a
  service or the trainer;
- the services import the core, ``ops`` and ``proto``, never the trainer, the command line,
  synthesis, the page-turner or another service; the trainer imports no service, not ``ops`` and
  not the page-turner;
- the page-turner (``web``) imports the core, ``ops`` and ``proto`` (its bridge to a stack's
  ``Identify.Stream``) only (the command line starts it);
- and no module imports itself through a circle of imports (function-local imports included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"encoder_svc", "index_svc", "aggregator_svc"}
APP = {"cli", "ops", "synthesis", "trainer", "web"}  #: the layers around the core
FORBIDDEN = {
    "scoreid": SERVICES | APP | {"proto"},
    "synthesis": SERVICES | APP - {"synthesis"} | {"proto"},
    "ops": SERVICES | APP - {"ops"} | {"proto"},
    "cli": SERVICES | {"trainer"},
    "web": SERVICES | APP - {"web", "ops"},
    "trainer": SERVICES | {"ops", "web"},
    "encoder_svc": {"trainer", "cli", "synthesis", "web", "index_svc", "aggregator_svc"},
    "index_svc": {"trainer", "cli", "synthesis", "web", "encoder_svc", "aggregator_svc"},
    "aggregator_svc": {"trainer", "cli", "synthesis", "web", "encoder_svc", "index_svc"},
    "proto": SERVICES | APP | {"scoreid"},
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


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module (or name in a module) an import statement of ``path`` names, absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
                )
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def test_no_import_circle():
    files = [f for pkg in FORBIDDEN for f in (ROOT / pkg).rglob("*.py") if "_pb2" not in f.name]
    graph = {module_name(f): imported_modules(f) for f in files}
    graph = {m: sorted(d for d in deps if d in graph and d != m) for m, deps in graph.items()}
    circles: list[str] = []
    state: dict[str, int] = {}  # depth-first search: 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                circles.append(" -> ".join(path[path.index(d) :] + [m, d]))
            elif d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not circles, "\n".join(circles)
