"""The package's architecture, checked over its real import graph (function-level imports included)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "airflow_provider_dgsentiment"


def import_graph() -> dict[str, set[str]]:
    import grimp

    graph = grimp.build_graph(PACKAGE)
    return {
        module: {
            imported for imported in graph.find_modules_directly_imported_by(module) if imported.startswith(PACKAGE)
        }
        for module in graph.modules
        if module.startswith(PACKAGE)
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a list of modules, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            # A package's __init__ importing its own submodules is not a cycle between rooms.
            if module != PACKAGE and imported.startswith(module + "."):
                continue
            if state.get(imported) == 1:
                return path[path.index(imported) :] + [imported]
            if imported not in state:
                found = visit(imported)
                if found:
                    return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_cycles_lazy_imports_included():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_contracts_are_kept():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_module_has_one_of_the_documented_roles():
    """A new module gets a role here (and in the README's layout) before it lands."""
    modules = {path.stem for path in (REPO / PACKAGE).glob("*.py")} - {"__init__"}
    assert modules == {
        "chunking",
        "concurrency",
        "engine",
        "events",
        "exceptions",
        "get_provider_info",
        "lineage",
        "outcome",
        "records",
        "result_files",
        "results",
        "retry",
        "scoring_run",
        "sources",
        "warehouse",
    } - ({"engine"} if not (REPO / PACKAGE / "engine.py").exists() else set())
