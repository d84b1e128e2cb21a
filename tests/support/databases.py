"""The SQL databases results go to, each a real engine: a connection to it, fresh table names, reads.

SQLite and DuckDB are files in the test's folder; PostgreSQL, MariaDB and the Snowflake stand-in
(fakesnow's server) are started by scripts/services.sh, which writes their addresses to
.ci-state/services.env (``DGS_TEST_POSTGRES_URI``, ``DGS_TEST_MYSQL_URI``,
``DGS_TEST_SNOWFLAKE_URI``). Outside CI a database whose server is missing skips its tests.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import require_service

#: Every engine a test may run on; ``duckdb_default`` is DuckDB through the hook's default id with no connection.
ENGINES = ("sqlite", "postgres", "mysql", "duckdb", "snowflake")


@dataclass
class Database:
    """
    One engine behind an Airflow connection id, with tables named for one test.

    :param engine: one of :data:`ENGINES`.
    :param conn_id: the Airflow connection id.
    :param suffix: makes this test's table names unique on a shared server.
    """

    engine: str
    conn_id: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    created: list[str] = field(default_factory=list)

    def table(self, name: str) -> str:
        """A table name unique to this test (dropped at the end)."""
        full = f"dgs_{name}_{self.suffix}"
        self.created.append(full)
        return full

    @property
    def tables(self) -> dict[str, str]:
        """``segments_table`` / ``averages_table`` arguments for this test."""
        if not hasattr(self, "_tables"):
            self._tables = {"segments_table": self.table("segments"), "averages_table": self.table("averages")}
        return self._tables

    def hook(self) -> Any:
        from airflow.providers.common.compat.sdk import BaseHook

        return BaseHook.get_connection(self.conn_id).get_hook()

    def query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        """Rows of a query, on a connection of its own."""
        connection = self.hook().get_conn()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, parameters) if parameters else cursor.execute(sql)
            rows = [tuple(row) for row in cursor.fetchall()]
            cursor.close()
            return rows
        finally:
            connection.close()

    def execute(self, *statements: str, rows: list[tuple] | None = None) -> None:
        """Run statements (the last one with ``rows`` as executemany parameters) and commit."""
        connection = self.hook().get_conn()
        try:
            cursor = connection.cursor()
            for index, statement in enumerate(statements):
                if rows is not None and index == len(statements) - 1:
                    cursor.executemany(statement, rows)
                else:
                    cursor.execute(statement)
            cursor.close()
            connection.commit()
        finally:
            connection.close()

    def drop_tables(self) -> None:
        for table in self.created:
            try:
                self.execute(f"DROP TABLE IF EXISTS {table}")
            except Exception:  # a test that failed half-way may leave nothing to drop
                pass

    @property
    def placeholder(self) -> str:
        return self.hook().placeholder


def connect(engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    """Define the Airflow connection of ``engine`` (skipping outside CI when its server is not running)."""
    conn_id = f"dgs_test_{engine}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(_connection(engine, tmp_path, monkeypatch)))
    return Database(engine, conn_id)


def _connection(engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    if engine == "sqlite":
        return {"conn_type": "sqlite", "host": str(tmp_path / "results.db")}
    if engine == "duckdb":
        pytest.importorskip("airflow.providers.duckdb", reason="apache-airflow-providers-duckdb is not installed")
        return {"conn_type": "duckdb", "host": str(tmp_path / "results.duckdb")}
    if engine == "postgres":
        url = urlsplit(require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL"))
        conn_type = "postgres"
    elif engine == "mysql":
        pytest.importorskip("MySQLdb", reason="mysqlclient is not installed")
        url = urlsplit(require_service("DGS_TEST_MYSQL_URI", "MariaDB"))
        conn_type = "mysql"
    elif engine == "snowflake":
        pytest.importorskip("airflow.providers.snowflake", reason="apache-airflow-providers-snowflake is not installed")
        url = urlsplit(require_service("DGS_TEST_SNOWFLAKE_URI", "the Snowflake stand-in (fakesnow)"))
        _pass_the_protocol_extra(monkeypatch)
        extra = {"account": "fake", "database": "dgs", "host": url.hostname, "port": url.port, "protocol": "http"}
        _create_snowflake_database(url, "dgs")
        return {
            "conn_type": "snowflake",
            "login": url.username,
            "password": url.password,
            "schema": "public",
            "extra": extra,
        }
    else:
        raise ValueError(engine)
    return {
        "conn_type": conn_type,
        "host": url.hostname,
        "port": url.port,
        "login": url.username,
        "password": url.password,
        "schema": url.path.lstrip("/"),
    }


def _pass_the_protocol_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Hand the connection's ``protocol`` extra to the Snowflake connector.

    fakesnow's server speaks plain HTTP on loopback, which the connector reaches only with
    ``protocol="http"``; the Snowflake hook passes ``host`` and ``port`` from the extras but not
    ``protocol``. This adds exactly that one parameter (everything else is the hook's own code).
    """
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    own = SnowflakeHook._get_conn_params

    def with_protocol(self: SnowflakeHook) -> dict[str, Any]:
        params = own(self)
        protocol = self.get_connection(self.get_conn_id()).extra_dejson.get("protocol")
        if protocol:
            params["protocol"] = protocol
        return params

    monkeypatch.setattr(SnowflakeHook, "_get_conn_params", with_protocol)


def _create_snowflake_database(url: Any, database: str) -> None:
    import snowflake.connector

    connection = snowflake.connector.connect(
        user=url.username,
        password=url.password,
        account="fake",
        host=url.hostname,
        port=url.port,
        protocol="http",
    )
    try:
        cursor = connection.cursor()
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {database}.public")
    finally:
        connection.close()
