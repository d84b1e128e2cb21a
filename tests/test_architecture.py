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


def test_the_tree_shows_the_layers():
    """Top level: the provider convention and the moved-name shims; everything else lives in a room."""
    top = {path.stem for path in (REPO / PACKAGE).glob("*.py")} - {"__init__"}
    assert top == {"exceptions", "get_provider_info", "deprecations", "results", "lineage"}
    rooms = {path.name for path in (REPO / PACKAGE).iterdir() if (path / "__init__.py").exists()}
    assert rooms == {"client", "storage", "run", "hooks", "operators", "sensors", "triggers", "emulator", "cli"}


def test_each_room_names_its_public_surface():
    import importlib

    for room in ("client", "storage", "run"):
        module = importlib.import_module(f"{PACKAGE}.{room}")
        assert module.__all__, room
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{room}.{name}"


def test_moved_public_names_still_import_with_a_warning():
    import importlib
    import warnings

    from airflow.exceptions import AirflowProviderDeprecationWarning

    from airflow_provider_dgsentiment.client.results import SentimentResult
    from airflow_provider_dgsentiment.storage.lineage import table_asset

    for old, name, new in (("results", "SentimentResult", SentimentResult), ("lineage", "table_asset", table_asset)):
        module = importlib.import_module(f"{PACKAGE}.{old}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert getattr(module, name) is new
        assert [w.category for w in caught] == [AirflowProviderDeprecationWarning], old
        assert "moved to" in str(caught[0].message)


def test_no_test_module_imports_another():
    """Shared helpers live in tests/support or a conftest, never in a test_* module."""
    import ast

    offenders = []
    for path in (REPO / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [
                f"{path.relative_to(REPO)} imports {n}"
                for n in names
                if n.startswith("tests.") and n.split(".")[-1].startswith("test_")
            ]
    assert not offenders, "\n".join(offenders)
