"""DeepgramSentimentOperator over records (issue 14): record files and SQL rows through a real run.

Every test runs the operator against the emulator (``deepgram_conn``) and stores into real
tables (SQLite, or PostgreSQL of ``scripts/services.sh``); S3 cases use the S3-compatible
server. Request counts come from the emulator's own counters (``GET /_emulator/stats``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramError
from tests.conftest import NEGATIVE, NEUTRAL, POSITIVE, SQL_CONN_ID
from tests.integration.conftest import POSTGRES_CONN_ID, postgres_tables, s3_bucket  # noqa: F401  (fixtures)
from tests.support.operator_runs import (
    make_operator,
    requests_during,
    run,
    run_deferred,
    table_count,
    table_rows,
    without_run_specifics,
)

AVERAGES = "deepgram_sentiment_averages"
SEGMENTS = "deepgram_sentiment_segments"
RECORDS = [
    {"id": "r-1", "text": POSITIVE},
    {"id": "r-2", "text": 'Awful, "truly" awful,\nI hate\tit. The support was terrible.'},
    {"id": "r-3", "text": NEUTRAL},
]
SENTIMENTS = {"r-1": "positive", "r-2": "negative", "r-3": "neutral"}
#: The key namespace of records keyed by id_field in make_operator's task (``<dag_id>.<task_id>``).
NS = "test_sentiment_operator.score"


# ---------------------------------------------------------------------- sample files


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def delimited_bytes(rows: list[dict], delimiter: str) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["id", "text", "extra"])
    for row in rows:
        writer.writerow([row["id"], row["text"], "x"])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")  # with a byte-order mark, as Excel writes


def parquet_bytes(columns: dict[str, list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, row_group_size=2)
    return buffer.getvalue()


def sample_bytes(fmt: str, rows: list[dict] = RECORDS) -> bytes:
    if fmt == "jsonl":
        return jsonl_bytes(rows)
    if fmt in ("csv", "tsv"):
        return delimited_bytes(rows, "\t" if fmt == "tsv" else ",")
    return parquet_bytes({"id": [row["id"] for row in rows], "text": [row["text"] for row in rows]})


def write_file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def stored(db: Path) -> dict[str, str]:
    """``{source: sentiment}`` of the averages table."""
    return {row["source"]: row["sentiment"] for row in table_rows(db, AVERAGES)}


# ---------------------------------------------------------------------- every format into SQL tables


FILE_CASES = [
    "export.jsonl.gz",
    "export.jsonl",
    "export.ndjson.gz",
    "export.csv",
    "export.csv.gz",
    "export.tsv",
    "export.tsv.gz",
    "export.parquet",
    "export.parquet.gz",
]


@pytest.mark.parametrize("name", FILE_CASES)
def test_record_file_becomes_rows_named_by_uri_and_key(deepgram_conn, sqlite_db, tmp_path, name):
    fmt = name.split(".")[1].replace("ndjson", "jsonl")
    path = write_file(tmp_path, name, sample_bytes(fmt))
    result, sent = requests_during(
        deepgram_conn,
        lambda: run(
            make_operator(source=f"file://{path}", id_field="id", sql_conn_id=SQL_CONN_ID, xcom_output="summary")
        ),
    )
    assert not isinstance(result, Exception), result
    assert sent == 3
    assert (result["documents"], result["scored"], result["skipped"], result["failed"]) == (3, 3, 0, 0)
    expected = {f"{NS}#{key}": sentiment for key, sentiment in SENTIMENTS.items()}
    assert stored(sqlite_db) == expected
    assert [item["source"] for item in result["items"]] == list(expected)
    # The key and where the content was read, in columns of their own (the data row number).
    assert [(row["record_key"], row["location"]) for row in table_rows(sqlite_db, AVERAGES)] == [
        (key, f"file://{path}#{number}") for number, key in enumerate(SENTIMENTS, start=1)
    ]
    # The quoted newline, quotes and tab of r-2 reached the API intact: its segments hold them.
    segments = [row["text"] for row in table_rows(sqlite_db, SEGMENTS) if row["source"].endswith("#r-2")]
    assert 'Awful, "truly" awful,\nI hate\tit.' in segments
    # The BOM is not part of the first column name (else id_field="id" would not be found) nor of any text.
    assert all("\ufeff" not in text for text in segments)


def test_records_without_id_field_are_keyed_by_line(deepgram_conn, sqlite_db, tmp_path):
    path = write_file(tmp_path, "export.jsonl.gz", b'{"text": "Good."}\n\n{"text": "Bad, awful."}\n')
    run(make_operator(source=f"file://{path}", sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    assert set(stored(sqlite_db)) == {f"file://{path}#1", f"file://{path}#3"}  # blank line 2 is counted


@pytest.mark.parametrize(
    ("name", "fmt", "content"),
    [
        ("export.txt", "jsonl", "jsonl"),
        ("export.log.gz", "jsonl", "jsonl"),
        ("export.data", "csv", "csv"),
        ("export.bin", "parquet", "parquet"),
        ("notes.jsonl", "text", "jsonl"),  # format="text": the whole object is one document
    ],
)
def test_format_overrides_the_extension(deepgram_conn, sqlite_db, tmp_path, name, fmt, content):
    path = write_file(tmp_path, name, sample_bytes(content))
    id_field = None if fmt == "text" else "id"  # naming a field with format="text" is refused (see below)
    result = run(
        make_operator(
            source=f"file://{path}", format=fmt, id_field=id_field, sql_conn_id=SQL_CONN_ID, xcom_output="summary"
        )
    )
    if fmt == "text":
        assert [item["source"] for item in result["items"]] == [f"file://{path}"]
        assert set(stored(sqlite_db)) == {f"file://{path}"}
    else:
        assert set(stored(sqlite_db)) == {f"{NS}#{key}" for key in SENTIMENTS}
        assert result["scored"] == 3


# ---------------------------------------------------------------------- S3


@pytest.mark.parametrize("name", ["exports/day.jsonl.gz", "exports/day.parquet", "exports/day.csv.gz"])
def test_record_file_on_s3(deepgram_conn, sqlite_db, s3_bucket, name):  # noqa: F811
    fmt = name.rsplit("/", 1)[1].split(".")[1]
    data = sample_bytes(fmt)
    s3_bucket.client.put_object(
        Bucket=s3_bucket.name, Key=name, Body=gzip.compress(data) if name.endswith(".gz") else data
    )
    result, sent = requests_during(
        deepgram_conn,
        lambda: run(
            make_operator(source=s3_bucket.uri(name), id_field="id", sql_conn_id=SQL_CONN_ID, xcom_output="summary")
        ),
    )
    assert not isinstance(result, Exception), result
    assert sent == 3
    assert stored(sqlite_db) == {f"{NS}#{key}": value for key, value in SENTIMENTS.items()}
    assert {row["location"].rsplit("#", 1)[0] for row in table_rows(sqlite_db, AVERAGES)} == {
        f"s3://{s3_bucket.name}/{name}"
    }


def test_s3_prefix_with_record_files_and_text_objects(deepgram_conn, sqlite_db, s3_bucket):  # noqa: F811
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="in/a.jsonl.gz", Body=gzip.compress(sample_bytes("jsonl")))
    s3_bucket.put("in/b.txt", POSITIVE)
    run(make_operator(source=s3_bucket.uri("in/"), id_field="id", sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    assert set(stored(sqlite_db)) == {f"{NS}#{key}" for key in SENTIMENTS} | {f"s3://{s3_bucket.name}/in/b.txt"}


# ---------------------------------------------------------------------- SQL rows


def make_sqlite_table(db: Path, table: str, rows: list[tuple]) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, body TEXT)")
        connection.executemany(f"INSERT INTO {table} (id, body) VALUES (?, ?)", rows)


def test_sql_rows_on_sqlite_enriched_in_place(deepgram_conn, sqlite_db):
    make_sqlite_table(sqlite_db, "tickets", [(1, POSITIVE), (2, NEGATIVE), (3, NEUTRAL), (4, "  ")])
    kwargs = {
        "sql": "SELECT id, body FROM tickets ORDER BY id",
        "text_field": "body",
        "id_field": "id",
        "sql_conn_id": SQL_CONN_ID,
        "xcom_output": "summary",
    }
    result, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert not isinstance(result, Exception), result
    assert sent == 3  # the blank body costs no request
    assert (result["documents"], result["scored"], result["skipped"]) == (4, 3, 1)
    prefix = f"sql://{SQL_CONN_ID}/id#"
    assert stored(sqlite_db) == {f"{prefix}1": "positive", f"{prefix}2": "negative", f"{prefix}3": "neutral"}
    assert result["items"][3] == {**result["items"][3], "source": f"{prefix}4", "status": "skipped"}

    # Enriched in place and run again: nothing new, nothing sent, the same rows.
    rows_before = table_rows(sqlite_db, AVERAGES)
    again, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert sent == 0
    assert (again["scored"], again["skipped"]) == (0, 4)
    assert table_rows(sqlite_db, AVERAGES) == rows_before

    # One ticket edited: only that one is sent, and its row replaced.
    with sqlite3.connect(sqlite_db) as connection:
        connection.execute("UPDATE tickets SET body = ? WHERE id = 3", (NEGATIVE,))
    again, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert sent == 1
    assert stored(sqlite_db)[f"{prefix}3"] == "negative"
    assert table_count(sqlite_db, AVERAGES) == 3


def test_sql_rows_on_postgres_enriched_in_place(deepgram_conn, postgres_tables):  # noqa: F811
    hook = postgres_tables.hook
    tickets = postgres_tables.averages.replace("averages", "tickets")
    hook.run(f"CREATE TABLE {tickets} (id INTEGER PRIMARY KEY, body TEXT)")
    try:
        hook.insert_rows(tickets, [(1, POSITIVE), (2, NEGATIVE), (3, NEUTRAL), (4, None)], target_fields=["id", "body"])
        kwargs = {
            "sql": f"SELECT id, body FROM {tickets}",
            "text_field": "body",
            "id_field": "id",
            "sql_conn_id": POSTGRES_CONN_ID,
            "segments_table": postgres_tables.segments,
            "averages_table": postgres_tables.averages,
            "on_error": "skip",
            "xcom_output": "summary",
        }
        result, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
        assert not isinstance(result, Exception), result
        assert sent == 3
        assert (result["scored"], result["failed"]) == (3, 1)
        failed = [item for item in result["items"] if item["status"] == "failed"]
        assert failed == [{**failed[0], "source": f"sql://{POSTGRES_CONN_ID}/id#4"}]
        assert "row 4: field 'body' is null" in failed[0]["error"]
        rows = hook.get_records(f"SELECT source, sentiment FROM {postgres_tables.averages} ORDER BY source")
        prefix = f"sql://{POSTGRES_CONN_ID}/id#"
        assert rows == [(f"{prefix}1", "positive"), (f"{prefix}2", "negative"), (f"{prefix}3", "neutral")]

        again, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
        assert sent == 0
        assert again["scored"] == 0
        assert postgres_tables.count(postgres_tables.averages) == 3
        assert postgres_tables.duplicate_sources() == 0
    finally:
        hook.run(f"DROP TABLE IF EXISTS {tickets}")


# ---------------------------------------------------------------------- bad records fail alone


def test_bad_records_fail_alone_named_by_object_and_line(deepgram_conn, sqlite_db, tmp_path):
    jsonl = write_file(
        tmp_path,
        "bad.jsonl.gz",
        b"\n".join(
            [
                json.dumps({"id": "ok-1", "text": POSITIVE}).encode(),
                json.dumps({"id": "missing"}).encode(),
                json.dumps({"id": "null", "text": None}).encode(),
                json.dumps({"id": "number", "text": 42}).encode(),
                json.dumps({"id": "empty", "text": "   "}).encode(),
                b'{"id": "broken", "text": ',
                json.dumps({"id": "ok-2", "text": NEGATIVE}).encode(),
            ]
        )
        + b"\n",
    )
    csv_path = write_file(
        tmp_path,
        "bad.csv",
        b'id,text\r\nc-1,"Lovely, really lovely."\r\nc-2,"bad"quote\r\nc-3,"Terrible, just terrible."\r\n',
    )
    source = [f"file://{jsonl}", f"file://{csv_path}"]
    error, sent = requests_during(
        deepgram_conn,
        lambda: run(make_operator(source=source, id_field="id", sql_conn_id=SQL_CONN_ID, on_error="fail")),
    )
    assert isinstance(error, DeepgramError), error
    message = str(error)
    print(message)
    assert message.startswith("5 of 10 document(s) failed:\n")
    j, c = f"file://{jsonl}", f"file://{csv_path}"
    for line in (
        f"{NS}#missing: {j} line 2: field 'text' is missing",
        f"{NS}#null: {j} line 3: field 'text' is null",
        f"{NS}#number: {j} line 4: field 'text' is a number, not text",
        f"{j}#6: line 6: not valid JSON",
        f"{c}#2: row 2 (line 3): CSV row does not parse",
    ):
        assert line in message
    assert "#empty" not in message  # empty text is skipped, not failed
    assert sent == 4  # the four good records; the empty one costs no request
    assert stored(sqlite_db) == {  # every good record was stored before the task failed
        f"{NS}#ok-1": "positive",
        f"{NS}#ok-2": "negative",
        f"{NS}#c-1": "positive",
        f"{NS}#c-3": "negative",
    }


def test_parquet_without_the_text_column_fails_at_once_naming_the_columns(deepgram_conn, sqlite_db, tmp_path):
    path = write_file(tmp_path, "reviews.parquet", parquet_bytes({"id": ["a", "b"], "body": [POSITIVE, NEGATIVE]}))
    error, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{path}", id_field="id", sql_conn_id=SQL_CONN_ID))
    )
    assert isinstance(error, DeepgramError), error
    assert str(error) == (  # the file fails once, as one document named by the object
        f"1 of 1 document(s) failed:\n  file://{path}: text_field 'text' is not a column; the columns are 'id', 'body'"
    )
    assert sent == 0
    assert table_count(sqlite_db, AVERAGES) == 0


def test_duplicate_keys_name_both_lines(deepgram_conn, sqlite_db, tmp_path):
    rows = [{"id": "k1", "text": POSITIVE}, {"id": "k2", "text": NEUTRAL}, {"id": "k1", "text": NEGATIVE}]
    path = write_file(tmp_path, "dups.jsonl", jsonl_bytes(rows))
    error, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{path}", id_field="id", sql_conn_id=SQL_CONN_ID))
    )
    assert isinstance(error, DeepgramError), error
    assert f"{NS}#k1: file://{path} line 3: duplicate key 'k1' (also on line 1)" in str(error)
    assert sent == 2
    assert stored(sqlite_db) == {f"{NS}#k1": "positive", f"{NS}#k2": "neutral"}


# ---------------------------------------------------------------------- re-runs


def test_rerun_is_idempotent_and_sends_nothing(deepgram_conn, sqlite_db, tmp_path):
    path = write_file(tmp_path, "export.csv.gz", sample_bytes("csv"))
    kwargs = {"source": f"file://{path}", "id_field": "id", "sql_conn_id": SQL_CONN_ID, "xcom_output": "summary"}
    first, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert sent == 3
    averages, segments = table_rows(sqlite_db, AVERAGES), table_rows(sqlite_db, SEGMENTS, "source, segment_index")
    second, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert sent == 0
    # The object is unchanged since its complete read: not read again, one skipped (unchanged) entry.
    assert (second["documents"], second["scored"], second["skipped"]) == (1, 0, 1)
    assert second["items"][0]["reason"].startswith("unchanged since its last complete read (loaded at ")
    assert table_rows(sqlite_db, AVERAGES) == averages
    assert table_rows(sqlite_db, SEGMENTS, "source, segment_index") == segments


def seed_tables(path: Path, rows: list[dict]) -> None:
    """Store ``rows`` as a run over ``path`` would: the provider's own writer, names and fingerprints.

    A real first run of 10,000 requests takes over a minute on a shared 2-core machine; the test
    checks that the seed is what the operator writes by re-running on the same file (0 requests).
    """
    from airflow_provider_dgsentiment.client.results import SentimentResult
    from airflow_provider_dgsentiment.storage.sources import fingerprint
    from airflow_provider_dgsentiment.storage.warehouse import RunIdentity, ScoredDocument, WarehouseWriter
    from tests.conftest import sentiment_body

    with WarehouseWriter(SQL_CONN_ID, run=RunIdentity("seed", "seed", "seed"), write_batch_size=2000) as writer:
        writer.ensure_tables()
        writer.write(
            ScoredDocument(
                f"{NS}#{row['id']}",
                fingerprint(row["text"]),
                SentimentResult.from_response(sentiment_body(row["text"])),
                "en",
                record_key=row["id"],
                location=f"file://{path}#{number}",
            )
            for number, row in enumerate(rows, start=1)
        )


def test_ten_thousand_records_ten_changed_rerun_sends_ten(deepgram_conn, sqlite_db, tmp_path):
    count = 10_000
    rows = [{"id": f"n{i:05d}", "text": f"Review {i}: the product was good."} for i in range(count)]
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_bytes(rows), compresslevel=1))
    seed_tables(path, rows)
    kwargs = {"source": f"file://{path}", "id_field": "id", "sql_conn_id": SQL_CONN_ID, "xcom_output": "manifest"}

    unchanged, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert not isinstance(unchanged, Exception), unchanged
    assert sent == 0  # the seed holds exactly the names and fingerprints a run stores
    assert (unchanged["documents"], unchanged["scored"], unchanged["skipped"]) == (count, 0, count)

    changed = set(range(0, count, count // 10))
    for i in changed:
        rows[i]["text"] = f"Review {i}: it broke after a day. Awful."
    path.write_bytes(gzip.compress(jsonl_bytes(rows), compresslevel=1))
    second, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert not isinstance(second, Exception), second
    assert sent == 10
    assert (second["documents"], second["scored"], second["skipped"]) == (count, 10, count - 10)
    assert table_count(sqlite_db, AVERAGES) == count
    with sqlite3.connect(sqlite_db) as connection:
        rescored = {
            row[0]: row[1]
            for row in connection.execute(f"SELECT source, sentiment FROM {AVERAGES} WHERE run_id != 'seed'")
        }
    assert rescored == {f"{NS}#n{i:05d}": "negative" for i in changed}

    third, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert sent == 0
    assert (third["documents"], third["skipped"]) == (1, 1)  # unchanged: not even read
    assert table_count(sqlite_db, AVERAGES) == count


# ---------------------------------------------------------------------- deferrable


def test_deferred_record_file_gives_the_same_rows_and_xcom(deepgram_conn, sqlite_db, tmp_path, monkeypatch):
    path = write_file(tmp_path, "export.jsonl.gz", sample_bytes("jsonl") + b'{"id": "r-4", "text": 5}\n')
    kwargs = {"source": f"file://{path}", "id_field": "id", "on_error": "skip", "xcom_output": "summary"}
    in_worker = run(make_operator(sql_conn_id=SQL_CONN_ID, **kwargs))
    worker_rows = stored(sqlite_db)
    other = tmp_path / "deferred.db"
    monkeypatch.setenv("AIRFLOW_CONN_DGS_OTHER", json.dumps({"conn_type": "sqlite", "host": str(other)}))
    deferred, sent = requests_during(deepgram_conn, lambda: run_deferred(sql_conn_id="dgs_other", **kwargs))
    assert not isinstance(deferred, Exception), deferred
    assert sent == 3
    assert without_run_specifics(deferred) == without_run_specifics(in_worker)
    assert (deferred["scored"], deferred["failed"]) == (3, 1)
    assert deferred["items"][3]["source"] == f"{NS}#r-4"
    assert stored(other) == worker_rows == {f"{NS}#{key}": value for key, value in SENTIMENTS.items()}


def test_deferred_sql_rows(deepgram_conn, sqlite_db):
    make_sqlite_table(sqlite_db, "tickets", [(1, POSITIVE), (2, NEGATIVE), (3, NEUTRAL)])
    kwargs = {
        "sql": "SELECT id, body FROM tickets",
        "text_field": "body",
        "id_field": "id",
        "sql_conn_id": SQL_CONN_ID,
        "xcom_output": "manifest",
    }
    manifest, sent = requests_during(deepgram_conn, lambda: run_deferred(**kwargs))
    assert not isinstance(manifest, Exception), manifest
    assert sent == 3
    assert (manifest["documents"], manifest["scored"], manifest["failed"]) == (3, 3, 0)
    assert manifest["sentiment_counts"] == {"positive": 1, "neutral": 1, "negative": 1}
    prefix = f"sql://{SQL_CONN_ID}/id#"
    assert stored(sqlite_db) == {f"{prefix}1": "positive", f"{prefix}2": "negative", f"{prefix}3": "neutral"}
    again, sent = requests_during(deepgram_conn, lambda: run_deferred(**kwargs))
    assert sent == 0
    assert (again["scored"], again["skipped"]) == (0, 3)


# ---------------------------------------------------------------------- XCom shapes


def test_xcom_output_shapes_with_records(deepgram_conn, tmp_path):
    path = write_file(tmp_path, "export.tsv.gz", sample_bytes("tsv"))
    names = [f"{NS}#{key}" for key in SENTIMENTS]
    source = {"source": f"file://{path}", "id_field": "id"}

    full = run(make_operator(xcom_output="full", **source))
    assert [item["source"] for item in full] == names
    assert [item["results"]["sentiments"]["average"]["sentiment"] for item in full] == list(SENTIMENTS.values())
    assert all(item["metadata"]["request_id"] for item in full)

    summary = run(make_operator(xcom_output="summary", **source))
    assert (summary["documents"], summary["scored"], summary["skipped"], summary["failed"]) == (3, 3, 0, 0)
    assert [(item["source"], item["sentiment"]) for item in summary["items"]] == list(zip(names, SENTIMENTS.values()))

    manifest = run(make_operator(xcom_output="manifest", **source))
    assert set(manifest) == {
        "schema_version",
        "documents",
        "scored",
        "skipped",
        "failed",
        "unchanged",
        "known_failed",
        "input_tokens",
        "output_tokens",
        "sentiment_counts",
        "failures",
        "known_failures",
        "results_uri",
        "requests",
        "rate_limited",
        "retries",
    }
    assert (manifest["documents"], manifest["scored"], manifest["failures"], manifest["results_uri"]) == (3, 3, [], [])
    assert manifest["input_tokens"] > 0
    assert manifest["sentiment_counts"] == {"positive": 1, "neutral": 1, "negative": 1}
    assert run(make_operator(xcom_output="none", **source)) is None


def test_enrich_in_place_on_sqlite_with_more_rows_than_one_fetch(mock_deepgram, sqlite_db):
    """The reader's open SELECT on the file must not lock out the writer (rows > one fetch of the reader)."""
    from airflow_provider_dgsentiment.storage.sources import READ_BATCH_ROWS

    count = READ_BATCH_ROWS * 2 + 500
    make_sqlite_table(sqlite_db, "tickets", [(i, f"Ticket {i} is fine.") for i in range(count)])
    manifest = run(
        make_operator(
            sql="SELECT id, body FROM tickets",
            text_field="body",
            id_field="id",
            sql_conn_id=SQL_CONN_ID,
            xcom_output="manifest",
        )
    )
    assert (manifest["documents"], manifest["scored"], manifest["failed"]) == (count, count, 0)
    assert mock_deepgram.call_count == count
    assert table_count(sqlite_db, AVERAGES) == count
