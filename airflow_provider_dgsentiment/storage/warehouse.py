"""Store sentiment results in two SQL tables through any common.sql ``DbApiHook``.

:class:`WarehouseWriter` creates the tables when missing, answers which content
fingerprints are already scored (for incremental runs), and writes documents
idempotently: for each batch, one transaction deletes the rows of its documents
from both tables and inserts the new rows, so a retried or cleared task leaves
exactly one set of rows per document. :meth:`WarehouseWriter.check_tables`, called before any
request, finds an incompatible existing table or a database that refuses writes while nothing has
been scored yet.

Tables (default names; both overridable)::

    deepgram_sentiment_segments   one row per segment of each document
    deepgram_sentiment_averages   one row per document, keyed by source, with its record_key and location

``record_key`` is the key of a record (its ``id_field`` value, or its line or row number; NULL for a
whole-object document) and ``location`` where the stored content was read when it was scored (the
object URI plus ``#<data row number>`` for a file record, the object URI for a text object,
``sql://<conn>#<row>`` for a SQL row, the qualified name of an inline text). A 0.2 table lacks both
columns: :meth:`WarehouseWriter.check_tables` adds them in place (rows kept) and fills
``record_key`` of 0.2 record rows (``<uri>#<key>``) from their names; their ``location`` stays NULL,
which is how a 0.2 row is told apart (see :meth:`WarehouseWriter.stored_documents`).

The tables are described once (:data:`SEGMENTS_TABLE`, :data:`AVERAGES_TABLE`) and the
connection's :class:`~airflow_provider_dgsentiment.storage.dialects.Dialect` renders them and
says how to upsert, begin and end transactions and bind timestamps there (SQLite, PostgreSQL,
MySQL/MariaDB, DuckDB, Snowflake). Values are always bound as parameters with the hook's
placeholder; table names are validated as identifiers; row values never go to the log
(documents are private). Text values are stored as the API returned them, except that NUL
characters (U+0000, which PostgreSQL text cannot hold) become U+FFFD on every database.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.storage.dialects import (
    Column,
    ColumnType,
    Dialect,
    TableSpec,
    dialect_for,
    hook_without_connection,
)

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_dgsentiment.client.results import SentimentResult

DEFAULT_SEGMENTS_TABLE = "deepgram_sentiment_segments"
DEFAULT_AVERAGES_TABLE = "deepgram_sentiment_averages"
#: One SQL identifier: a letter or underscore, then letters, digits, underscores (PostgreSQL's 63).
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: Bound parameters per statement at most (SQLite before 3.32 allows 999).
MAX_PARAMETERS_PER_STATEMENT = 900
#: Fingerprints or sources per ``IN (...)`` lookup.
LOOKUP_BATCH_SIZE = 500
#: Documents per transaction in :meth:`WarehouseWriter.write`.
DEFAULT_WRITE_BATCH_SIZE = 200
#: Attempts at ``CREATE TABLE IF NOT EXISTS`` (parallel tasks may race to create the tables).
CREATE_ATTEMPTS = 3
#: Attempts at one write transaction when a concurrent writer's lock or key got in the way.
WRITE_ATTEMPTS = 4
#: What a NUL character in a stored text value becomes (PostgreSQL text cannot hold U+0000).
NUL_REPLACEMENT = "\ufffd"

SEGMENTS_TABLE = TableSpec(
    columns=(
        Column("source", ColumnType.KEY, nullable=False),
        Column("segment_index", ColumnType.INTEGER, nullable=False),
        Column("text", ColumnType.TEXT, nullable=False),
        Column("start_word", ColumnType.INTEGER, nullable=False),
        Column("end_word", ColumnType.INTEGER, nullable=False),
        Column("sentiment", ColumnType.TEXT, nullable=False),
        Column("sentiment_score", ColumnType.FLOAT, nullable=False),
        Column("request_id", ColumnType.TEXT),
        Column("dag_id", ColumnType.TEXT),
        Column("task_id", ColumnType.TEXT),
        Column("run_id", ColumnType.TEXT),
        Column("scored_at", ColumnType.TIMESTAMP, nullable=False),
    ),
    key=("source", "segment_index"),
    indexes=("source",),
)
AVERAGES_TABLE = TableSpec(
    columns=(
        Column("source", ColumnType.KEY, nullable=False),
        Column("fingerprint", ColumnType.KEY, nullable=False),
        Column("sentiment", ColumnType.TEXT, nullable=False),
        Column("sentiment_score", ColumnType.FLOAT, nullable=False),
        Column("segment_count", ColumnType.INTEGER, nullable=False),
        Column("input_tokens", ColumnType.INTEGER),
        Column("output_tokens", ColumnType.INTEGER),
        Column("model_uuid", ColumnType.TEXT),
        Column("language", ColumnType.TEXT),
        Column("request_id", ColumnType.TEXT),
        Column("dag_id", ColumnType.TEXT),
        Column("task_id", ColumnType.TEXT),
        Column("run_id", ColumnType.TEXT),
        Column("scored_at", ColumnType.TIMESTAMP, nullable=False),
        Column("record_key", ColumnType.KEY),
        Column("location", ColumnType.TEXT),
    ),
    key=("source",),
    indexes=("fingerprint", "record_key"),
)
SEGMENT_COLUMNS = SEGMENTS_TABLE.names
AVERAGE_COLUMNS = AVERAGES_TABLE.names
#: Columns 0.3 added to the averages table: a 0.2 table gets them in place (``ALTER TABLE ... ADD COLUMN``).
AVERAGE_COLUMNS_ADDED = ("record_key", "location")


def sql_hook(conn_id: str, argument: str) -> DbApiHook:
    """
    Return the SQL hook of a connection, checked to be a common.sql ``DbApiHook``.

    :param conn_id: the connection id.
    :param argument: the argument that named it, for the error message.
    :raises DeepgramConfigurationError: when the connection is not defined (naming the JSON to
        set) or its hook is not a SQL hook.
    """
    from airflow.providers.common.compat.sdk import AirflowNotFoundException
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        hook = hook_without_connection(conn_id)  # DuckDB's default id: an in-memory database
        if hook is None:
            raise DeepgramConfigurationError(
                f"{argument} {conn_id!r} is not a defined connection. Define it, e.g. for a SQLite file: "
                f'AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "sqlite", "host": "/path/to/scores.db"}}\' '
                f"(or `airflow connections add {conn_id} --conn-json '{{...}}'`)"
            ) from None
        return hook
    hook = connection.get_hook()
    if not isinstance(hook, DbApiHook):
        raise DeepgramConfigurationError(
            f"{argument} {conn_id!r} is a {connection.conn_type!r} connection whose hook "
            f"{type(hook).__name__} is not a SQL (DbApiHook) hook; use e.g. a sqlite or postgres connection"
        )
    return hook


def validate_table_name(name: Any, argument: str = "table") -> str:
    """
    Return ``name`` when it is a plain SQL identifier or ``schema.table``; raise otherwise.

    :param name: the table name to check.
    :param argument: the argument the name came from, for the error message.
    :raises DeepgramConfigurationError: naming the bad value.
    """
    if not isinstance(name, str):
        raise DeepgramConfigurationError(f"{argument} must be a string, got {type(name).__name__}")
    parts = name.split(".")
    if len(parts) > 2 or not all(IDENTIFIER_PATTERN.match(part) for part in parts):
        raise DeepgramConfigurationError(
            f"{argument} {name!r} is not a valid table name: use letters, digits and underscores "
            "(starting with a letter or underscore, at most 63 characters), optionally as schema.table"
        )
    return name


@dataclass(frozen=True)
class ScoredDocument:
    """
    One scored document, ready to store.

    :param source: the document's name (its URI, or the qualified name of an inline text).
    :param fingerprint: sha256 hex digest of its text.
    :param result: Deepgram's result for it.
    :param language: the language it was scored in (used when the result does not say).
    :param scored_at: when it was scored (UTC).
    :param record_key: the record's key (``id_field`` value, line or row number); None for a whole object.
    :param location: where its content was read (``<uri>#<row>``, ``<uri>``, ``sql://<conn>#<row>``).
    :param entity: True for a record keyed by its own id in a namespace: the rows 0.2 stored for
        the same key by the same task (under ``<uri>#<key>``) are replaced too.
    :param position: its position in the run, for reporting a document the database refuses.
    """

    source: str
    fingerprint: str
    result: SentimentResult
    language: str | None = None
    scored_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    record_key: str | None = None
    location: str | None = None
    entity: bool = False
    position: int | None = None


@dataclass(frozen=True)
class StoredDocument:
    """
    What the averages table holds for one document.

    :param fingerprint: sha256 of the content scored.
    :param sentiment: the stored average label.
    :param sentiment_score: the stored average score.
    """

    fingerprint: str
    sentiment: str | None = None
    sentiment_score: float | None = None


@dataclass(frozen=True)
class RunIdentity:
    """
    Which Airflow task run wrote a row.

    :param dag_id: the DAG id.
    :param task_id: the task id.
    :param run_id: the DAG run id.
    """

    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None


class WarehouseWriter:
    """
    Write per-segment and per-document sentiment rows through a ``DbApiHook``.

    Nothing connects until first use. Call :meth:`check_tables` (or at least
    :meth:`ensure_tables`) once before the other methods, and before the first request
    to Deepgram; :meth:`close` releases the database connection.

    :param sql_conn_id: a connection whose hook is a common.sql ``DbApiHook`` of a database with a
        :mod:`~airflow_provider_dgsentiment.storage.dialects` dialect (SQLite, PostgreSQL,
        MySQL/MariaDB, DuckDB, Snowflake).
    :param segments_table: table of segment rows (``name`` or ``schema.name``).
    :param averages_table: table of document rows (``name`` or ``schema.name``).
    :param run: the DAG, task and run ids stored with every row.
    :param write_batch_size: documents per transaction in :meth:`write`.
    """

    def __init__(
        self,
        sql_conn_id: str,
        *,
        segments_table: str = DEFAULT_SEGMENTS_TABLE,
        averages_table: str = DEFAULT_AVERAGES_TABLE,
        run: RunIdentity | None = None,
        write_batch_size: int = DEFAULT_WRITE_BATCH_SIZE,
    ) -> None:
        self.sql_conn_id = sql_conn_id
        self.segments_table = validate_table_name(segments_table, "segments_table")
        self.averages_table = validate_table_name(averages_table, "averages_table")
        if self.segments_table.lower() == self.averages_table.lower():
            raise DeepgramConfigurationError(
                f"segments_table and averages_table must differ, both are {segments_table!r}"
            )
        self.run = run or RunIdentity()
        self.write_batch_size = max(1, write_batch_size)
        self._connection: Any = None
        #: Whether averages rows are upserted; False for a table without the key (delete and insert).
        self._upsert = True

    # ------------------------------------------------------------------ connection

    @cached_property
    def hook(self) -> DbApiHook:
        """The connection's SQL hook (checked to be a ``DbApiHook``)."""
        return sql_hook(self.sql_conn_id, "sql_conn_id")

    @cached_property
    def dialect(self) -> Dialect:
        """The database's dialect (a database the provider does not know is refused here, before connecting)."""
        dialect = dialect_for(self.hook, self.sql_conn_id)
        dialect.check_sink(self.hook, self.sql_conn_id)
        return dialect

    @property
    def connection(self) -> Any:
        """The DB-API connection, opened on first use and kept until :meth:`close`."""
        if self._connection is None:
            _ = self.dialect
            self._connection = self.hook.get_conn()
        return self._connection

    def close(self) -> None:
        """Close the DB-API connection, if one was opened."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __enter__(self) -> WarehouseWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def placeholder(self) -> str:
        """The hook's parameter placeholder: ``?`` (SQLite, DuckDB) or ``%s`` (PostgreSQL, MySQL, Snowflake)."""
        return self.dialect.placeholder

    @contextmanager
    def _transaction(self, *, begin: bool = True) -> Iterator[Any]:
        """
        A cursor in a write transaction: committed when the block ends, rolled back when it raises.

        :param begin: begin the transaction explicitly where the database needs that; False for
            DDL, which Snowflake and MySQL commit by themselves (fakesnow refuses it after ``BEGIN``).
        """
        connection = self.connection
        with self.dialect.cursor(connection) as cursor:
            try:
                if begin:
                    self.dialect.begin(cursor)
                yield cursor
                connection.commit()
            except BaseException:
                self._rollback()  # keeps the original error, which says what went wrong
                raise

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A cursor for reads; the read transaction (where there is one) ends afterwards."""
        try:
            with self.dialect.cursor(self.connection) as cursor:
                yield cursor
        finally:
            self._end_read()

    def _end_read(self) -> None:
        try:
            self.dialect.end_read(self.connection)
        except Exception as error:
            self.hook.log.warning("Ending a read transaction failed: %s", type(error).__name__)

    def _rollback(self) -> None:
        try:
            self.connection.rollback()
        except Exception as error:
            self.hook.log.warning("Rollback failed: %s", type(error).__name__)

    # ------------------------------------------------------------------ schema

    def ensure_tables(self) -> None:
        """Create both tables and their indexes when missing (``CREATE ... IF NOT EXISTS``)."""
        statements = self.dialect.create_table(self.segments_table, SEGMENTS_TABLE)
        statements += self.dialect.create_table(self.averages_table, AVERAGES_TABLE)
        _ = self.connection  # connect first: a wrong connection fails at once, without retries
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                with self._transaction(begin=False) as cursor:
                    for statement in statements:
                        cursor.execute(statement)
                break
            except Exception as exc:
                # Two tasks creating the same table at once can collide (PostgreSQL's
                # pg_type unique index); the second attempt then finds the table there.
                if attempt == CREATE_ATTEMPTS:
                    raise
                self.hook.log.info(
                    "Creating tables %s and %s failed (%s); trying again",
                    self.segments_table,
                    self.averages_table,
                    type(exc).__name__,
                )
                time.sleep(0.2 * attempt)
        self.hook.log.info("Tables %s and %s are ready", self.segments_table, self.averages_table)

    def check_tables(self) -> None:
        """
        Make sure results can be stored, before anything is scored.

        Creates the tables when one is missing (:meth:`ensure_tables`; when both exist nothing is
        created, so a user without CREATE privileges passes), then checks that each has the
        columns this writer inserts (:data:`SEGMENT_COLUMNS`, :data:`AVERAGE_COLUMNS`) and that the
        database accepts a write: a probe document is written as every document is (upsert, delete,
        insert), then deleted, inside a transaction that is rolled back, so nothing stays behind on
        any database (also where each statement would otherwise commit). That finds a table made
        for something else, a read-only database or a user without INSERT/DELETE privileges, a
        table without the key the upsert needs, an extra NOT NULL column or a column of the wrong type.

        :raises DeepgramConfigurationError: naming the table, what is wrong and the fix.
        """
        tables = (
            (self.segments_table, "segments_table", SEGMENT_COLUMNS),
            (self.averages_table, "averages_table", AVERAGE_COLUMNS),
        )
        # Existing tables first: creating the indexes would fail on a table without their columns.
        existing = [table for table, _, _ in tables if self._exists(table)]
        if self.averages_table in existing:
            self._migrate_averages()
        for table, argument, columns in tables:
            if table in existing:
                self._check_columns(table, argument, columns)
        if len(existing) < len(tables):
            # Only then: a user allowed to write rows but not to create tables needs no CREATE.
            try:
                self.ensure_tables()
            except DeepgramConfigurationError:
                raise
            except Exception as exc:
                raise DeepgramConfigurationError(
                    f"Cannot create tables {self.segments_table} and {self.averages_table} ({_describe_error(exc)}): "
                    "check that the database is writable and that the connection's user may create tables in it"
                ) from exc
            for table, argument, columns in tables:
                self._check_columns(table, argument, columns)
        self._check_writable()
        self.hook.log.info(
            "Tables %s and %s have the expected columns and accept writes", self.segments_table, self.averages_table
        )

    def _exists(self, table: str) -> bool:
        with self._reading() as cursor:
            return self._table_exists(cursor, table)

    def _columns(self, table: str) -> set[str]:
        """The (lower-case) column names of an existing table."""
        try:
            with self._reading() as cursor:
                cursor.execute(f"SELECT * FROM {table} WHERE 1 = 0")
                present = {str(column[0]).lower() for column in cursor.description or ()}
                cursor.fetchall()
        except Exception as exc:
            raise DeepgramConfigurationError(
                f"Cannot read table {table} ({_describe_error(exc)}): "
                "check that the connection's user may select from it"
            ) from exc
        return present

    def _check_columns(self, table: str, argument: str, expected: Sequence[str]) -> None:
        present = self._columns(table)
        missing = [column for column in expected if column not in present]
        if missing:
            raise DeepgramConfigurationError(
                f"Table {table} exists without the columns {', '.join(missing)}: drop it or give {argument} a new name"
            )

    def _migrate_averages(self) -> None:
        """
        Bring a 0.2 averages table to 0.3 in place: add ``record_key`` and ``location``, rows kept.

        The ``record_key`` of each 0.2 record row (named ``<uri>#<key>``) is set from its name, so
        that the row counts as stored for its task's key namespace (nothing is paid for again);
        its ``location`` stays NULL (0.2 did not record it). Two tasks migrating at once are fine:
        a column the other one added first is taken as added.
        """
        table = self.averages_table
        present = self._columns(table)
        if not all(column in present for column in AVERAGE_COLUMNS if column not in AVERAGE_COLUMNS_ADDED):
            return  # not a table of ours: _check_columns says what is missing
        added = [column for column in AVERAGE_COLUMNS_ADDED if column not in present]
        if not added:
            return
        self.hook.log.info("Migrating table %s in place: adding column(s) %s", table, ", ".join(added))
        for column in added:
            try:
                with self._transaction(begin=False) as cursor:
                    cursor.execute(self.dialect.add_column(table, AVERAGES_TABLE, column))
            except Exception as exc:
                if column not in self._columns(table):  # not a concurrent migration: say why
                    raise DeepgramConfigurationError(
                        f"Cannot add column {column} to table {table} ({_describe_error(exc)}): the 0.3 provider "
                        "needs it; check that the connection's user may alter the table"
                    ) from exc
        marks = self.placeholder
        with self._reading() as cursor:
            cursor.execute(
                f"SELECT source FROM {table} WHERE record_key IS NULL AND location IS NULL AND source LIKE {marks}",
                ("%#%",),
            )
            keyed = [(str(row[0]).rsplit("#", 1)[1], row[0]) for row in cursor.fetchall()]
        for chunk in batched(keyed, LOOKUP_BATCH_SIZE):
            with self._transaction() as cursor:
                cursor.executemany(f"UPDATE {table} SET record_key = {marks} WHERE source = {marks}", chunk)
        with self._transaction(begin=False) as cursor:
            for statement in self.dialect.create_indexes(table, ("record_key",)):
                cursor.execute(statement)
        self.hook.log.info("Table %s migrated: %d record row(s) of 0.2 keyed by their record key", table, len(keyed))

    def _check_writable(self) -> None:
        probe = ScoredDocument(
            source=f"dgsentiment-write-check-{uuid.uuid4().hex}",
            fingerprint="0" * 64,
            result=_probe_result(),
            language="en",
        )
        try:
            self._write_probe(self.segments_table, lambda cursor: self._store_segments(cursor, [probe]), probe)
        except Exception as error:
            raise self._unwritable(self.segments_table, error) from error
        try:
            self._write_probe(self.averages_table, lambda cursor: self._store_averages(cursor, [probe]), probe)
        except Exception as upsert_error:
            if not self._upsert or self.dialect.upsert(self.averages_table, AVERAGES_TABLE, 1) is None:
                raise self._unwritable(self.averages_table, upsert_error) from upsert_error
            # A table made without the key: rewrite by delete and insert, as 0.2 did.
            self._upsert = False
            try:
                self._write_probe(self.averages_table, lambda cursor: self._store_averages(cursor, [probe]), probe)
            except Exception as error:
                raise self._unwritable(self.averages_table, error) from error
            self.hook.log.warning(
                "Table %s has no primary key or unique constraint on source (%s): rows are replaced by delete "
                "and insert, and two runs writing the same documents at once may leave both rows; add one",
                self.averages_table,
                _describe_error(upsert_error),
            )

    def _write_probe(self, table: str, write: Callable[[Any], None], probe: ScoredDocument) -> None:
        """Write ``probe`` with ``write``, delete it and roll back: it never stays, whatever the database commits."""
        try:
            with self._transaction() as cursor:
                write(cursor)
                self._delete(cursor, table, [probe.source])
                raise _ProbeWritten
        except _ProbeWritten:
            pass

    @staticmethod
    def _unwritable(table: str, error: Exception) -> DeepgramConfigurationError:
        return DeepgramConfigurationError(
            f"Cannot write to table {table} ({_describe_error(error)}): check that the database is not "
            "read-only, that the connection's user may insert into and delete from the table, and that "
            "its columns take the provider's rows (no other NOT NULL columns)"
        )

    # ------------------------------------------------------------------ reads

    def stored_fingerprints(self, sources: Iterable[str]) -> dict[str, str]:
        """
        Return ``{source: fingerprint}`` for those of ``sources`` that have a row in the averages table.

        A document is already scored when its source is stored with the same content
        fingerprint; a changed document (same source, new content) is scored again. A
        missing averages table means nothing is stored yet.

        :param sources: document names as stored in the tables.
        """
        return {source: stored.fingerprint for source, stored in self.stored_documents(sources).items()}

    def stored_documents(
        self, sources: Iterable[str], legacy_keys: dict[str, str] | None = None
    ) -> dict[str, StoredDocument]:
        """
        Return what the averages table holds for those of ``sources`` that have a row.

        :param sources: document names as stored in the tables.
        :param legacy_keys: ``{source: record key}`` of records keyed by their own id in a
            namespace: one without a row under its name counts as stored when this writer's task
            (``dag_id``, ``task_id``) stored the key in 0.2 (a row with that ``record_key`` and no
            ``location``), under whichever object's name (``<uri>#<key>``); the latest such row.
        """
        wanted = {storable(source): source for source in dict.fromkeys(sources)}
        found: dict[str, StoredDocument] = {}
        if not wanted:
            return found
        marks = self.placeholder
        # Ends the read transaction so it holds no snapshot or lock while scoring goes on.
        with self._reading() as cursor:
            if not self._table_exists(cursor, self.averages_table):
                return found
            for chunk in batched(wanted, LOOKUP_BATCH_SIZE):
                cursor.execute(
                    f"SELECT source, fingerprint, sentiment, sentiment_score FROM {self.averages_table} "
                    f"WHERE source IN ({', '.join([marks] * len(chunk))})",
                    tuple(chunk),
                )
                found.update(
                    (wanted.get(row[0], row[0]), StoredDocument(row[1], row[2], row[3])) for row in cursor.fetchall()
                )
            legacy = {storable(key): source for source, key in (legacy_keys or {}).items() if source not in found}
            for chunk in batched(list(legacy), LOOKUP_BATCH_SIZE):
                cursor.execute(
                    f"SELECT record_key, fingerprint, sentiment, sentiment_score FROM {self.averages_table} "
                    f"WHERE location IS NULL AND dag_id = {marks} AND task_id = {marks} "
                    f"AND record_key IN ({', '.join([marks] * len(chunk))}) ORDER BY scored_at",
                    (self.run.dag_id, self.run.task_id, *chunk),
                )
                found.update((legacy[row[0]], StoredDocument(row[1], row[2], row[3])) for row in cursor.fetchall())
        return found

    def stored_input_tokens(self) -> int:
        """
        Return the input tokens of the rows this writer's task run stored already (0 without rows).

        A retried task counts them against ``max_input_tokens``. Rows are matched by
        ``dag_id``, ``task_id`` and ``run_id``: for a mapped task, by all its mapped instances.
        """
        run = self.run
        with self._reading() as cursor:
            if not self._table_exists(cursor, self.averages_table):
                return 0
            marks = self.placeholder
            cursor.execute(
                f"SELECT COALESCE(SUM(input_tokens), 0) FROM {self.averages_table} "
                f"WHERE dag_id = {marks} AND task_id = {marks} AND run_id = {marks}",
                (run.dag_id, run.task_id, run.run_id),
            )
            return int(cursor.fetchone()[0] or 0)

    def known_sources(self, sources: Iterable[str]) -> set[str]:
        """Return those of ``sources`` that have a row in the averages table (whatever their content)."""
        return set(self.stored_fingerprints(sources))

    def _table_exists(self, cursor: Any, table: str) -> bool:
        """
        Say whether ``table`` exists; raise when it exists but cannot be read.

        Each DB-API driver raises its own "no such table" error, so a failed probe is checked
        against the catalog (:meth:`Dialect.catalog_query`): a table that is there but refuses the
        probe (no privilege, a lock) is an error, not a reason to treat every document as new.
        """
        try:
            cursor.execute(f"SELECT 1 FROM {table} WHERE 1 = 0")
            cursor.fetchall()
        except Exception as exc:
            self._end_read()
            if self._catalog_has_table(table) is True:
                raise DeepgramConfigurationError(
                    f"Cannot read table {table} ({_describe_error(exc)}): "
                    "check that the connection's user may select from it"
                ) from exc
            return False
        return True

    def _catalog_has_table(self, table: str) -> bool | None:
        """Ask the database's catalog whether ``table`` exists; None when the catalog cannot tell."""
        sql, parameters = self.dialect.catalog_query(table)
        try:
            with self._reading() as cursor:
                cursor.execute(sql, parameters)
                row = cursor.fetchone()
        except Exception:  # the catalog cannot tell: keep the old answer, "missing"
            return None
        return bool(row and row[0])

    def count_rows(self, source: str | None = None) -> tuple[int, int]:
        """
        Return ``(segment_rows, document_rows)``, for one source or for the whole tables.

        :param source: a document name, or None for every document.
        """
        counts = []
        with self._reading() as cursor:
            for table in (self.segments_table, self.averages_table):
                if source is None:
                    cursor.execute(f"SELECT COUNT(*) FROM {table}")
                else:
                    cursor.execute(
                        f"SELECT COUNT(*) FROM {table} WHERE source = {self.placeholder}", (storable(source),)
                    )
                counts.append(int(cursor.fetchone()[0]))
        return counts[0], counts[1]

    # ------------------------------------------------------------------ writes

    def write(self, documents: Sequence[ScoredDocument]) -> list[UnstoredDocument]:
        """
        Replace the rows of ``documents`` in both tables, ``write_batch_size`` documents per transaction.

        Each transaction upserts the documents' averages rows (their row locks make a second
        writer of the same documents wait), then deletes their segment rows and inserts the new
        ones; on any error it is rolled back, leaving the old rows. A transaction that a
        concurrent writer got in the way of (deadlock, serialization, key race) is tried again.
        When the database refuses a batch for a value, each of its documents is written alone:
        those it refuses are returned, named with the cause, and the rest are stored.

        :param documents: the scored documents (each source at most once; the last one counts).
        :returns: the documents the database refused, with why (empty when all are stored).
        :raises DeepgramError: before anything is written, when a score is NaN or infinite (the
            responses are validated before; this is the last line of defence for the tables).
        :raises Exception: the database's error when it refuses every document of a batch (a lost
            connection, a dropped table: nothing one document did).
        """
        documents = list({document.source: document for document in documents}.values())
        for document in documents:
            _check_finite_scores(document)
        refused: list[UnstoredDocument] = []
        for batch in batched(documents, self.write_batch_size):
            refused += self._write_batch(batch)
        return refused

    def _write_batch(self, batch: list[ScoredDocument]) -> list[UnstoredDocument]:
        try:
            self._replace_with_retries(batch)
            return []
        except Exception as batch_error:
            if len(batch) == 1:
                raise
            self.hook.log.warning(
                "Storing %d documents failed (%s); storing them one by one to find the ones refused",
                len(batch),
                _describe_error(batch_error),
            )
            refused = []
            for document in batch:
                try:
                    self._replace_with_retries([document])
                except Exception as error:
                    refused.append(UnstoredDocument(document, f"not stored: {_describe_error(error)}"))
            if len(refused) == len(batch):
                raise batch_error from None  # nothing one document did: the database refuses everything
            return refused

    def _replace_with_retries(self, batch: list[ScoredDocument]) -> None:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._transaction() as cursor:
                    self._replace(cursor, batch)
                return
            except Exception as error:
                if attempt == WRITE_ATTEMPTS or not self.dialect.is_write_conflict(error):
                    raise
                self.hook.log.info(
                    "A concurrent writer held rows of these documents (%s); writing them again", type(error).__name__
                )
                time.sleep(0.1 * attempt)

    def _replace(self, cursor: Any, batch: Sequence[ScoredDocument]) -> None:
        # One lock order (by source) for every writer: two runs writing the same documents never deadlock.
        ordered = sorted(batch, key=lambda document: document.source)
        legacy = self._legacy_sources(cursor, [document.record_key for document in ordered if document.entity])
        for table in (self.segments_table, self.averages_table):
            self._delete(cursor, table, legacy)  # a 0.2 row of the same entity, under its old name
        self._store_averages(cursor, ordered)
        self._store_segments(cursor, ordered)

    def _legacy_sources(self, cursor: Any, keys: list[str | None]) -> list[str]:
        """The names of the 0.2 rows this writer's task stored for ``keys`` (see :meth:`stored_documents`)."""
        found: list[str] = []
        marks = self.placeholder
        for chunk in batched([storable(key) for key in keys if key is not None], LOOKUP_BATCH_SIZE):
            cursor.execute(
                f"SELECT source FROM {self.averages_table} WHERE location IS NULL AND dag_id = {marks} "
                f"AND task_id = {marks} AND record_key IN ({', '.join([marks] * len(chunk))})",
                (self.run.dag_id, self.run.task_id, *chunk),
            )
            found.extend(str(row[0]) for row in cursor.fetchall())
        return found

    # ------------------------------------------------------------------ for the load history's tables

    def ensure_table(self, table: str, spec: TableSpec) -> None:
        """Create another table of the provider's (described by ``spec``) when missing."""
        with self._transaction(begin=False) as cursor:
            for statement in self.dialect.create_table(table, spec):
                cursor.execute(statement)

    def run_in_transaction(self, work: Callable[[Any], Any]) -> None:
        """Run ``work(cursor)`` in one transaction: committed when it returns, rolled back when it raises."""
        with self._transaction() as cursor:
            work(cursor)

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """A cursor for reads; the read transaction (where the database has one) ends afterwards."""
        with self._reading() as cursor:
            yield cursor

    def table_exists(self, table: str) -> bool:
        """Say whether ``table`` exists (raise when it exists but cannot be read)."""
        return self._exists(table)

    def insert_rows(self, cursor: Any, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (tuples in the order of ``columns``) with multi-row ``VALUES`` statements."""
        self._insert(cursor, table, columns, (_storable_row(*row) for row in rows))

    def bind_timestamp(self, moment: datetime | str) -> Any:
        """A ``TIMESTAMP`` parameter for this database (a datetime, or ISO-8601 text as :func:`timestamp` gives)."""
        return self.dialect.bind_timestamp(datetime.fromisoformat(moment) if isinstance(moment, str) else moment)

    def _store_averages(self, cursor: Any, batch: Sequence[ScoredDocument]) -> None:
        rows = list(self._average_rows(batch))
        rows_per_statement = max(1, MAX_PARAMETERS_PER_STATEMENT // len(AVERAGE_COLUMNS))
        if not self._upsert or self.dialect.upsert(self.averages_table, AVERAGES_TABLE, 1) is None:
            self._delete(cursor, self.averages_table, [row[0] for row in rows])
            self._insert(cursor, self.averages_table, AVERAGE_COLUMNS, iter(rows))
            return
        for chunk in batched(rows, rows_per_statement):
            statement = self.dialect.upsert(self.averages_table, AVERAGES_TABLE, len(chunk))
            cursor.execute(statement, tuple(value for row in chunk for value in row))

    def _store_segments(self, cursor: Any, batch: Sequence[ScoredDocument]) -> None:
        self._delete(cursor, self.segments_table, [storable(document.source) for document in batch])
        self._insert(cursor, self.segments_table, SEGMENT_COLUMNS, self._segment_rows(batch))

    def _delete(self, cursor: Any, table: str, sources: Sequence[str]) -> None:
        for chunk in batched(sources, LOOKUP_BATCH_SIZE):
            marks = ", ".join([self.placeholder] * len(chunk))
            cursor.execute(f"DELETE FROM {table} WHERE source IN ({marks})", tuple(chunk))

    def _insert(self, cursor: Any, table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None:
        """Insert rows with multi-row ``VALUES`` statements (one round trip per statement)."""
        rows_per_statement = max(1, MAX_PARAMETERS_PER_STATEMENT // len(columns))
        for chunk in batched(rows, rows_per_statement):
            parameters = tuple(value for row in chunk for value in row)
            cursor.execute(self.dialect.insert(table, tuple(columns), len(chunk)), parameters)

    def _segment_rows(self, batch: Sequence[ScoredDocument]) -> Iterator[tuple[Any, ...]]:
        run = self.run
        for document in batch:
            scored_at = self.dialect.bind_timestamp(document.scored_at)
            for index, segment in enumerate(document.result.segments):
                yield _storable_row(
                    document.source,
                    index,
                    segment.text,
                    segment.start_word,
                    segment.end_word,
                    segment.sentiment,
                    float(segment.sentiment_score),
                    document.result.request_id,
                    run.dag_id,
                    run.task_id,
                    run.run_id,
                    scored_at,
                )

    def _average_rows(self, batch: Sequence[ScoredDocument]) -> Iterator[tuple[Any, ...]]:
        run = self.run
        for document in batch:
            result = document.result
            yield _storable_row(
                document.source,
                document.fingerprint,
                result.average.sentiment,
                float(result.average.sentiment_score),
                len(result.segments),
                result.input_tokens,
                result.output_tokens,
                result.model_uuid,
                result.language or document.language,
                result.request_id,
                run.dag_id,
                run.task_id,
                run.run_id,
                self.dialect.bind_timestamp(document.scored_at),
                document.record_key,
                document.location,
            )


@dataclass(frozen=True)
class UnstoredDocument:
    """
    A scored document the database refused to store (the rest of its batch is stored).

    :param document: the document.
    :param error: why, naming the database's error (never the row's values).
    """

    document: ScoredDocument
    error: str


class _ProbeWritten(Exception):
    """Ends the write check's transaction by rolling it back."""


def storable(value: str) -> str:
    """``value`` as the tables hold it: NUL characters (which PostgreSQL text refuses) become U+FFFD."""
    return value.replace("\x00", NUL_REPLACEMENT) if "\x00" in value else value


def _storable_row(*values: Any) -> tuple[Any, ...]:
    return tuple(storable(value) if isinstance(value, str) else value for value in values)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Yield lists of ``size`` items (the last one shorter), consuming ``items`` lazily."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_finite_scores(document: ScoredDocument) -> None:
    """Raise when a score of ``document`` is not a finite number (NaN, inf, or not a number at all)."""
    scores = [("the average", document.result.average.sentiment_score)]
    scores += [(f"segment {index}", segment.sentiment_score) for index, segment in enumerate(document.result.segments)]
    for where, score in scores:
        try:
            finite = math.isfinite(float(score))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise DeepgramError(
                f"{document.source}: the sentiment_score of {where} is {score!r}, not a finite number; "
                "refusing to store it"
            )


def _probe_result() -> SentimentResult:
    """A one-segment result for the write check of :meth:`WarehouseWriter.check_tables`."""
    from airflow_provider_dgsentiment.client.results import Average, Segment, SentimentResult

    return SentimentResult(
        request_id="dgsentiment-write-check",
        created=None,
        language="en",
        model_uuid="dgsentiment-write-check",
        input_tokens=1,
        output_tokens=1,
        segments=(Segment("check", 0, 0, "neutral", 0.0),),
        average=Average("neutral", 0.0),
    )


def _describe_error(exc: BaseException) -> str:
    """``module.Class: first line of the message``, e.g. ``sqlite3.OperationalError: attempt to write ...``."""
    cls = type(exc)
    module = cls.__module__
    name = cls.__qualname__ if module in ("builtins", "") else f"{module}.{cls.__qualname__}"
    lines = str(exc).strip().splitlines()
    return f"{name}: {lines[0]}" if lines else name


def timestamp(moment: datetime | None = None) -> str:
    """Return ``moment`` (default now) as ISO-8601 UTC text (bound per database by :meth:`WarehouseWriter.bind_timestamp`)."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()
