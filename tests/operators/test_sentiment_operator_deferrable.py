"""DeepgramSentimentOperator(deferrable=True): defer, resume in execute_complete, same outcome as in the worker."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowNotFoundException

from airflow_provider_dgsentiment.exceptions import (
    DeepgramAuthenticationError,
    DeepgramConfigurationError,
    DeepgramError,
    DeepgramPaymentRequiredError,
    make_api_error,
)
from airflow_provider_dgsentiment.triggers.sentiment import DeepgramSentimentTrigger
from tests.conftest import NEGATIVE, NEUTRAL, POSITIVE, SQL_CONN_ID
from tests.support.operator_runs import (
    RUN_ID,
    context,
    defer,
    make_operator,
    resume,
    run,
    run_deferred,
    table_rows,
    trigger_event,
    without_run_specifics,
)

OTHER_SQL_CONN_ID = "dgs_test_sqlite_deferred"
#: Columns that differ between two runs on the same input by nature: when, which run, which request.
RUN_SPECIFIC_COLUMNS = {"scored_at", "run_id", "request_id", "task_id"}
#: The two tables and the order to compare their rows in.
TABLES = (("deepgram_sentiment_averages", "source"), ("deepgram_sentiment_segments", "source, segment_index"))


# ---------------------------------------------------------------------- helpers


def comparable_rows(db: Path, table: str, order: str) -> list[dict]:
    return [
        {key: value for key, value in row.items() if key not in RUN_SPECIFIC_COLUMNS}
        for row in table_rows(db, table, order=order)
    ]


@pytest.fixture
def other_sqlite_db(tmp_path, monkeypatch) -> Path:
    """A second SQLite connection, for the deferrable run of a side-by-side comparison."""
    path = tmp_path / "deferred.db"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{OTHER_SQL_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    return path


# ---------------------------------------------------------------------- deferring


def test_default_deferrable_comes_from_the_config():
    import inspect

    from airflow.providers.common.compat.sdk import conf

    from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator

    default = inspect.signature(DeepgramSentimentOperator.__init__).parameters["deferrable"].default
    assert default is conf.getboolean("operators", "default_deferrable", fallback=False)


def test_execute_defers_with_plain_json_kwargs_no_key_no_text(deepgram_conn, inbox):
    (inbox / "blank.txt").write_text("   ")
    before = deepgram_conn.stats()["requests"]
    deferred = defer(make_operator(source=f"file://{inbox}/*.txt", deferrable=True, max_concurrency=3))
    assert deepgram_conn.stats()["requests"] - before == 0  # the worker sends nothing
    assert deferred.method_name == "execute_complete"
    assert isinstance(deferred.trigger, DeepgramSentimentTrigger)
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "airflow_provider_dgsentiment.triggers.sentiment.DeepgramSentimentTrigger"
    assert kwargs == {
        "deepgram_conn_id": "deepgram_default",
        # The pattern, not the objects: the trigger lists and reads them (each object is read once).
        "source": {
            "entries": [f"file://{inbox}/*.txt"],
            "conn_id": None,
            "stored_prefix": "",
            "shard": None,
            "given_as": repr(f"file://{inbox}/*.txt"),
            "format": "auto",
            "text_field": "text",
            "id_field": None,
            "sql": None,
            "sql_conn_id": None,
            "record_fields": False,
            "key_namespace": "test_sentiment_operator.score",
        },
        "xcom_output": "full",
        "options": {
            "metric_tags": {"dag_id": "test_sentiment_operator", "task_id": "score"},
            "tags": ["airflow", "test_sentiment_operator", "score"],
            "max_input_tokens": None,
            "language": "en",
            "max_concurrency": 3,
            "skip_scored": True,
            "fail_on_empty_source": True,
            "max_documents": 1000,  # per-document XCom travels back in the event: bounded
            "progress_interval": 30.0,
            "retry_failed": False,
        },
        "warehouse": None,
        "results": None,
    }
    stored = json.dumps(kwargs)  # plain JSON ...
    assert deepgram_conn.api_key not in stored  # ... never the key ...
    assert all(text not in stored for text in (POSITIVE, NEGATIVE, NEUTRAL))  # ... never document text


def test_inline_text_is_scored_in_the_worker_and_says_why(deepgram_conn, log_text):
    before = deepgram_conn.stats()["requests"]
    result = run(make_operator(text=[POSITIVE, NEGATIVE], deferrable=True))  # no TaskDeferred
    assert deepgram_conn.stats()["requests"] - before == 2
    assert [item["results"]["sentiments"]["average"]["sentiment"] for item in result] == ["positive", "negative"]
    assert "document text must not go into trigger arguments" in log_text()


# ---------------------------------------------------------------------- same outcome as the worker


@pytest.mark.parametrize("xcom_output", ["full", "summary", "none"])
def test_deferred_run_returns_the_same_xcom_as_the_worker(deepgram_conn, inbox, xcom_output):
    (inbox / "blank.txt").write_text("\n")
    kwargs = {"source": f"file://{inbox}/*.txt", "xcom_output": xcom_output}
    in_worker = run(make_operator(**kwargs))
    deferred = run_deferred(**kwargs)
    if xcom_output == "none":
        assert in_worker is None and deferred is None
        return
    assert without_run_specifics(deferred) == without_run_specifics(in_worker)
    items = deferred if xcom_output == "full" else deferred["items"]
    assert [item["source"] for item in items] == [f"file://{inbox}/{name}.txt" for name in ("a", "b", "blank", "c")]
    if xcom_output == "summary":
        assert (deferred["scored"], deferred["skipped"]) == (3, 1)
        assert all(item["request_id"] for item in items if item["status"] == "scored")
    json.dumps(deferred)


def test_deferred_rows_equal_worker_rows(deepgram_conn, inbox, sqlite_db, other_sqlite_db):
    for i in range(12):
        verdict = "excellent" if i % 3 else "disappointing"
        (inbox / f"more-{i:02}.txt").write_text(f"Item {i} was {verdict}. Shipping took {i} days.")
    (inbox / "blank.txt").write_text("")
    source = f"file://{inbox}/*.txt"
    run(make_operator(source=source, sql_conn_id=SQL_CONN_ID))
    run_deferred(source=source, sql_conn_id=OTHER_SQL_CONN_ID)
    counts = {}
    for table, order in TABLES:
        in_worker = comparable_rows(sqlite_db, table, order)
        deferred = comparable_rows(other_sqlite_db, table, order)
        assert deferred == in_worker
        counts[table] = (len(in_worker), len(deferred))
    print(f"worker vs deferrable rows (averages, segments): {counts}")
    assert counts["deepgram_sentiment_averages"] == (15, 15)
    assert counts["deepgram_sentiment_segments"][0] >= 15
    worker_row = table_rows(sqlite_db, "deepgram_sentiment_averages")[0]
    deferred_row = table_rows(other_sqlite_db, "deepgram_sentiment_averages")[0]
    assert (deferred_row["dag_id"], deferred_row["task_id"], deferred_row["run_id"]) == (
        worker_row["dag_id"],
        worker_row["task_id"],
        RUN_ID,
    )
    assert deferred_row["request_id"] and deferred_row["request_id"] != worker_row["request_id"]
    assert deferred_row["scored_at"].endswith("+00:00")


def test_already_scored_documents_are_skipped_in_the_triggerer_without_requests(deepgram_conn, inbox, sqlite_db):
    kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": SQL_CONN_ID, "xcom_output": "summary"}
    assert run(make_operator(**kwargs))["scored"] == 3
    (inbox / "d.txt").write_text("A brand new happy document.")
    deferred = defer(make_operator(deferrable=True, **kwargs))
    before = deepgram_conn.stats()["requests"]
    result = resume(deferred, trigger_event(deferred), deferrable=True, **kwargs)
    assert deepgram_conn.stats()["requests"] - before == 1  # only the new one is sent
    assert (result["documents"], result["scored"], result["skipped"]) == (4, 1, 3)
    assert [item["status"] for item in result["items"]] == ["skipped", "skipped", "skipped", "scored"]
    assert result["items"][0]["reason"].startswith("unchanged since its last complete read")
    assert len(table_rows(sqlite_db, "deepgram_sentiment_averages")) == 4

    # Nothing left to score: the trigger sends no request.
    deferred = defer(make_operator(deferrable=True, **kwargs))
    before = deepgram_conn.stats()["requests"]
    again = resume(deferred, trigger_event(deferred), deferrable=True, **kwargs)
    assert deepgram_conn.stats()["requests"] - before == 0
    assert (again["scored"], again["skipped"]) == (0, 4)


def test_failed_documents_fail_with_the_same_message_after_storing_the_rest(
    deepgram_conn, inbox, sqlite_db, other_sqlite_db
):
    (inbox / "latin1.txt").write_bytes("Café crème".encode("latin-1"))
    source = [f"file://{inbox}/{name}" for name in ("a.txt", "latin1.txt", "gone.txt", "b.txt")]
    with pytest.raises(DeepgramError) as in_worker:
        run(make_operator(source=source, sql_conn_id=SQL_CONN_ID))
    deferred = defer(make_operator(source=source, sql_conn_id=OTHER_SQL_CONN_ID, deferrable=True))
    with pytest.raises(DeepgramError) as after_deferral:
        resume(deferred, trigger_event(deferred), source=source, sql_conn_id=OTHER_SQL_CONN_ID, deferrable=True)
    assert str(after_deferral.value) == str(in_worker.value)
    assert str(after_deferral.value).startswith("2 of 4 document(s) failed:\n")
    assert f"file://{inbox}/gone.txt: object not found" in str(after_deferral.value)
    assert type(after_deferral.value) is type(in_worker.value)
    assert len(table_rows(other_sqlite_db, "deepgram_sentiment_averages")) == 2  # stored before failing


def test_the_trigger_lists_and_reads_the_objects_as_they_are_when_it_runs(deepgram_conn, inbox):
    kwargs = {"source": f"file://{inbox}/*.txt", "on_error": "skip", "xcom_output": "summary"}
    deferred = defer(make_operator(deferrable=True, **kwargs))
    (inbox / "b.txt").unlink()
    (inbox / "c.txt").write_text(" ")
    result = resume(deferred, trigger_event(deferred), deferrable=True, **kwargs)
    assert (result["documents"], result["scored"], result["failed"], result["skipped"]) == (2, 1, 0, 1)
    assert [item["source"] for item in result["items"]] == [f"file://{inbox}/a.txt", f"file://{inbox}/c.txt"]
    assert result["items"][1]["reason"] == "empty document"


def test_wrong_key_raises_the_same_systemic_error_as_the_worker(deepgram_conn, inbox, monkeypatch):
    for i in range(30):
        (inbox / f"doc{i:02}.txt").write_text(f"Document number {i} is fine.")
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": deepgram_conn.url, "password": "wrong-key-0000"}),
    )
    kwargs = {"source": f"file://{inbox}/*.txt", "max_concurrency": 2, "on_error": "skip"}
    with pytest.raises(DeepgramAuthenticationError) as in_worker:
        run(make_operator(**kwargs))
    deferred = defer(make_operator(deferrable=True, **kwargs))
    event = trigger_event(deferred)
    assert event["outcome"]["systemic_error"]["status"] == 401
    with pytest.raises(DeepgramAuthenticationError) as after_deferral:
        resume(deferred, event, deferrable=True, **kwargs)
    message = str(after_deferral.value)
    assert "stopped the run: 33 of 33 document(s) left unscored" in message
    strip = re.compile(r" \(request_id=[^)]*\)")
    assert strip.sub("", message) == strip.sub("", str(in_worker.value))
    assert isinstance(after_deferral.value, AirflowFailException)
    assert "wrong-key-0000" not in message


@pytest.mark.parametrize(
    ("event", "error_type", "message"),
    [
        (
            {
                "status": "error",
                "message": "No Deepgram API key: ...",
                "error": None,
                "error_class": "DeepgramConfigurationError",
            },
            DeepgramConfigurationError,
            "No Deepgram API key: ...",
        ),
        (
            {
                "status": "error",
                "message": "Deepgram API error 402 ASR_PAYMENT_REQUIRED: No credit.",
                "error": make_api_error(402, {"err_code": "ASR_PAYMENT_REQUIRED", "err_msg": "No credit."}).to_dict(),
            },
            DeepgramPaymentRequiredError,
            "Deepgram API error 402 ASR_PAYMENT_REQUIRED: No credit.",
        ),
        (
            {
                "status": "error",
                "message": "The conn_id `dg` isn't defined",
                "error": None,
                "error_class": "AirflowNotFoundException",
            },
            AirflowNotFoundException,
            "The conn_id `dg` isn't defined",
        ),
        (
            {"status": "error", "message": "boom", "error": None, "error_class": "RuntimeError"},
            DeepgramError,
            "Scoring failed in the triggerer: RuntimeError: boom",
        ),
        (None, DeepgramError, "Unexpected event from the triggerer: NoneType"),
        ({"status": "done"}, DeepgramError, "Unexpected event from the triggerer: a dict with keys ['status']"),
        ({"status": "success", "message": "x"}, DeepgramError, "carries no usable outcome"),
        ({"status": "success", "outcome": {"keep": "full"}}, DeepgramError, "carries no usable outcome"),
    ],
)
def test_error_events_raise_the_typed_error(event, error_type, message):
    operator = make_operator(source="file:///tmp/x.txt", deferrable=True)
    with pytest.raises(error_type) as excinfo:
        operator.execute_complete(context(), event=event)
    assert type(excinfo.value) is error_type
    assert message in str(excinfo.value)


# ---------------------------------------------------------------------- through the triggerer path of dag.test()


def test_dag_test_runs_the_trigger_inline_and_writes_the_same_rows(
    airflow_db, deepgram_conn, tmp_path, monkeypatch, capsys, log_text
):
    """The files-to-SQL example DAG, once in the worker and once deferrable, through ``dag.test()``.

    ``dag.test()`` in Airflow 3 runs a deferred task's trigger in-process and resumes the
    task with the event. It only runs DAGs of a configured bundle (the DAG folder,
    ``example_dags/`` here), so the example DAG is used with its scoring task switched to
    ``deferrable=True`` on the loaded object.
    """
    from tests.support.dags import DOCUMENTS, SQLITE_CONN_ID, load_dag, xcom_values

    folder = tmp_path / "in"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    (folder / "blank.txt").write_text("   \n")
    databases = {}
    summaries = {}
    for mode in ("worker", "deferrable"):
        db = tmp_path / f"{mode}.db"
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{SQLITE_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(db)})
        )
        dag = load_dag("deepgram_sentiment_files_to_sql.py")
        dag.get_task("score_files").deferrable = mode == "deferrable"
        before = log_text()
        dag_run = dag.test(run_conf={"source": f"file://{folder}/*.txt"})
        after = log_text()
        assert dag_run.state == "success", after[-3000:]

        def new_lines(text: str, before: str = before, after: str = after) -> int:
            return after.count(text) - before.count(text)

        deferring = 1 if mode == "deferrable" else 0
        assert new_lines("[DAG TEST] running trigger in line") == deferring
        assert new_lines(f"Deferring the scoring of source file://{folder}/*.txt to the triggerer") == deferring
        assert (
            new_lines("Resumed from the triggerer: Scored 3 of 4 document(s): 0 failed, 1 skipped, 3 stored")
            == deferring
        )
        databases[mode] = db
        summaries[mode] = xcom_values(dag_run)["score_files"]

    assert without_run_specifics(summaries["deferrable"]) == without_run_specifics(summaries["worker"])
    assert (summaries["deferrable"]["scored"], summaries["deferrable"]["skipped"]) == (3, 1)
    counts = {}
    for table, order in TABLES:
        in_worker = comparable_rows(databases["worker"], table, order)
        deferred = comparable_rows(databases["deferrable"], table, order)
        assert deferred == in_worker
        counts[table] = {"worker": len(in_worker), "deferrable": len(deferred)}
    with sqlite3.connect(databases["deferrable"]) as connection:
        task_ids = {row[0] for row in connection.execute("SELECT DISTINCT task_id FROM deepgram_sentiment_averages")}
    assert task_ids == {"score_files"}
    with capsys.disabled():
        print(f"\ndag.test() rows, worker vs deferrable: {counts}")
    assert counts["deepgram_sentiment_averages"] == {"worker": 3, "deferrable": 3}
