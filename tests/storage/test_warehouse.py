"""WarehouseWriter on SQLite (and PostgreSQL): tables, idempotent rewrites, lookups, check_tables, bad scores."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import uuid

import pytest

from airflow_provider_dgsentiment.client.results import Average, Segment, SentimentResult
from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.storage.warehouse import (
    AVERAGE_COLUMNS,
    DEFAULT_AVERAGES_TABLE,
    DEFAULT_SEGMENTS_TABLE,
    SEGMENT_COLUMNS,
    RunIdentity,
    ScoredDocument,
    WarehouseWriter,
    sql_hook,
)
from tests.conftest import require_service
from tests.integration.conftest import POSTGRES_CONN_ID

SQLITE_CONN_ID = "dgs_warehouse_sqlite"
READ_ONLY_CONN_ID = "dgs_warehouse_sqlite_ro"


def document(source: str, scores: tuple[float, ...] = (0.5, -0.5), request_id: str | None = None) -> ScoredDocument:
    """A scored document with one segment per score."""
    words = [f"w{i}" for i in range(len(scores))]
    segments = tuple(
        Segment(words[i], i, i, "positive" if s > 0.333 else "negative" if s < -0.333 else "neutral", s)
        for i, s in enumerate(scores)
    )
    mean = sum(scores) / len(scores)
    result = SentimentResult(
        request_id=request_id or str(uuid.uuid4()),
        created="2024-05-01T00:00:00.000Z",
        language="en",
        model_uuid="test-model",
        input_tokens=len(scores),
        output_tokens=len(scores),
        segments=segments,
        average=Average("neutral", mean),
    )
    return ScoredDocument(source, f"{abs(hash(source)):064d}"[-64:], result, "en")


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A SQLite file behind ``dgs_warehouse_sqlite``, and the same file read-only behind ``..._ro``."""
    path = tmp_path / "warehouse.db"
    sqlite3.connect(path).close()
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQLITE_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{READ_ONLY_CONN_ID.upper()}",
        json.dumps({"conn_type": "sqlite", "host": str(path), "extra": {"mode": "ro"}}),
    )
    return path


def rows(path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def test_ensure_tables_creates_both_tables_with_the_expected_columns(db):
    with WarehouseWriter(SQLITE_CONN_ID) as writer:
        writer.ensure_tables()
        writer.ensure_tables()  # idempotent
    for table, columns in ((DEFAULT_SEGMENTS_TABLE, SEGMENT_COLUMNS), (DEFAULT_AVERAGES_TABLE, AVERAGE_COLUMNS)):
        assert tuple(row[1] for row in rows(db, f"PRAGMA table_info({table})")) == columns


def test_write_then_rewrite_leaves_one_set_of_rows(db):
    run = RunIdentity("dag", "task", "run-1")
    with WarehouseWriter(SQLITE_CONN_ID, run=run) as writer:
        writer.ensure_tables()
        writer.write([document("s3://b/a.txt", (0.9, 0.1, -0.8)), document("s3://b/b.txt", (0.2,))])
        assert writer.count_rows() == (4, 2)
        # a retried task writes the same document again, now with two segments: old rows go
        writer.write([document("s3://b/a.txt", (0.4, 0.6), request_id="second")])
        assert writer.count_rows("s3://b/a.txt") == (2, 1)
        assert writer.count_rows() == (3, 2)
    assert rows(
        db, f"SELECT request_id, segment_count, dag_id FROM {DEFAULT_AVERAGES_TABLE} WHERE source = 's3://b/a.txt'"
    ) == [("second", 2, "dag")]
    assert rows(
        db, f"SELECT segment_index, sentiment_score FROM {DEFAULT_SEGMENTS_TABLE} WHERE source = 's3://b/a.txt'"
    ) == [(0, 0.4), (1, 0.6)]


def test_write_in_small_batches(db):
    with WarehouseWriter(SQLITE_CONN_ID, write_batch_size=3) as writer:
        writer.ensure_tables()
        writer.write([document(f"doc-{i}", (0.1,)) for i in range(10)])
        assert writer.count_rows() == (10, 10)


def test_stored_fingerprints_and_known_sources(db):
    with WarehouseWriter(SQLITE_CONN_ID) as writer:
        assert writer.stored_fingerprints(["a"]) == {}  # no table yet: nothing stored
        assert writer.known_sources(["a"]) == set()
        writer.ensure_tables()
        first, second = document("a"), document("b")
        writer.write([first, second])
        assert writer.stored_fingerprints(["a", "b", "c", "a"]) == {"a": first.fingerprint, "b": second.fingerprint}
        assert writer.known_sources(["b", "c"]) == {"b"}
        assert writer.stored_fingerprints([]) == {}
        many = [f"x{i}" for i in range(1200)] + ["a"]  # over one IN (...) batch
        assert writer.known_sources(many) == {"a"}


def test_stored_fingerprints_raise_when_the_table_exists_but_cannot_be_read(db):
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE gone (source TEXT)")
        connection.execute(f"CREATE VIEW {DEFAULT_AVERAGES_TABLE} AS SELECT source, source AS fingerprint FROM gone")
        connection.execute("DROP TABLE gone")
    with WarehouseWriter(SQLITE_CONN_ID) as writer, pytest.raises(DeepgramConfigurationError) as caught:
        writer.stored_fingerprints(["a"])
    assert str(caught.value) == (
        f"Cannot read table {DEFAULT_AVERAGES_TABLE} (sqlite3.OperationalError: no such table: main.gone): "
        "check that the connection's user may select from it"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segments_table": "bad-name"}, "segments_table 'bad-name' is not a valid table name"),
        ({"averages_table": "x; DROP TABLE y"}, "averages_table 'x; DROP TABLE y' is not a valid table name"),
        ({"averages_table": "a.b.c"}, "averages_table 'a.b.c' is not a valid table name"),
        ({"averages_table": 7}, "averages_table must be a string, got int"),
        ({"segments_table": "Same", "averages_table": "same"}, "segments_table and averages_table must differ"),
    ],
)
def test_table_names_are_validated(kwargs, message):
    with pytest.raises(DeepgramConfigurationError) as caught:
        WarehouseWriter(SQLITE_CONN_ID, **kwargs)
    assert str(caught.value).startswith(message)


# ---------------------------------------------------------------------- check_tables


def test_check_tables_creates_missing_tables_and_leaves_no_probe_rows(db):
    with WarehouseWriter(SQLITE_CONN_ID, segments_table="s", averages_table="a") as writer:
        writer.check_tables()
        writer.check_tables()
        assert writer.count_rows() == (0, 0)
        writer.write([document("doc")])
        writer.check_tables()
        assert writer.count_rows() == (2, 1)


def test_check_tables_names_the_missing_columns(db):
    with sqlite3.connect(db) as connection:
        connection.execute(
            f"CREATE TABLE {DEFAULT_AVERAGES_TABLE} (source TEXT PRIMARY KEY, sentiment TEXT, sentiment_score REAL)"
        )
    with WarehouseWriter(SQLITE_CONN_ID) as writer, pytest.raises(DeepgramConfigurationError) as caught:
        writer.check_tables()
    assert str(caught.value) == (
        f"Table {DEFAULT_AVERAGES_TABLE} exists without the columns fingerprint, segment_count, input_tokens, "
        "output_tokens, model_uuid, language, request_id, dag_id, task_id, run_id, scored_at, record_key, location: "
        "drop it or give averages_table a new name"
    )


def test_check_tables_names_the_segments_table_too(db):
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE my_segments (source TEXT, segment_index INTEGER, body TEXT)")
    writer = WarehouseWriter(SQLITE_CONN_ID, segments_table="my_segments")
    with (
        writer,
        pytest.raises(DeepgramConfigurationError, match=r"^Table my_segments exists without the columns text, "),
    ):
        writer.check_tables()


def test_check_tables_finds_a_table_that_refuses_our_rows(db):
    with sqlite3.connect(db) as connection:
        columns = ", ".join(f"{column} TEXT" for column in AVERAGE_COLUMNS)
        connection.execute(f"CREATE TABLE {DEFAULT_AVERAGES_TABLE} ({columns}, owner TEXT NOT NULL)")
    with WarehouseWriter(SQLITE_CONN_ID) as writer, pytest.raises(DeepgramConfigurationError) as caught:
        writer.check_tables()
    assert str(caught.value).startswith(
        f"Cannot write to table {DEFAULT_AVERAGES_TABLE} (sqlite3.IntegrityError: NOT NULL constraint failed: "
        f"{DEFAULT_AVERAGES_TABLE}.owner): check that the database is not read-only"
    )


def test_check_tables_on_a_read_only_database_with_the_tables(db):
    with WarehouseWriter(SQLITE_CONN_ID) as writer:
        writer.ensure_tables()
    with WarehouseWriter(READ_ONLY_CONN_ID) as writer, pytest.raises(DeepgramConfigurationError) as caught:
        writer.check_tables()
    assert str(caught.value) == (
        f"Cannot write to table {DEFAULT_SEGMENTS_TABLE} (sqlite3.OperationalError: attempt to write a readonly "
        "database): check that the database is not read-only, that the connection's user may insert into and "
        "delete from the table, and that its columns take the provider's rows (no other NOT NULL columns)"
    )


def test_check_tables_on_a_read_only_database_without_the_tables(db, monkeypatch):
    monkeypatch.setattr("airflow_provider_dgsentiment.storage.warehouse.time.sleep", lambda seconds: None)
    with WarehouseWriter(READ_ONLY_CONN_ID) as writer, pytest.raises(DeepgramConfigurationError) as caught:
        writer.check_tables()
    assert str(caught.value) == (
        f"Cannot create tables {DEFAULT_SEGMENTS_TABLE} and {DEFAULT_AVERAGES_TABLE} (sqlite3.OperationalError: "
        "attempt to write a readonly database): check that the database is writable and that the connection's "
        "user may create tables in it"
    )


# ---------------------------------------------------------------------- non-finite scores


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
@pytest.mark.parametrize("where", ["segment", "average"])
def test_write_refuses_a_non_finite_score_before_any_insert(db, bad, where):
    good = document("s3://b/good.txt")
    broken = document("s3://b/broken.txt", (0.5, 0.2))
    if where == "segment":
        segments = (broken.result.segments[0], Segment("w1", 1, 1, "neutral", bad))
        result = SentimentResult(**{**broken.result.__dict__, "segments": segments})
        expected = f"s3://b/broken.txt: the sentiment_score of segment 1 is {bad!r}, not a finite number"
    else:
        result = SentimentResult(**{**broken.result.__dict__, "average": Average("neutral", bad)})
        expected = f"s3://b/broken.txt: the sentiment_score of the average is {bad!r}, not a finite number"
    broken = ScoredDocument(broken.source, broken.fingerprint, result, "en")
    with WarehouseWriter(SQLITE_CONN_ID, write_batch_size=1) as writer:
        writer.ensure_tables()
        with pytest.raises(DeepgramError) as caught:
            writer.write([good, broken])
        assert str(caught.value) == expected + "; refusing to store it"
        assert writer.count_rows() == (0, 0)  # not even the good document of the same call


# ---------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def postgres_writer(monkeypatch):
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", uri)
    suffix = uuid.uuid4().hex[:10]
    writer = WarehouseWriter(
        POSTGRES_CONN_ID, segments_table=f"dgs_wh_segments_{suffix}", averages_table=f"dgs_wh_averages_{suffix}"
    )
    try:
        yield writer
    finally:
        writer.connection.rollback()
        cursor = writer.connection.cursor()
        for table in (writer.segments_table, writer.averages_table):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        writer.connection.commit()
        writer.close()


@pytest.mark.integration
def test_postgres_check_tables_write_rewrite_and_lookups(postgres_writer):
    writer = postgres_writer
    assert writer.stored_fingerprints(["a"]) == {}  # no table yet
    writer.check_tables()
    assert writer.count_rows() == (0, 0)
    first = document("a", (0.9, -0.9, 0.0))
    writer.write([first, document("b")])
    writer.write([document("a", (0.3,), request_id="again")])
    assert writer.count_rows() == (3, 2)
    assert writer.stored_fingerprints(["a", "c"]) == {"a": first.fingerprint}
    writer.check_tables()
    assert writer.count_rows() == (3, 2)


@pytest.mark.integration
def test_postgres_check_tables_names_the_missing_columns(postgres_writer):
    writer = postgres_writer
    cursor = writer.connection.cursor()
    cursor.execute(f"CREATE TABLE {writer.averages_table} (source TEXT PRIMARY KEY, Fingerprint TEXT, score REAL)")
    writer.connection.commit()
    with pytest.raises(DeepgramConfigurationError) as caught:
        writer.check_tables()
    assert str(caught.value) == (
        f"Table {writer.averages_table} exists without the columns sentiment, sentiment_score, segment_count, "
        "input_tokens, output_tokens, model_uuid, language, request_id, dag_id, task_id, run_id, scored_at, record_key, "
        "location: "
        "drop it or give averages_table a new name"
    )


@pytest.mark.integration
def test_postgres_check_tables_in_a_read_only_session(postgres_writer):
    # What a hot standby or a read-only role gives: the tables are there, writes are refused.
    writer = postgres_writer

    def session(mode: str) -> None:
        cursor = writer.connection.cursor()
        cursor.execute(f"SET SESSION CHARACTERISTICS AS TRANSACTION {mode}")
        writer.connection.commit()

    writer.ensure_tables()
    session("READ ONLY")
    try:
        with pytest.raises(DeepgramConfigurationError) as caught:
            writer.check_tables()
    finally:
        session("READ WRITE")
    assert re.match(
        rf"Cannot write to table {writer.segments_table} \(psycopg2?\.errors\.ReadOnlySqlTransaction: cannot "
        r"execute DELETE in a read-only transaction\): check that the database is not read-only",
        str(caught.value),
    ), str(caught.value)


def test_a_missing_sql_connection_names_the_json_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_MY_SCORES", raising=False)
    with pytest.raises(DeepgramConfigurationError) as raised:
        sql_hook("my_scores", "sql_conn_id")
    message = str(raised.value)
    assert message.startswith("sql_conn_id 'my_scores' is not a defined connection")
    variable, value = re.search(r"(AIRFLOW_CONN_\w+)='([^']+)'", message).groups()
    assert variable == "AIRFLOW_CONN_MY_SCORES"
    # What the message says to set works as it is, with the user's own path.
    monkeypatch.setenv(variable, value.replace("/path/to/scores.db", str(tmp_path / "scores.db")))
    assert sql_hook("my_scores", "sql_conn_id").get_first("SELECT 1") == (1,)
