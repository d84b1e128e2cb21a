"""DeepgramSentimentOperator.get_openlineage_facets_on_complete: objects read -> tables written."""

from __future__ import annotations

import json
import sys

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramError
from airflow_provider_dgsentiment.storage.lineage import MAX_LINEAGE_INPUTS
from tests.conftest import POSITIVE, SQL_CONN_ID
from tests.support.operator_runs import context, defer, make_operator, run, trigger_event

SEGMENTS = "deepgram_sentiment_segments"
AVERAGES = "deepgram_sentiment_averages"


def lineage(operator) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Return the operator's OpenLineage ``(inputs, outputs)`` as ``(namespace, name)`` pairs."""
    facets = operator.get_openlineage_facets_on_complete(None)
    assert facets.run_facets == {} and facets.job_facets == {}
    return (
        [(dataset.namespace, dataset.name) for dataset in facets.inputs],
        [(dataset.namespace, dataset.name) for dataset in facets.outputs],
    )


def test_objects_are_inputs_and_the_two_tables_outputs(deepgram_conn, inbox, sqlite_db):
    operator = make_operator(source=f"file://{inbox}/*.txt", sql_conn_id=SQL_CONN_ID)
    run(operator)

    inputs, outputs = lineage(operator)
    assert inputs == [("file", f"{inbox}/a.txt"), ("file", f"{inbox}/b.txt"), ("file", f"{inbox}/c.txt")]
    # SQLite's hook gives no OpenLineage database info: the namespace comes from the connection.
    assert outputs == [(f"sqlite://{sqlite_db}", SEGMENTS), (f"sqlite://{sqlite_db}", AVERAGES)]


def test_inline_text_has_no_inputs(deepgram_conn, sqlite_db):
    operator = make_operator(
        text=[POSITIVE, "Fine."], sql_conn_id=SQL_CONN_ID, segments_table="segs", averages_table="avgs"
    )
    run(operator)

    assert lineage(operator) == ([], [(f"sqlite://{sqlite_db}", "segs"), (f"sqlite://{sqlite_db}", "avgs")])


def test_without_sql_there_are_no_outputs(deepgram_conn, inbox):
    operator = make_operator(source=f"file://{inbox}/a.txt")
    run(operator)

    assert lineage(operator) == ([("file", f"{inbox}/a.txt")], [])


def test_many_objects_collapse_to_their_common_folder(deepgram_conn, tmp_path):
    for folder in ("2024-01", "2024-02"):
        (tmp_path / "bucket" / folder).mkdir(parents=True)
        for index in range(MAX_LINEAGE_INPUTS // 2 + 1):
            (tmp_path / "bucket" / folder / f"{index}.txt").write_text("Fine.")
    operator = make_operator(source=f"file://{tmp_path}/bucket/", xcom_output="none")
    run(operator)

    assert lineage(operator) == ([("file", f"{tmp_path}/bucket")], [])


def test_deferred_run_reports_the_objects_from_the_event(deepgram_conn, inbox, sqlite_db):
    kwargs = {"source": f"file://{inbox}/", "sql_conn_id": SQL_CONN_ID, "deferrable": True}
    deferred = defer(make_operator(**kwargs))
    resumed = make_operator(**kwargs)  # a fresh operator, as on the worker that resumes the task
    resumed.render_template_fields(context())
    resumed.execute_complete(context(), event=trigger_event(deferred))

    inputs, outputs = lineage(resumed)
    assert inputs == [("file", f"{inbox}/{name}") for name in ("a.txt", "b.txt", "c.txt")]
    assert outputs == [(f"sqlite://{sqlite_db}", SEGMENTS), (f"sqlite://{sqlite_db}", AVERAGES)]


def test_deferred_run_without_items_reports_the_objects_it_read(deepgram_conn, inbox):
    kwargs = {"source": f"file://{inbox}/*.txt", "xcom_output": "none", "deferrable": True}
    (inbox / "empty.txt").write_text("  ")  # read (and skipped) in the triggerer: an input all the same
    deferred = defer(make_operator(**kwargs))
    resumed = make_operator(**kwargs)
    resumed.render_template_fields(context())
    resumed.execute_complete(context(), event=trigger_event(deferred))

    assert lineage(resumed) == ([("file", f"{inbox}/{name}") for name in ("a.txt", "b.txt", "c.txt", "empty.txt")], [])


def test_postgres_tables_are_named_like_the_sql_operators_name_them(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DGS_TEST_PG_LINEAGE",
        json.dumps({"conn_type": "postgres", "host": "db.example", "port": 5433, "schema": "warehouse"}),
    )
    operator = make_operator(
        text="x", sql_conn_id="dgs_test_pg_lineage", segments_table="nlp.segs", averages_table="nlp.avgs"
    )
    operator._lineage_inputs = []  # what execute records for inline text; no database needed

    assert lineage(operator) == (
        [],
        [("postgres://db.example:5433", "warehouse.nlp.segs"), ("postgres://db.example:5433", "warehouse.nlp.avgs")],
    )


def test_nothing_is_reported_before_the_run_knows_what_it_reads(deepgram_conn, sqlite_db):
    operator = make_operator(source="file:///nowhere/*.txt", sql_conn_id=SQL_CONN_ID)
    with pytest.raises(DeepgramError, match="matched no objects"):
        run(operator)

    assert lineage(operator) == ([], [])


def test_without_the_openlineage_provider_the_operator_runs_and_reports_nothing(
    deepgram_conn, inbox, sqlite_db, monkeypatch
):
    # A None entry in sys.modules makes ``import`` raise ImportError, as when the package is missing.
    for module in ("airflow.providers.openlineage", "airflow.providers.openlineage.extractors"):
        monkeypatch.setitem(sys.modules, module, None)

    operator = make_operator(source=f"file://{inbox}/*.txt", sql_conn_id=SQL_CONN_ID)  # DAG-parse time
    result = run(operator)

    assert [item["source"] for item in result] == [f"file://{inbox}/{name}" for name in ("a.txt", "b.txt", "c.txt")]
    assert operator.get_openlineage_facets_on_complete(None) is None
