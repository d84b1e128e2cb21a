"""The docs cover what users touch: every example DAG and every public operator or sensor argument is on a page."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator
from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = (
    "getting-started",
    "connection",
    "operator",
    "sensor",
    "records-and-identity",
    "tables-and-history",
    "deferrable-and-scale",
    "emulator",
    "command-line",
    "errors-and-troubleshooting",
    "development",
    "changelog",
)


def docs_text() -> str:
    return "\n".join(page.read_text() for page in sorted(DOCS.glob("*.md")))


def example_dag_ids() -> dict[str, str]:
    """``{dag_id: file name}`` of every DAG defined in example_dags/, read from the source."""
    found = {}
    for path in sorted((REPO / "example_dags").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DAG":
                ids = [kw.value.value for kw in node.keywords if kw.arg == "dag_id"]
                ids += [arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant)]
                found.update(dict.fromkeys(ids, path.name))
    return found


def public_arguments(cls: type) -> list[str]:
    return [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "kwargs")]


def test_one_page_per_topic_each_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    for page in PAGES:
        assert (DOCS / f"{page}.md").is_file(), page
        assert f"(docs/{page}.md)" in readme, f"README does not link docs/{page}.md"


def test_links_between_pages_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)", page.read_text()):
            assert (DOCS / target).is_file(), f"{page.name} links to {target}, which does not exist"


def test_every_example_dag_is_documented():
    dag_ids = example_dag_ids()
    assert len(dag_ids) >= 5
    text = docs_text()
    missing = [f"{dag_id} ({name})" for dag_id, name in dag_ids.items() if f"`{dag_id}`" not in text]
    assert not missing, f"example DAGs on no docs/ page: {missing}"


@pytest.mark.parametrize("cls", [DeepgramSentimentOperator, DeepgramSentimentSensor])
def test_every_public_argument_is_documented(cls):
    arguments = public_arguments(cls)
    assert "deferrable" in arguments
    text = docs_text()
    missing = [name for name in arguments if f"| `{name}` |" not in text]
    assert not missing, f"{cls.__name__} arguments in no docs/ argument table: {missing}"


def test_the_check_finds_what_is_missing():
    assert "undocumented_argument" not in docs_text()
    assert public_arguments(type("T", (), {"__init__": lambda self, *, undocumented_argument=1, **kwargs: None})) == [
        "undocumented_argument"
    ]


def test_the_operator_docstring_is_a_summary_pointing_at_its_page():
    doc = inspect.getdoc(DeepgramSentimentOperator)
    assert "docs/operator.md" in doc
    for name in public_arguments(DeepgramSentimentOperator):
        assert f":param {name}:" in doc, name
    summary = doc.split(":param ", 1)[0]
    assert len(summary.splitlines()) <= 12, summary  # the XCom shapes, names and errors live on the page
