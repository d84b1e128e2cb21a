"""The dialects' SQL and the read-only rule (each dialect against its real engine: tests/integration/test_sql_databases.py)."""

from __future__ import annotations

import sqlite3

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.storage.dialects import (
    DuckDBDialect,
    MySQLDialect,
    PostgresDialect,
    SnowflakeDialect,
    SQLiteDialect,
    check_read_only_query,
)
from airflow_provider_dgsentiment.storage.load_history import LOADS_TABLE
from airflow_provider_dgsentiment.storage.warehouse import AVERAGES_TABLE, SEGMENTS_TABLE


def test_mysql_keys_fit_innodb_and_indexes_go_inside_create_table():
    (averages,) = MySQLDialect("%s").create_table("a", AVERAGES_TABLE)
    assert "source VARCHAR(750) NOT NULL" in averages
    assert "INDEX ix_a_fingerprint (fingerprint)" in averages
    assert "scored_at DATETIME(6) NOT NULL" in averages
    (loads,) = MySQLDialect("%s").create_table("l", LOADS_TABLE)
    # 4 text key parts share 750 characters (3000 bytes of utf8mb4) with the lengths they were given.
    assert "object VARCHAR(334) NOT NULL" in loads and "reading VARCHAR(160) NOT NULL" in loads


def test_snowflake_creates_no_index_and_rewrites_by_delete_and_insert():
    statements = SnowflakeDialect("%s").create_table("s", SEGMENTS_TABLE)
    assert len(statements) == 1 and "TIMESTAMP_TZ" in statements[0]
    assert SnowflakeDialect("%s").upsert("a", AVERAGES_TABLE, 2) is None


@pytest.mark.parametrize("dialect", [SQLiteDialect, PostgresDialect, DuckDBDialect])
def test_upsert_replaces_every_column_but_the_key(dialect):
    sql = dialect("?").upsert("a", AVERAGES_TABLE, 2)
    assert sql.endswith(
        "ON CONFLICT (source) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in AVERAGES_TABLE.names if name != "source")
    )
    assert sql.count("(?, ") == 2


def test_the_sqlite_ddl_runs_and_keeps_0_2_types():
    with sqlite3.connect(":memory:") as connection:
        for spec, table in ((SEGMENTS_TABLE, "s"), (AVERAGES_TABLE, "a")):
            for statement in SQLiteDialect("?").create_table(table, spec):
                connection.execute(statement)
        types = {row[1]: row[2] for row in connection.execute("PRAGMA table_info(a)")}
    assert types["scored_at"] == "TIMESTAMP WITH TIME ZONE" and types["sentiment_score"] == "DOUBLE PRECISION"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id, body FROM reviews",
        "  select id, body from reviews ;  ",
        "WITH r AS (SELECT * FROM t) SELECT * FROM r",
        "(SELECT 1 AS body)",
        "SELECT body, comment, \"update\" FROM t WHERE note = 'DELETE; DROP'",
        "SELECT REPLACE(body, 'a', 'b') AS body FROM t -- INSERT later",
        "VALUES ('a')",
    ],
)
def test_read_only_queries_pass(sql):
    check_read_only_query(sql)


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("DROP TABLE reviews", "got a DROP statement"),
        ("insert into t values (1)", "got a INSERT statement"),
        ("SELECT 1; SELECT 2", "got several statements"),
        ("SELECT * INTO backup FROM t", "it holds INTO"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "it holds DELETE"),
        ("SELECT * FROM t FOR UPDATE", "it holds UPDATE"),
        ("CALL refresh()", "got a CALL statement"),
        ("   ", "got a empty statement"),
    ],
)
def test_anything_else_is_refused(sql, says):
    with pytest.raises(DeepgramConfigurationError, match="nothing was run") as caught:
        check_read_only_query(sql)
    assert says in str(caught.value)
