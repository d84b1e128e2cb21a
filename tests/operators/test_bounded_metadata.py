"""Bounded by design (issue 13): a big run puts no per-document data into Airflow's metadata database.

A DAG over ~3,000 ``file://`` documents with ``sql_conn_id`` and ``xcom_output="manifest"`` runs
through ``dag.test()`` against a real metadata DB (SQLite in the test AIRFLOW_HOME), once in the
worker and once deferrable (``dag.test()`` runs the trigger in-process); then the test reads the
sizes of what the run left in the ``xcom``, ``trigger`` and ``task_instance`` tables.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from tests.conftest import SQL_CONN_ID
from tests.support.operator_runs import defer, make_operator, run, table_count, trigger_event

DOCUMENTS = 3000
#: The bound SPEC section 12 sets for anything a run puts through the metadata database.
BOUND = 64 * 1024


def write_documents(folder: Path, count: int, every: int = 1) -> Path:
    """``count`` text files; only every ``every``-th has text, the others are blank (skipped, no request)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        text = f"Document {i} says the service was good." if i % every == 0 else " \n"
        (folder / f"doc-{i:05d}.txt").write_text(text)
    return folder


def metadata_sizes(airflow_home: Path, dag_id: str, run_id: str) -> dict[str, list[int]]:
    """Bytes of the run's XCom values, trigger kwargs and task instances' next_kwargs in the metadata DB."""
    with sqlite3.connect(airflow_home / "airflow.db") as connection:
        xcom = [
            row[0]
            for row in connection.execute(
                "SELECT LENGTH(CAST(value AS BLOB)) FROM xcom WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
            )
        ]
        next_kwargs = [
            row[0]
            for row in connection.execute(
                "SELECT LENGTH(CAST(next_kwargs AS BLOB)) FROM task_instance "
                "WHERE dag_id = ? AND run_id = ? AND next_kwargs IS NOT NULL",
                (dag_id, run_id),
            )
        ]
        triggers = [
            row[0]
            for row in connection.execute(
                "SELECT LENGTH(CAST(t.kwargs AS BLOB)) FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
                "WHERE ti.dag_id = ? AND ti.run_id = ?",
                (dag_id, run_id),
            )
        ]
    return {"xcom": xcom, "trigger.kwargs": triggers, "task_instance.next_kwargs": next_kwargs}


def record_next_kwargs(monkeypatch, airflow_home: Path) -> dict[str, list[int]]:
    """Record ``task_instance.next_kwargs`` bytes in the metadata DB each time ``dag.test()`` resumes a task."""
    from airflow.sdk.execution_time import supervisor

    seen: dict[str, list[int]] = {}
    real = supervisor.run_task_in_process

    def measuring(ti, task):
        with sqlite3.connect(airflow_home / "airflow.db") as connection:
            row = (
                connection.execute(
                    "SELECT LENGTH(CAST(next_kwargs AS BLOB)), next_kwargs FROM task_instance WHERE id = ?",
                    (str(ti.id).replace("-", ""),),
                ).fetchone()
                or connection.execute(
                    "SELECT LENGTH(CAST(next_kwargs AS BLOB)), next_kwargs FROM task_instance WHERE id = ?",
                    (str(ti.id),),
                ).fetchone()
            )
        if row is not None and row[1] is not None and row[1] != "null":
            seen.setdefault(ti.run_id, []).append(row[0])
        return real(ti=ti, task=task)

    monkeypatch.setattr(supervisor, "run_task_in_process", measuring)
    return seen


@pytest.mark.skipif(
    int(__import__("airflow").__version__.split(".")[0]) < 3,
    reason="measures next_kwargs through Airflow 3's in-process task runner (dag.test() on 2.11 has none)",
)
def test_a_3000_document_dag_run_keeps_the_metadata_db_small(
    airflow_db, mock_deepgram, tmp_path, monkeypatch, capsys, log_text
):
    """Worker and deferrable: every XCom value, trigger kwargs and next_kwargs of the run < 64 KB."""
    from tests.support.dags import SQLITE_CONN_ID, load_dag, xcom_values

    # One in ten has text: 300 requests a mode keep the test short on a shared machine; the other
    # 2,700 are documents all the same (counted, listed, read, fingerprinted; skipped as blank).
    folder = write_documents(tmp_path / "in", DOCUMENTS, every=10)
    stored_next_kwargs = record_next_kwargs(monkeypatch, airflow_db)
    sizes = {}
    for mode in ("worker", "deferrable"):
        db = tmp_path / f"{mode}.db"
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{SQLITE_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(db)})
        )
        # The example's report task prints per-document items, which a manifest run keeps none of.
        dag = load_dag("deepgram_sentiment_files_to_sql.py").partial_subset(
            task_ids=["score_files"], include_downstream=False, include_upstream=False
        )
        assert set(dag.task_dict) == {"score_files"}
        score = dag.get_task("score_files")
        score.deferrable = mode == "deferrable"
        score.xcom_output = "manifest"
        calls_before = mock_deepgram.call_count
        before = log_text()
        dag_run = dag.test(run_conf={"source": f"file://{folder}/*.txt"})
        after = log_text()
        assert dag_run.state == "success", after[-3000:]
        assert mock_deepgram.call_count - calls_before == DOCUMENTS // 10
        inline = after.count("[DAG TEST] running trigger in line") - before.count("[DAG TEST] running trigger in line")
        assert inline == (1 if mode == "deferrable" else 0)
        manifest = xcom_values(dag_run)["score_files"]
        scored = DOCUMENTS // 10
        assert (manifest["documents"], manifest["scored"], manifest["skipped"]) == (
            DOCUMENTS,
            scored,
            DOCUMENTS - scored,
        )
        assert table_count(db, "deepgram_sentiment_averages") == scored
        sizes[mode] = metadata_sizes(airflow_db, dag_run.dag_id, dag_run.run_id)
        # next_kwargs (the trigger's event) is cleared when the task resumes: measured just before.
        sizes[mode]["task_instance.next_kwargs"] = stored_next_kwargs.pop(dag_run.run_id, [])

    with capsys.disabled():
        print(f"\nmetadata DB bytes for {DOCUMENTS} documents (xcom_output='manifest', sql_conn_id): {sizes}")
    assert sizes["worker"]["xcom"] and sizes["deferrable"]["xcom"]  # the manifest is there ...
    assert sizes["deferrable"]["trigger.kwargs"]  # ... the trigger the task deferred to ...
    assert sizes["deferrable"]["task_instance.next_kwargs"]  # ... and the event it resumed with
    for mode, tables in sizes.items():
        for table, values in tables.items():
            assert all(value < BOUND for value in values), (mode, table, values)


# ---------------------------------------------------------------------- guard rails of per-document XCom


def test_more_than_10000_per_document_items_warn_naming_manifest(mock_deepgram, tmp_path, caplog, log_text):
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps({"text": "Fine." if i % 50 == 0 else ""}) + "\n" for i in range(10_001)))
    with caplog.at_level(logging.WARNING):
        summary = run(make_operator(source=f"file://{path}", xcom_output="summary"))
    assert summary["documents"] == 10_001
    assert len(summary["items"]) == 10_001
    text = log_text()
    assert "xcom_output='summary' keeps 10001 per-document items in XCom" in text
    assert "use xcom_output='manifest' with sql_conn_id or results_path" in text


def test_10000_items_do_not_warn(mock_deepgram, tmp_path, log_text):
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps({"text": ""}) + "\n" for _ in range(10_000)))
    run(make_operator(source=f"file://{path}", xcom_output="full"))
    assert "per-document items in XCom" not in log_text()


@pytest.mark.parametrize("kind", ["objects", "records"])
def test_deferring_more_than_1000_documents_with_full_xcom_is_refused(mock_deepgram, tmp_path, sqlite_db, kind):
    if kind == "objects":
        source = f"file://{write_documents(tmp_path / 'in', 1001)}/*.txt"
    else:  # a record file: counted while it is read, refused at the 1,001st record
        path = tmp_path / "export.jsonl"
        path.write_text("".join(json.dumps({"text": f"Record {i} is good."}) + "\n" for i in range(1001)))
        source = f"file://{path}"
    deferred = defer(make_operator(source=source, sql_conn_id=SQL_CONN_ID, xcom_output="full", deferrable=True))
    event = trigger_event(deferred)
    assert event["status"] == "error"
    assert event["error_class"] == "DeepgramConfigurationError"
    message = event["message"]
    assert "more than the 1000" in message
    assert "give sql_conn_id or results_path and xcom_output='manifest'" in message
    print(f"{kind}: {mock_deepgram.call_count} request(s) sent before the refusal")
    assert mock_deepgram.call_count <= 1000  # objects: refused before any request
    if kind == "objects":
        assert mock_deepgram.call_count == 0
    from tests.support.operator_runs import resume

    with pytest.raises(DeepgramConfigurationError, match="xcom_output='manifest'"):
        resume(deferred, event, source=source, sql_conn_id=SQL_CONN_ID, xcom_output="full", deferrable=True)


def test_deferring_1001_documents_with_manifest_is_fine(mock_deepgram, tmp_path, sqlite_db):
    source = f"file://{write_documents(tmp_path / 'in', 1001)}/*.txt"
    deferred = defer(make_operator(source=source, sql_conn_id=SQL_CONN_ID, xcom_output="manifest", deferrable=True))
    assert deferred.trigger.serialize()[1]["options"]["max_documents"] is None
    event = trigger_event(deferred)
    assert event["status"] == "success", event
    assert event["outcome"]["items"] is None  # no per-document results in the event
    assert len(json.dumps(event)) < BOUND
    assert mock_deepgram.call_count == 1001
