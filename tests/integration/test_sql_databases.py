"""Every SQL database results go to, on its real engine: the operator's sink and ``sql`` source, worker and deferrable.

Parametrised over SQLite, PostgreSQL, MariaDB (Debian's, mysqlclient), DuckDB (the official
provider, a file) and Snowflake (fakesnow's loopback server): tables created per dialect, the
compatibility check leaving nothing behind, idempotent rewrites, incremental skips, the read-only
``sql`` rule, two writers of the same documents at once, and a value one database refuses.
The servers come from scripts/services.sh; outside CI a missing one skips with the reason.
"""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.storage.warehouse import WarehouseWriter
from tests.support.databases import ENGINES, Database, connect
from tests.support.operator_runs import make_operator, run, run_deferred
from tests.support.sensor_runs import scored_document

pytestmark = pytest.mark.integration

REVIEWS = [
    (1, "I absolutely love this product. It is wonderful."),
    (2, "This is terrible. I hate it."),
    (3, "The package arrived on Tuesday."),
    (4, "Great support, quick and friendly."),
    (5, "The manual is missing pages, which is annoying."),
]
PROBE_ROWS = "SELECT COUNT(*) FROM {table} WHERE source LIKE 'dgsentiment-write-check-%'"


@pytest.fixture(params=ENGINES)
def database(request, tmp_path, monkeypatch):
    db = connect(request.param, tmp_path, monkeypatch)
    yield db
    db.drop_tables()


def count(db: Database, table: str) -> int:
    return int(db.query(f"SELECT COUNT(*) FROM {table}")[0][0])


def reviews_table(db: Database) -> str:
    table = db.table("reviews")
    marks = ", ".join([db.placeholder] * 2)
    db.execute(
        f"CREATE TABLE {table} (id INTEGER NOT NULL, body VARCHAR(200) NOT NULL)",
        f"INSERT INTO {table} (id, body) VALUES ({marks})",
        rows=REVIEWS,
    )
    return table


# ---------------------------------------------------------------------- the sink


def test_worker_creates_the_tables_skips_and_rewrites(database, deepgram_conn, inbox):
    kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": database.conn_id, "xcom_output": "summary"}
    kwargs.update(database.tables)
    averages, segments = database.tables["averages_table"], database.tables["segments_table"]

    assert run(make_operator(**kwargs))["scored"] == 3
    assert count(database, averages) == 3
    stored_segments = count(database, segments)
    assert stored_segments >= 3
    for table in (averages, segments):  # the compatibility check left nothing behind
        assert database.query(PROBE_ROWS.format(table=table)) == [(0,)]
    scored_at = database.query(f"SELECT scored_at FROM {averages}")[0][0]
    assert isinstance(scored_at, str if database.engine == "sqlite" else datetime)

    again = run(make_operator(**kwargs))
    assert (again["scored"], again["skipped"]) == (0, 3)  # incremental: same content, no request

    first_ids = database.query(f"SELECT source, request_id FROM {averages} ORDER BY source")
    rewritten = run(make_operator(skip_scored=False, **kwargs))
    assert rewritten["scored"] == 3
    second_ids = database.query(f"SELECT source, request_id FROM {averages} ORDER BY source")
    assert [row[0] for row in second_ids] == [row[0] for row in first_ids]
    assert all(new[1] != old[1] for new, old in zip(second_ids, first_ids))  # replaced, not added
    assert count(database, segments) == stored_segments
    for table in (averages, segments):
        assert database.query(PROBE_ROWS.format(table=table)) == [(0,)]


def test_deferrable_checks_the_tables_and_scores_in_the_trigger(database, deepgram_conn, inbox):
    kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": database.conn_id, "xcom_output": "summary"}
    kwargs.update(database.tables)
    averages = database.tables["averages_table"]

    assert run_deferred(**kwargs)["scored"] == 3
    assert count(database, averages) == 3
    again = run_deferred(**kwargs)
    assert (again["scored"], again["skipped"]) == (0, 3)
    assert database.query(PROBE_ROWS.format(table=averages)) == [(0,)]


def test_the_write_check_leaves_no_rows_and_changes_nothing(database):
    with WarehouseWriter(database.conn_id, **database.tables) as writer:
        writer.check_tables()
        writer.write([scored_document("kept")])
        writer.check_tables()
        writer.check_tables()
        assert writer.count_rows() == (1, 1)
    for table in database.tables.values():
        assert database.query(PROBE_ROWS.format(table=table)) == [(0,)]


# ---------------------------------------------------------------------- the sql source


def test_sql_source_enriches_a_table_in_place(database, deepgram_conn):
    reviews = reviews_table(database)
    kwargs = {
        "sql": f"SELECT id, body FROM {reviews} ORDER BY id",
        "text_field": "body",
        "id_field": "id",
        "sql_conn_id": database.conn_id,
        "xcom_output": "summary",
        **database.tables,
    }
    assert run(make_operator(**kwargs))["scored"] == len(REVIEWS)
    assert count(database, database.tables["averages_table"]) == len(REVIEWS)
    again = run(make_operator(**kwargs))
    assert (again["scored"], again["skipped"]) == (0, len(REVIEWS))
    deferred = run_deferred(**kwargs)
    assert (deferred["scored"], deferred["skipped"]) == (0, len(REVIEWS))


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM {reviews}",
        "DROP TABLE {reviews}",
        "UPDATE {reviews} SET body = 'x'",
        "SELECT id, body FROM {reviews}; DELETE FROM {reviews}",
        "WITH gone AS (SELECT id FROM {reviews}) DELETE FROM {reviews} WHERE id IN (SELECT id FROM gone)",
    ],
)
def test_sql_that_is_not_a_read_only_query_is_refused_before_it_runs(database, deepgram_conn, statement):
    reviews = reviews_table(database)
    operator = make_operator(
        sql=statement.format(reviews=reviews), text_field="body", sql_conn_id=database.conn_id, **database.tables
    )
    with pytest.raises(DeepgramConfigurationError, match="read-only query.*nothing was run"):
        run(operator)
    assert count(database, reviews) == len(REVIEWS)


def test_postgres_runs_the_sql_source_in_a_read_only_transaction(tmp_path, monkeypatch, deepgram_conn):
    database = connect("postgres", tmp_path, monkeypatch)
    sequence = database.table("sequence")
    database.execute(f"CREATE SEQUENCE {sequence}")
    try:
        operator = make_operator(
            sql=f"SELECT nextval('{sequence}') AS id, 'text' AS body",
            text_field="body",
            sql_conn_id=database.conn_id,
            **database.tables,
        )
        with pytest.raises(Exception, match="read-only transaction"):
            run(operator)
        assert database.query(f"SELECT last_value, is_called FROM {sequence}") == [(1, False)]  # never advanced
    finally:
        database.execute(f"DROP SEQUENCE IF EXISTS {sequence}")


# ---------------------------------------------------------------------- two writers, one refused value


def test_two_writers_of_the_same_documents_end_with_one_set_of_rows(database):
    if database.engine == "snowflake":
        # Tried: on fakesnow the second writer's connection waits on the server for good, and its
        # thread then keeps the test process from exiting while fakesnow runs.
        pytest.skip("fakesnow serves one statement at a time: two writers cannot overlap there")
    with WarehouseWriter(database.conn_id, **database.tables) as writer:
        writer.ensure_tables()
    documents = [scored_document(f"review-{index:03d}", score=index / 100) for index in range(120)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write(order: int) -> None:
        with WarehouseWriter(database.conn_id, write_batch_size=40, **database.tables) as writer:
            start.wait()
            try:
                for _ in range(3):
                    writer.write(documents[::order])
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=write, args=(order,)) for order in (1, -1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with WarehouseWriter(database.conn_id, **database.tables) as writer:
        assert writer.count_rows() == (120, 120)


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_a_value_the_database_refuses_fails_that_document_alone(engine, tmp_path, monkeypatch):
    database = connect(engine, tmp_path, monkeypatch)
    tables = database.tables
    try:
        with WarehouseWriter(database.conn_id, **tables) as writer:
            writer.ensure_tables()
        # A table made by hand with a narrower key column: one document's name does not fit.
        change = (
            "ALTER COLUMN source TYPE VARCHAR(60)" if engine == "postgres" else "MODIFY source VARCHAR(60) NOT NULL"
        )
        database.execute(*(f"ALTER TABLE {table} {change}" for table in tables.values()))
        long_name = "reviews/" + "x" * 100 + ".txt"
        documents = [scored_document(f"reviews/{index}.txt") for index in range(5)]
        documents.insert(2, scored_document(long_name))
        with WarehouseWriter(database.conn_id, **tables) as writer:
            refused = writer.write(documents)
            assert [unstored.document.source for unstored in refused] == [long_name]
            assert refused[0].error.startswith("not stored: ")
            assert writer.count_rows() == (5, 5)
            assert writer.known_sources([document.source for document in documents]) == {
                f"reviews/{index}.txt" for index in range(5)
            }
    finally:
        database.drop_tables()


def test_nul_in_a_document_is_stored_as_the_replacement_character(tmp_path, monkeypatch, deepgram_conn, inbox):
    database = connect("postgres", tmp_path, monkeypatch)
    (inbox / "nul.txt").write_text("The screen \x00 is great and I love it.")
    try:
        result = run(
            make_operator(
                source=f"file://{inbox}/*.txt", sql_conn_id=database.conn_id, xcom_output="summary", **database.tables
            )
        )
        assert (result["scored"], result["failed"]) == (4, 0)
        averages, segments = database.tables["averages_table"], database.tables["segments_table"]
        assert count(database, averages) == 4
        texts = [row[0] for row in database.query(f"SELECT text FROM {segments} WHERE source LIKE '%nul.txt'")]
        assert texts and all("\x00" not in text for text in texts)
        assert run(make_operator(source=f"file://{inbox}/*.txt", sql_conn_id=database.conn_id, **database.tables))
    finally:
        database.drop_tables()


def test_a_refused_document_fails_alone_in_the_operator(tmp_path, monkeypatch, deepgram_conn, inbox):
    database = connect("postgres", tmp_path, monkeypatch)
    long_name = "a-review-whose-name-is-far-too-long-for-the-column-" + "x" * 40 + ".txt"
    (inbox / long_name).write_text("Good value, I like it.")
    try:
        with WarehouseWriter(database.conn_id, **database.tables) as writer:
            writer.ensure_tables()
        database.execute(
            *(f"ALTER TABLE {table} ALTER COLUMN source TYPE VARCHAR(120)" for table in database.tables.values())
        )
        operator = make_operator(
            source=f"file://{inbox}/*.txt", sql_conn_id=database.conn_id, xcom_output="summary", **database.tables
        )
        with pytest.raises(
            DeepgramError, match=f"(?s)1 of 4 document.*{long_name}.*not stored: .*StringDataRightTruncation"
        ):
            run(operator)
        assert count(database, database.tables["averages_table"]) == 3  # the rest of the batch is stored
    finally:
        database.drop_tables()


# ---------------------------------------------------------------------- choosing the dialect


def test_a_database_the_provider_does_not_know_is_refused_before_connecting(monkeypatch, deepgram_conn, inbox):
    monkeypatch.setenv("AIRFLOW_CONN_DGS_TEST_REDSHIFT", "redshift://user:pass@127.0.0.1:1/dev")
    operator = make_operator(source=f"file://{inbox}/*.txt", sql_conn_id="dgs_test_redshift")
    with pytest.raises(DeepgramConfigurationError) as caught:
        run(operator)
    assert str(caught.value) == (
        "sql_conn_id 'dgs_test_redshift' is a 'redshift' connection (RedshiftSQLHook), a database the provider "
        "cannot store results in yet (it knows SQLite, PostgreSQL, MySQL/MariaDB, DuckDB, Snowflake): use a "
        "connection to one of those, or write the results as files with results_path and load them yourself"
    )


def test_duckdb_without_a_connection_reads_as_a_sql_source(tmp_path, monkeypatch, deepgram_conn):
    pytest.importorskip("airflow.providers.duckdb")
    monkeypatch.delenv("AIRFLOW_CONN_DUCKDB_DEFAULT", raising=False)
    sink = connect("sqlite", tmp_path, monkeypatch)
    csv = tmp_path / "reviews.csv"
    csv.write_text("id,body\n" + "".join(f'{key},"{text}"\n' for key, text in REVIEWS))
    kwargs = {
        "sql": f"SELECT id, body FROM read_csv('{csv}') ORDER BY id",
        "sql_source_conn_id": "duckdb_default",
        "text_field": "body",
        "id_field": "id",
        "sql_conn_id": sink.conn_id,
        "xcom_output": "summary",
        **sink.tables,
    }
    assert run(make_operator(**kwargs))["scored"] == len(REVIEWS)
    assert run(make_operator(**kwargs))["skipped"] == len(REVIEWS)


def test_duckdb_without_a_connection_is_refused_as_a_sink(monkeypatch, deepgram_conn, inbox):
    pytest.importorskip("airflow.providers.duckdb")
    monkeypatch.delenv("AIRFLOW_CONN_DUCKDB_DEFAULT", raising=False)
    operator = make_operator(source=f"file://{inbox}/*.txt", sql_conn_id="duckdb_default")
    with pytest.raises(DeepgramConfigurationError, match="in-memory DuckDB database.*lost when the task ends"):
        run(operator)
