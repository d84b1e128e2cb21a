"""DeepgramSentimentOperator.execute against the local emulator, and a loopback stand-in API for edge cases."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import DAG, AirflowException, AirflowFailException

from airflow_provider_dgsentiment.exceptions import (
    DeepgramAuthenticationError,
    DeepgramConfigurationError,
    DeepgramError,
    DeepgramPaymentRequiredError,
)
from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator
from airflow_provider_dgsentiment.run.outcome import ScoringOutcome
from airflow_provider_dgsentiment.storage.warehouse import WarehouseWriter, validate_table_name
from tests.conftest import NEGATIVE, NEUTRAL, POSITIVE, SQL_CONN_ID, require_service
from tests.support.operator_runs import RUN_ID, make_operator, run, table_count, table_rows

# ---------------------------------------------------------------------- helpers


def requests_sent(emulator, before: dict) -> int:
    return emulator.stats()["requests"] - before["requests"]


def table_names(db: Path) -> set[str]:
    with sqlite3.connect(db) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# ---------------------------------------------------------------------- fixtures


# ---------------------------------------------------------------------- arguments


def test_template_fields_are_a_tuple_of_the_documented_names():
    assert DeepgramSentimentOperator.template_fields == (
        "deepgram_conn_id",
        "text",
        "source",
        "source_conn_id",
        "shard",
        "claims",
        "sql_conn_id",
        "segments_table",
        "averages_table",
        "results_path",
        "results_conn_id",
        "sql",
        "sql_source_conn_id",
        "text_field",
        "id_field",
        "key_namespace",
        "format",
        "tags",
        "language",
        "usage_table",
    )
    assert set(DeepgramSentimentOperator.template_fields_renderers) == {"text", "source", "sql"}


def test_deepgram_conn_id_is_rendered_and_used(monkeypatch, deepgram_conn):
    """A templated connection id (e.g. one account per environment) picks the connection it renders to."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_STAGING",
        json.dumps({"conn_type": "deepgram", "host": deepgram_conn.url, "password": deepgram_conn.api_key}),
    )
    monkeypatch.delenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT")
    operator = make_operator(text=POSITIVE, deepgram_conn_id="deepgram_{{ params.env }}")
    before = deepgram_conn.stats()
    result = run(operator, params={"env": "staging"})
    assert operator.deepgram_conn_id == "deepgram_staging"
    assert result["results"]["sentiments"]["average"]["sentiment"] == "positive"
    assert requests_sent(deepgram_conn, before) == 1


def test_init_stores_arguments_verbatim_and_builds_no_hook():
    operator = make_operator(text="hi", xcom_output="bogus", on_error="maybe", max_concurrency=0, segments_table="a;b")
    assert operator.xcom_output == "bogus"
    assert operator.on_error == "maybe"
    assert operator.max_concurrency == 0
    assert operator.segments_table == "a;b"
    assert operator.deferrable is False
    assert "hook" not in operator.__dict__
    assert "writer" not in operator.__dict__


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of text, source and sql (none was given)"),
        (
            {"text": "hi", "source": "file:///tmp/x.txt"},
            "exactly one of text, source and sql (text and source were given)",
        ),
        ({"sql": "SELECT 1", "source": "file:///tmp/x.txt"}, "(source and sql were given)"),
        ({"sql": "SELECT id, text FROM t"}, "sql needs sql_source_conn_id (or sql_conn_id) to run on"),
        ({"sql": "  ", "sql_conn_id": "x"}, "sql must be a SELECT statement"),
        (
            {"source": "file:///tmp/x.jsonl", "format": "xml"},
            "format must be one of 'auto', 'text', 'jsonl', 'json', 'csv', 'parquet'",
        ),
        ({"source": "file:///tmp/x.jsonl", "text_field": ""}, "text_field must name a field"),
        (
            {"text": "hi", "xcom_output": "bogus"},
            "xcom_output must be one of 'full', 'summary', 'manifest', 'none', got 'bogus'",
        ),
        ({"text": "hi", "on_error": "ignore"}, "on_error must be one of 'fail', 'skip', got 'ignore'"),
        ({"text": "hi", "max_concurrency": 0}, "max_concurrency must be a whole number of at least 1, got 0"),
        ({"text": "hi", "max_concurrency": True}, "max_concurrency must be a whole number of at least 1, got True"),
        ({"text": "hi", "max_concurrency": 2.5}, "max_concurrency must be a whole number of at least 1, got 2.5"),
        ({"text": ["ok", 3]}, "text[1] must be a string, got int"),
        ({"text": {"a": 1}}, "text must be a string or a list of strings, got dict"),
        ({"text": "hi", "language": ""}, "language must be a language code"),
        ({"text": "hi", "progress_interval": -1}, "progress_interval must be a number of seconds"),
        (
            {"text": "hi", "segments_table": "deepgram_sentiment_segments; DROP TABLE users"},
            "segments_table 'deepgram_sentiment_segments; DROP TABLE users' is not a valid table name",
        ),
        ({"text": "hi", "averages_table": "a.b.c"}, "averages_table 'a.b.c' is not a valid table name"),
        ({"text": "hi", "averages_table": "1table"}, "averages_table '1table' is not a valid table name"),
        ({"source": ["file:///tmp/a.txt", 7]}, "source[1] must be a URI string or ObjectStoragePath, got 7"),
    ],
)
def test_execute_rejects_bad_arguments_before_any_request(mock_deepgram, kwargs, message):
    operator = make_operator(**kwargs)
    with pytest.raises(DeepgramConfigurationError) as excinfo:
        run(operator)
    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, AirflowFailException)  # no point in retrying
    assert mock_deepgram.mocker.call_count == 0


def test_invalid_table_name_creates_nothing(mock_deepgram, sqlite_db):
    operator = make_operator(
        text="hi", sql_conn_id=SQL_CONN_ID, averages_table="deepgram_sentiment_averages; DROP TABLE x"
    )
    with pytest.raises(DeepgramConfigurationError, match="deepgram_sentiment_averages; DROP TABLE x"):
        run(operator)
    assert mock_deepgram.mocker.call_count == 0
    assert not sqlite_db.exists() or table_names(sqlite_db) == set()


def test_sql_conn_that_is_not_a_sql_connection_is_refused(mock_deepgram, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", json.dumps({"conn_type": "deepgram", "password": "x"}))
    operator = make_operator(text="hi", sql_conn_id="not_sql")
    with pytest.raises(DeepgramConfigurationError, match="sql_conn_id 'not_sql'.*not a SQL"):
        run(operator)
    assert mock_deepgram.mocker.call_count == 0


def test_partial_expand_accepts_text_and_source():
    with DAG(dag_id="test_sentiment_mapping", schedule=None):
        by_text = DeepgramSentimentOperator.partial(task_id="by_text", xcom_output="summary").expand(
            text=["one", "two"]
        )
        by_source = DeepgramSentimentOperator.partial(task_id="by_source").expand(
            source=["file:///tmp/a.txt", "file:///tmp/b.txt"]
        )
    assert by_text.expand_input.value == {"text": ["one", "two"]}
    assert by_source.expand_input.value == {"source": ["file:///tmp/a.txt", "file:///tmp/b.txt"]}


# ---------------------------------------------------------------------- inline text, XCom shapes


def test_single_text_returns_one_api_shaped_dict_with_source(deepgram_conn):
    result = run(make_operator(text=POSITIVE))
    assert isinstance(result, dict)
    assert result["source"] == "text"
    assert set(result) == {"source", "metadata", "results"}
    assert result["metadata"]["request_id"]
    assert result["metadata"]["sentiment_info"]["input_tokens"] > 0
    assert result["results"]["sentiments"]["average"]["sentiment"] == "positive"
    segments = result["results"]["sentiments"]["segments"]
    assert segments[0]["start_word"] == 0
    assert segments[-1]["end_word"] == len(POSITIVE.split()) - 1
    json.dumps(result)  # plain JSON-safe data


def test_text_list_full_keeps_input_order_and_marks_skipped_entries(deepgram_conn):
    before = deepgram_conn.stats()
    result = run(make_operator(text=[POSITIVE, "   \n\t", NEGATIVE, NEUTRAL, ""]))
    assert [item["source"] for item in result] == [f"text[{i}]" for i in range(5)]
    assert result[0]["results"]["sentiments"]["average"]["sentiment"] == "positive"
    assert result[2]["results"]["sentiments"]["average"]["sentiment"] == "negative"
    assert result[3]["results"]["sentiments"]["average"]["sentiment"] == "neutral"
    assert result[1] == {"source": "text[1]", "status": "skipped", "reason": "empty document"}
    assert result[4] == {"source": "text[4]", "status": "skipped", "reason": "empty document"}
    # Empty documents cost no request.
    assert requests_sent(deepgram_conn, before) == 3


def test_summary_output_has_counts_and_compact_items(deepgram_conn):
    result = run(make_operator(text=[NEGATIVE, "", POSITIVE], xcom_output="summary"))
    assert {key: result[key] for key in ("documents", "scored", "skipped", "failed")} == {
        "documents": 3,
        "scored": 2,
        "skipped": 1,
        "failed": 0,
    }
    first, empty, last = result["items"]
    assert set(first) == {"source", "status", "sentiment", "sentiment_score", "segment_count", "request_id"}
    assert first["source"] == "text[0]" and first["status"] == "scored" and first["sentiment"] == "negative"
    assert first["sentiment_score"] < -0.333 and first["segment_count"] >= 1 and first["request_id"]
    assert last["sentiment"] == "positive"
    assert empty == {
        "source": "text[1]",
        "status": "skipped",
        "sentiment": None,
        "sentiment_score": None,
        "segment_count": None,
        "request_id": None,
        "reason": "empty document",
    }
    assert "results" not in json.dumps(result)  # no segment texts in the summary


def test_none_output_returns_none_but_still_scores(deepgram_conn):
    before = deepgram_conn.stats()
    assert run(make_operator(text=[POSITIVE, NEGATIVE], xcom_output="none")) is None
    assert requests_sent(deepgram_conn, before) == 2


def test_outcome_keeps_no_items_for_none_output():
    outcome = ScoringOutcome(total=100_000, keep="none")
    outcome.record_skipped(7, "x.txt", "empty document")
    outcome.record_failed(8, "y.txt", "object not found")
    assert outcome.items == {}
    assert outcome.xcom_value() is None
    assert ScoringOutcome(total=3, keep="summary").xcom_value()["items"] == [None, None, None]


def test_templates_render_before_checks(deepgram_conn, inbox):
    operator = make_operator(
        source="{{ params.folder }}/*.txt",
        language="{{ params.lang }}",
        xcom_output="summary",
    )
    result = run(operator, params={"folder": f"file://{inbox}", "lang": "en"})
    assert operator.source == f"file://{inbox}/*.txt"
    assert result["scored"] == 3
    text_operator = make_operator(task_id="inline", text=["{{ params.greeting }}, I love it"])
    result = run(text_operator, params={"greeting": "Hello"})
    assert text_operator.text == ["Hello, I love it"]
    assert result[0]["results"]["sentiments"]["segments"][0]["text"] == "Hello, I love it"


def test_single_empty_text_is_skipped_without_request(deepgram_conn):
    before = deepgram_conn.stats()
    assert run(make_operator(text="  ")) == {"source": "text", "status": "skipped", "reason": "empty document"}
    assert requests_sent(deepgram_conn, before) == 0


def test_empty_text_list_scores_nothing(deepgram_conn):
    assert run(make_operator(text=[])) == []
    assert run(make_operator(text=[], xcom_output="summary")) == {
        "documents": 0,
        "scored": 0,
        "skipped": 0,
        "failed": 0,
        "known_failed": 0,
        "unchanged": 0,
        "items": [],
    }


# ---------------------------------------------------------------------- object storage


def test_source_glob_scores_files_in_sorted_order(deepgram_conn, inbox):
    result = run(make_operator(source=f"file://{inbox}/*.txt"))
    assert [item["source"] for item in result] == [f"file://{inbox}/{name}.txt" for name in "abc"]
    assert [item["results"]["sentiments"]["average"]["sentiment"] for item in result] == [
        "positive",
        "negative",
        "neutral",
    ]


def test_source_folder_and_list_and_list_literal(deepgram_conn, inbox):
    folder = run(make_operator(source=f"file://{inbox}/", xcom_output="summary"))
    assert folder["scored"] == 3
    listed = run(make_operator(source=[f"file://{inbox}/b.txt", f"file://{inbox}/a.txt"], xcom_output="summary"))
    assert [item["source"] for item in listed["items"]] == [f"file://{inbox}/a.txt", f"file://{inbox}/b.txt"]
    # A sensor's XCom rendered into a string template arrives as a list literal.
    rendered = run(make_operator(source=str([f"file://{inbox}/c.txt"]), xcom_output="summary"))
    assert [item["source"] for item in rendered["items"]] == [f"file://{inbox}/c.txt"]


def test_empty_and_whitespace_files_are_skipped_without_request_and_named(deepgram_conn, inbox, log_text):
    (inbox / "empty.txt").write_text("")
    (inbox / "spaces.txt").write_text("  \n\n\t ")
    before = deepgram_conn.stats()
    result = run(make_operator(source=f"file://{inbox}/*.txt", xcom_output="summary"))
    assert (result["scored"], result["skipped"], result["failed"]) == (3, 2, 0)
    assert requests_sent(deepgram_conn, before) == 3
    logs = log_text()
    assert "Skipped 2 empty document(s) without a request" in logs
    assert f"file://{inbox}/empty.txt" in logs and f"file://{inbox}/spaces.txt" in logs


def test_bad_utf8_fails_naming_the_object_after_scoring_the_rest(deepgram_conn, inbox, sqlite_db):
    (inbox / "latin1.txt").write_bytes("Café crème, très bien".encode("latin-1"))
    operator = make_operator(source=f"file://{inbox}/*.txt", sql_conn_id=SQL_CONN_ID)
    with pytest.raises(DeepgramError) as excinfo:
        run(operator)
    message = str(excinfo.value)
    assert f"1 of 4 document(s) failed:\n  file://{inbox}/latin1.txt: not valid UTF-8 text (byte 0xe9" in message
    assert not isinstance(excinfo.value, DeepgramConfigurationError)
    # The good documents were scored and stored before the task failed.
    assert table_count(sqlite_db, "deepgram_sentiment_averages") == 3


def test_bad_utf8_with_on_error_skip_succeeds_and_reports(deepgram_conn, inbox, log_text):
    (inbox / "latin1.txt").write_bytes(b"caf\xe9")
    result = run(make_operator(source=f"file://{inbox}/*.txt", on_error="skip", xcom_output="summary"))
    assert (result["scored"], result["failed"]) == (3, 1)
    failed = [item for item in result["items"] if item["status"] == "failed"]
    assert failed[0]["source"] == f"file://{inbox}/latin1.txt"
    assert "not valid UTF-8" in failed[0]["error"]
    assert f"file://{inbox}/latin1.txt: not valid UTF-8" in log_text()


def test_missing_object_in_a_list_is_a_failure_naming_it(deepgram_conn, inbox):
    missing = f"file://{inbox}/gone.txt"
    result = run(make_operator(source=[f"file://{inbox}/a.txt", missing], on_error="skip"))
    assert result[0]["source"] == f"file://{inbox}/a.txt" and "results" in result[0]
    assert result[1] == {"source": missing, "status": "failed", "error": "object not found"}
    with pytest.raises(DeepgramError, match=f"{missing}: object not found"):
        run(make_operator(source=[f"file://{inbox}/a.txt", missing]))


def test_source_matching_nothing_names_the_pattern(deepgram_conn, tmp_path, log_text):
    pattern = f"file://{tmp_path}/nothing/*.txt"
    with pytest.raises(DeepgramError, match=re.escape(f"source {pattern} matched no objects (set fail_on_empty")):
        run(make_operator(source=pattern))
    result = run(make_operator(source=pattern, fail_on_empty_source=False, xcom_output="summary"))
    assert result == {
        "documents": 0,
        "scored": 0,
        "skipped": 0,
        "failed": 0,
        "known_failed": 0,
        "unchanged": 0,
        "items": [],
    }
    assert f"source {pattern} matched no objects; nothing to score" in log_text()


@pytest.mark.parametrize("source", ["  ", []])
def test_empty_source_is_a_source_matching_nothing(mock_deepgram, source):
    with pytest.raises(DeepgramError, match=re.escape(f"source {source!r} (no URI given) matched no objects")):
        run(make_operator(source=source))
    assert run(make_operator(source=source, fail_on_empty_source=False)) == []
    assert mock_deepgram.mocker.call_count == 0


def test_source_naming_two_storage_connections_needs_source_conn_id(mock_deepgram):
    with pytest.raises(DeepgramConfigurationError, match="several storage connections"):
        run(make_operator(source=["s3://conn_a@bucket/a.txt", "s3://conn_b@bucket/b.txt"]))


# ---------------------------------------------------------------------- API failures


def test_on_error_fail_names_each_failed_document_and_why(mock_deepgram):
    mock_deepgram.answer = lambda text: (
        (400, {"err_code": "BAD_REQUEST", "err_msg": "Text is not acceptable.", "request_id": "req-bad"})
        if text.startswith("bad")
        else None
    )
    operator = make_operator(text=["good one", "bad one", "good two", "bad two"])
    with pytest.raises(DeepgramError) as excinfo:
        run(operator)
    message = str(excinfo.value)
    assert message.startswith("2 of 4 document(s) failed:\n")
    assert "text[1]: Deepgram API error 400 BAD_REQUEST: Text is not acceptable. (request_id=req-bad)" in message
    assert "text[3]: Deepgram API error 400 BAD_REQUEST" in message
    assert "text[0]" not in message and "text[2]" not in message
    assert mock_deepgram.mocker.call_count == 4  # every document was tried


def test_on_error_fail_lists_at_most_twenty_failures(mock_deepgram):
    mock_deepgram.answer = lambda text: (400, {"err_code": "BAD_REQUEST", "err_msg": "no"})
    with pytest.raises(DeepgramError) as excinfo:
        run(make_operator(text=[f"text number {i}" for i in range(25)], max_concurrency=1))
    lines = str(excinfo.value).splitlines()
    assert lines[0] == "25 of 25 document(s) failed:"
    assert len(lines) == 1 + 20 + 1
    assert lines[-1] == "  and 5 more"


def test_on_error_skip_succeeds_with_failures_in_the_output(mock_deepgram, log_text):
    mock_deepgram.answer = lambda text: (
        (400, {"err_code": "BAD_REQUEST", "err_msg": "Text is not acceptable."}) if text == "bad" else None
    )
    result = run(make_operator(text=["fine", "bad"], on_error="skip", xcom_output="summary"))
    assert (result["scored"], result["failed"]) == (1, 1)
    assert result["items"][1]["status"] == "failed"
    assert result["items"][1]["error"].startswith("Deepgram API error 400 BAD_REQUEST")
    assert "1 of 2 document(s) failed:\n  text[1]: Deepgram API error 400" in log_text()
    full = run(make_operator(task_id="full", text=["fine", "bad"], on_error="skip"))
    assert full[1]["source"] == "text[1]" and full[1]["status"] == "failed" and "400" in full[1]["error"]


def test_wrong_key_stops_at_once(deepgram_conn, monkeypatch, inbox):
    for i in range(60):
        (inbox / f"doc{i:02}.txt").write_text(f"Document number {i} is fine.")
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": deepgram_conn.url, "password": "wrong-key-0000"}),
    )
    before = deepgram_conn.stats()
    with pytest.raises(DeepgramAuthenticationError) as excinfo:
        run(make_operator(source=f"file://{inbox}/*.txt", max_concurrency=2, on_error="skip"))
    sent = requests_sent(deepgram_conn, before)
    assert 1 <= sent <= 2, f"{sent} requests sent after a 401"
    message = str(excinfo.value)
    assert "401" in message and "INVALID_AUTH" in message
    assert "stopped the run: 63 of 63 document(s) left unscored" in message
    assert "wrong-key-0000" not in message
    assert isinstance(excinfo.value, AirflowFailException)


def test_systemic_error_mid_run_stores_what_was_scored(mock_deepgram, sqlite_db):
    calls = iter(range(1000))
    mock_deepgram.answer = lambda text: (
        None if next(calls) < 5 else (402, {"err_code": "ASR_PAYMENT_REQUIRED", "err_msg": "Project has no credit."})
    )
    operator = make_operator(
        text=[f"Sentence {i} is lovely." for i in range(20)], max_concurrency=1, sql_conn_id=SQL_CONN_ID
    )
    with pytest.raises(DeepgramPaymentRequiredError) as excinfo:
        run(operator)
    assert mock_deepgram.mocker.call_count == 6
    assert "stopped the run: 15 of 20 document(s) left unscored; the 5 scored were stored" in str(excinfo.value)
    assert table_count(sqlite_db, "deepgram_sentiment_averages") == 5
    assert table_count(sqlite_db, "deepgram_sentiment_segments") == 5


def test_unsupported_language_is_systemic(deepgram_conn):
    before = deepgram_conn.stats()
    with pytest.raises(AirflowException, match="unsupported language") as excinfo:
        run(make_operator(text=[f"text {i}" for i in range(30)], language="xx", max_concurrency=3))
    assert excinfo.value.systemic
    assert requests_sent(deepgram_conn, before) <= 3


# ---------------------------------------------------------------------- SQL


def test_sqlite_rows_for_segments_and_averages(deepgram_conn, inbox, sqlite_db):
    run(make_operator(source=f"file://{inbox}/*.txt", sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    averages = table_rows(sqlite_db, "deepgram_sentiment_averages")
    assert [row["source"] for row in averages] == [f"file://{inbox}/{name}.txt" for name in "abc"]
    assert [row["sentiment"] for row in averages] == ["positive", "negative", "neutral"]
    first = averages[0]
    assert first["fingerprint"] == hashlib.sha256(POSITIVE.encode()).hexdigest()
    assert first["segment_count"] >= 1 and first["input_tokens"] > 0 and first["output_tokens"] > 0
    assert first["model_uuid"] and first["language"] == "en" and first["request_id"]
    assert (first["dag_id"], first["task_id"], first["run_id"]) == ("test_sentiment_operator", "score", RUN_ID)
    assert first["scored_at"].endswith("+00:00")
    segments = table_rows(sqlite_db, "deepgram_sentiment_segments", order="source, segment_index")
    assert len(segments) == sum(row["segment_count"] for row in averages)
    a_segments = [row for row in segments if row["source"] == first["source"]]
    assert [row["segment_index"] for row in a_segments] == list(range(len(a_segments)))
    assert " ".join(row["text"] for row in a_segments) == POSITIVE
    assert a_segments[0]["start_word"] == 0 and a_segments[-1]["end_word"] == len(POSITIVE.split()) - 1
    assert all(row["request_id"] == first["request_id"] for row in a_segments)


def test_rerun_replaces_rows_without_duplicates(deepgram_conn, inbox, sqlite_db):
    operator_kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": SQL_CONN_ID, "skip_scored": False}
    run(make_operator(**operator_kwargs))
    counts = (
        table_count(sqlite_db, "deepgram_sentiment_segments"),
        table_count(sqlite_db, "deepgram_sentiment_averages"),
    )
    first_ids = {row["source"]: row["request_id"] for row in table_rows(sqlite_db, "deepgram_sentiment_averages")}
    before = deepgram_conn.stats()
    run(make_operator(**operator_kwargs))
    assert requests_sent(deepgram_conn, before) == 3  # really scored again
    assert (
        table_count(sqlite_db, "deepgram_sentiment_segments"),
        table_count(sqlite_db, "deepgram_sentiment_averages"),
    ) == counts
    assert counts[1] == 3
    second_ids = {row["source"]: row["request_id"] for row in table_rows(sqlite_db, "deepgram_sentiment_averages")}
    assert set(second_ids) == set(first_ids)
    assert all(second_ids[source] != first_ids[source] for source in first_ids)  # replaced, not kept


def test_incremental_run_scores_only_new_or_changed_documents(deepgram_conn, inbox, sqlite_db):
    operator_kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": SQL_CONN_ID, "xcom_output": "summary"}
    assert run(make_operator(**operator_kwargs))["scored"] == 3
    (inbox / "d.txt").write_text("A brand new happy document.")
    (inbox / "b.txt").write_text("Actually it turned out fine.")
    before = deepgram_conn.stats()
    result = run(make_operator(**operator_kwargs))
    assert requests_sent(deepgram_conn, before) == 2
    assert (result["scored"], result["skipped"]) == (2, 2)
    statuses = {item["source"].rsplit("/", 1)[-1]: item for item in result["items"]}
    assert statuses["a.txt"]["status"] == "skipped"
    assert statuses["a.txt"]["reason"].startswith("unchanged since its last complete read")
    assert statuses["b.txt"]["status"] == statuses["d.txt"]["status"] == "scored"
    averages = table_rows(sqlite_db, "deepgram_sentiment_averages")
    assert len(averages) == 4
    b_row = next(row for row in averages if row["source"].endswith("/b.txt"))
    assert b_row["fingerprint"] == hashlib.sha256(b"Actually it turned out fine.").hexdigest()
    b_segments = [
        row for row in table_rows(sqlite_db, "deepgram_sentiment_segments") if row["source"].endswith("/b.txt")
    ]
    assert " ".join(row["text"] for row in b_segments) == "Actually it turned out fine."


def test_inline_text_rows_are_named_per_task(deepgram_conn, sqlite_db):
    run(make_operator(task_id="first", text=[POSITIVE, NEGATIVE], sql_conn_id=SQL_CONN_ID, skip_scored=False))
    run(make_operator(task_id="second", text=POSITIVE, sql_conn_id=SQL_CONN_ID, skip_scored=False))
    run(make_operator(task_id="second", text=NEUTRAL, sql_conn_id=SQL_CONN_ID, skip_scored=False), map_index=3)
    sources = [row["source"] for row in table_rows(sqlite_db, "deepgram_sentiment_averages")]
    assert sources == [
        "inline://test_sentiment_operator/first/text[0]",
        "inline://test_sentiment_operator/first/text[1]",
        "inline://test_sentiment_operator/second/3/text",
        "inline://test_sentiment_operator/second/text",
    ]


def test_custom_table_names(deepgram_conn, sqlite_db):
    run(
        make_operator(
            text=[POSITIVE],
            sql_conn_id=SQL_CONN_ID,
            segments_table="my_segments",
            averages_table="My_Averages",
        )
    )
    assert {"my_segments", "My_Averages"} <= table_names(sqlite_db)
    assert "deepgram_sentiment_averages" not in table_names(sqlite_db)
    assert table_count(sqlite_db, "My_Averages") == 1


def test_writes_in_batches_across_transactions(mock_deepgram, sqlite_db):
    texts = [f"Review {i}: good value." for i in range(450)]
    result = run(make_operator(text=texts, sql_conn_id=SQL_CONN_ID, xcom_output="summary"))
    assert result["scored"] == 450
    assert table_count(sqlite_db, "deepgram_sentiment_averages") == 450
    assert table_count(sqlite_db, "deepgram_sentiment_segments") == 450


def test_postgres_rerun_replaces_rows_and_skips_scored(deepgram_conn, inbox, monkeypatch):
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    monkeypatch.setenv("AIRFLOW_CONN_DGS_TEST_PG", uri)
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    suffix = uuid.uuid4().hex[:10]
    tables = {"segments_table": f"dgs_op_segments_{suffix}", "averages_table": f"dgs_op_averages_{suffix}"}
    hook = PostgresHook(postgres_conn_id="dgs_test_pg")
    kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": "dgs_test_pg", "xcom_output": "summary", **tables}

    def rows() -> list[tuple]:
        return hook.get_records(f"SELECT source, request_id FROM {tables['averages_table']} ORDER BY source")

    try:
        assert run(make_operator(**kwargs))["scored"] == 3
        first = rows()
        segments = hook.get_first(f"SELECT COUNT(*) FROM {tables['segments_table']}")[0]
        assert len(first) == 3
        result = run(make_operator(**kwargs, skip_scored=False))
        assert result["scored"] == 3
        second = rows()
        assert [row[0] for row in second] == [row[0] for row in first]
        assert all(new[1] != old[1] for new, old in zip(second, first))  # replaced by the rerun
        assert hook.get_first(f"SELECT COUNT(*) FROM {tables['segments_table']}")[0] == segments
        assert run(make_operator(**kwargs))["skipped"] == 3
    finally:
        hook.run(f"DROP TABLE IF EXISTS {tables['segments_table']}")
        hook.run(f"DROP TABLE IF EXISTS {tables['averages_table']}")


def test_parallel_tasks_creating_the_tables_on_postgres_do_not_fail(monkeypatch):
    """Mapped tasks start together; PostgreSQL's CREATE TABLE IF NOT EXISTS can collide."""
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    monkeypatch.setenv("AIRFLOW_CONN_DGS_TEST_PG", uri)
    suffix = uuid.uuid4().hex[:10]
    tables = {"segments_table": f"dgs_race_segments_{suffix}", "averages_table": f"dgs_race_averages_{suffix}"}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def create() -> None:
        with WarehouseWriter("dgs_test_pg", **tables) as writer:
            start.wait()
            try:
                writer.ensure_tables()
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        with WarehouseWriter("dgs_test_pg", **tables) as writer:
            assert writer.count_rows() == (0, 0)
    finally:
        with WarehouseWriter("dgs_test_pg", **tables) as writer:
            cursor = writer.connection.cursor()
            cursor.execute(f"DROP TABLE IF EXISTS {tables['segments_table']}")
            cursor.execute(f"DROP TABLE IF EXISTS {tables['averages_table']}")
            writer.connection.commit()


@pytest.mark.parametrize("name", ["analytics.sentiment_averages", "_x", "A" * 63])
def test_valid_table_names(name):
    assert validate_table_name(name) == name


@pytest.mark.parametrize("name", ["", "a" * 64, "a-b", "a b", "a.b.c", ".a", "a;", 'x"', 3])
def test_invalid_table_names(name):
    with pytest.raises(DeepgramConfigurationError, match="averages_table"):
        validate_table_name(name, "averages_table")


# ---------------------------------------------------------------------- secrets and logs


def test_key_never_in_xcom_table_or_log(deepgram_conn, inbox, sqlite_db, log_text):
    key = deepgram_conn.api_key
    full = run(make_operator(source=f"file://{inbox}/*.txt", sql_conn_id=SQL_CONN_ID, skip_scored=False))
    summary = run(make_operator(text=[POSITIVE], xcom_output="summary", sql_conn_id=SQL_CONN_ID))
    assert key not in json.dumps(full) and key not in json.dumps(summary)
    with sqlite3.connect(sqlite_db) as connection:
        dump = "\n".join(connection.iterdump())
    assert POSITIVE in dump  # the dump does hold the rows ...
    assert key not in dump  # ... but never the key
    logs = log_text()
    assert "Processed 3/3 documents (scored 3, failed 0, skipped 0)" in logs
    assert key not in logs
    assert POSITIVE not in logs  # document text is private too


def test_progress_lines_with_rate_and_eta(deepgram_conn, log_text):
    run(make_operator(text=[POSITIVE, NEGATIVE, "", NEUTRAL], progress_interval=0))
    logs = log_text()
    assert "Processed 4/4 documents (scored 3, failed 0, skipped 1)" in logs
    assert "docs/s, ETA" in logs


# ---------------------------------------------------------------------- tags and the token cap


def test_every_request_carries_the_pipeline_tags(deepgram_conn, inbox):
    deepgram_conn.reset_stats()
    run(make_operator(source=f"file://{inbox}/*.txt", xcom_output="none"))
    tags = deepgram_conn.stats()["tags"]
    assert (tags["airflow"], tags["test_sentiment_operator"], tags["score"]) == (3, 3, 3)
    deepgram_conn.reset_stats()
    run(make_operator(source=f"file://{inbox}/a.txt", tags=["nightly", "x" * 300], xcom_output="none"))
    assert deepgram_conn.stats()["tags"] == {"nightly": 1, "x" * 128: 1}  # cut to Deepgram's 128 characters


def test_max_input_tokens_stops_before_the_cap_and_a_retry_counts_what_is_stored(deepgram_conn, tmp_path, sqlite_db):
    from airflow_provider_dgsentiment.exceptions import DeepgramTokenBudgetError

    folder = tmp_path / "docs"
    folder.mkdir()
    for index in range(20):
        (folder / f"{index:02}.txt").write_text(f"Document {index} was pleasant and arrived on time.")
    kwargs = {"source": f"file://{folder}/*.txt", "sql_conn_id": SQL_CONN_ID, "max_concurrency": 1}
    before = deepgram_conn.stats()["requests"]
    with pytest.raises(DeepgramTokenBudgetError) as raised:
        run(make_operator(max_input_tokens=60, **kwargs))
    sent = deepgram_conn.stats()["requests"] - before
    message = str(raised.value)
    assert "max_input_tokens=60 would be passed" in message and "stopped the run" in message
    stored = table_count(sqlite_db, "deepgram_sentiment_averages")
    assert 1 <= stored == sent < 20  # what was scored is stored; nothing past the cap was sent
    with sqlite3.connect(sqlite_db) as connection:
        assert connection.execute("SELECT SUM(input_tokens) FROM deepgram_sentiment_averages").fetchone()[0] <= 60

    # The retry (same task, same run) counts the tokens stored by the first try: it sends nothing more.
    before = deepgram_conn.stats()["requests"]
    with pytest.raises(DeepgramTokenBudgetError):
        run(make_operator(max_input_tokens=60, **kwargs))
    assert deepgram_conn.stats()["requests"] - before == 0
