"""SQL dialects: how to create, upsert into, check and read a table on each database results go to.

Tables are described once, as :class:`TableSpec` (columns with an abstract :class:`ColumnType`,
whether they may be null, the key and the lookup indexes); a :class:`Dialect` renders them for
its database and answers everything else that differs between databases:

- the column types (``TIMESTAMP WITH TIME ZONE`` is PostgreSQL's; MySQL keys need a length),
- where indexes may be created (Snowflake's standard tables take none),
- the upsert that makes a rewrite idempotent and lets two runs write the same documents at once
  (``ON CONFLICT``, ``ON DUPLICATE KEY``; on Snowflake, whose keys are not enforced, delete and
  insert in one explicit transaction),
- how a transaction starts and ends (DuckDB and Snowflake connections commit each statement
  unless a transaction is begun; DuckDB refuses a rollback when none is active),
- how a timestamp is bound, how the catalog says whether a table exists, which errors are a
  concurrent writer's (worth one more try), and how a ``sql`` source is made read-only.

:func:`dialect_for` picks the dialect from the hook: its ``conn_type``, else its class (a
subclass of a provider's hook). A database the provider does not know gets a clear
error naming the ones it does, never a syntax error from the database.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook


class ColumnType(enum.Enum):
    """What a column holds, independent of the database."""

    #: Text that is part of a key or an index (a bounded length where the database needs one).
    KEY = "key"
    #: Text of any length.
    TEXT = "text"
    INTEGER = "integer"
    FLOAT = "float"
    #: A moment in UTC.
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class Column:
    """
    One column of a table.

    :param name: the column name (a plain identifier).
    :param type: what it holds.
    :param nullable: whether it may be NULL.
    :param length: for a ``KEY`` column, the characters it needs at most where keys are bounded
        (MySQL); None to share what the key leaves.
    """

    name: str
    type: ColumnType
    nullable: bool = True
    length: int | None = None


@dataclass(frozen=True)
class TableSpec:
    """
    A table as the provider writes it, rendered by each :class:`Dialect`.

    :param columns: the columns, in the order rows are inserted.
    :param key: the primary key's columns (the upsert's conflict target).
    :param indexes: columns with a lookup index of their own.
    """

    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in insert order."""
        return tuple(column.name for column in self.columns)


#: Keywords of a write or DDL that a read-only query never holds outside quotes. Words that are
#: also common column names (comment, copy, load, replace, set) are left to the first-word rule
#: and to the read-only transaction.
_WRITE_KEYWORDS = frozenset(
    {
        "ALTER", "ATTACH", "CREATE", "DELETE", "DETACH", "DROP", "GRANT", "INSERT", "INTO", "MERGE",
        "PRAGMA", "REVOKE", "TRUNCATE", "UNDROP", "UPDATE", "UPSERT", "VACUUM",
    }
)  # fmt: skip
#: How a read-only query may start.
_QUERY_STARTS = ("SELECT", "WITH", "VALUES", "TABLE", "FROM", "(")
#: Comments and quoted strings or identifiers, in the order a lexer meets them.
_NOT_CODE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\$\$.*?\$\$", re.DOTALL)


def check_read_only_query(sql: str) -> None:
    """
    Refuse, before it runs, a ``sql`` source that is not one read-only query.

    The statement must be a single ``SELECT`` (or ``WITH ... SELECT``, ``VALUES``, ``TABLE``)
    and name no keyword of a write, DDL or session change outside quotes; where the database
    has one, the query also runs in a read-only transaction (:meth:`Dialect.start_read_only`).

    :param sql: the rendered ``sql`` argument.
    :raises DeepgramConfigurationError: naming the statement's first word and what is allowed.
    """
    code = _NOT_CODE.sub(" ", sql).strip()
    body = code.rstrip(";").rstrip()
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", body)
    first = body[:1] if body.startswith("(") else (words[0].upper() if words else "")
    if ";" in body:
        raise DeepgramConfigurationError(
            "sql must be one read-only query (SELECT or WITH ... SELECT), got several statements: nothing was run"
        )
    if first not in _QUERY_STARTS:
        raise DeepgramConfigurationError(
            f"sql must be a read-only query (SELECT or WITH ... SELECT), got a {first or 'empty'} "
            "statement: nothing was run"
        )
    writes = sorted({word.upper() for word in words} & _WRITE_KEYWORDS)
    if writes:
        raise DeepgramConfigurationError(
            f"sql must be a read-only query, but it holds {', '.join(writes)}: nothing was run "
            "(quote a column of that name)"
        )


class Dialect:
    """
    One SQL database as the warehouse writer and the ``sql`` source use it.

    The base class speaks the SQL that PostgreSQL, SQLite and DuckDB share; each subclass
    overrides what its database does differently.

    :param placeholder: the hook's parameter placeholder (``?`` or ``%s``).
    """

    #: Shown in messages and the README's table.
    label: ClassVar[str] = ""
    #: Airflow ``conn_type`` values of the database's hooks.
    conn_types: ClassVar[tuple[str, ...]] = ()
    #: Class names of the providers' hooks of the database (a subclass with its own conn_type is known by them).
    hook_classes: ClassVar[tuple[str, ...]] = ()
    #: The database types of the abstract ones (PostgreSQL's, which SQLite takes as they are).
    types: ClassVar[dict[ColumnType, str]] = {
        ColumnType.KEY: "TEXT",
        ColumnType.TEXT: "TEXT",
        ColumnType.INTEGER: "INTEGER",
        ColumnType.FLOAT: "DOUBLE PRECISION",
        ColumnType.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
    }
    #: Whether ``CREATE INDEX`` is allowed on a standard table.
    supports_indexes: ClassVar[bool] = True
    #: A statement that begins a transaction, where a connection otherwise commits each statement.
    begin_statement: ClassVar[str | None] = None
    #: Whether reads run outside a transaction (nothing to end after them).
    autocommit_reads: ClassVar[bool] = False

    def __init__(self, placeholder: str) -> None:
        self.placeholder = placeholder

    def __repr__(self) -> str:
        return f"{type(self).__name__}(placeholder={self.placeholder!r})"

    # ------------------------------------------------------------------ DDL

    def column_type(self, column: Column, spec: TableSpec) -> str:
        """The database type of ``column`` in a table of ``spec``."""
        return self.types[column.type]

    def create_table(self, table: str, spec: TableSpec) -> list[str]:
        """The statements that create ``table`` and its indexes when missing."""
        lines = [
            f"    {column.name} {self.column_type(column, spec)}{'' if column.nullable else ' NOT NULL'}"
            for column in spec.columns
        ]
        lines.append(f"    PRIMARY KEY ({', '.join(spec.key)})")
        return [
            f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(lines) + "\n)",
            *self.create_indexes(table, spec.indexes),
        ]

    def create_indexes(self, table: str, columns: tuple[str, ...]) -> list[str]:
        """The statements that index ``columns`` of ``table`` one by one, where indexes are allowed."""
        return [self.create_index(table, column) for column in columns] if self.supports_indexes else []

    def add_column(self, table: str, spec: TableSpec, name: str) -> str:
        """``ALTER TABLE ... ADD COLUMN`` for the column ``name`` of ``spec`` (an in-place migration)."""
        column = next(column for column in spec.columns if column.name == name)
        return f"ALTER TABLE {table} ADD COLUMN {name} {self.column_type(column, spec)}"

    def create_index(self, table: str, column: str) -> str:
        """``CREATE INDEX IF NOT EXISTS`` on one column."""
        return f"CREATE INDEX IF NOT EXISTS {index_name(table.rpartition('.')[2], column)} ON {table} ({column})"

    # ------------------------------------------------------------------ DML

    def insert(self, table: str, columns: tuple[str, ...], rows: int) -> str:
        """A multi-row ``INSERT`` of ``rows`` rows."""
        one_row = "(" + ", ".join([self.placeholder] * len(columns)) + ")"
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one_row] * rows)

    def upsert(self, table: str, spec: TableSpec, rows: int) -> str | None:
        """
        A multi-row insert that replaces the rows whose key exists, or None to delete and insert.

        Whichever writer comes second waits for the first one's row lock and then replaces its
        row: two runs writing the same documents end with one set of rows and no key violation.
        """
        updates = ", ".join(f"{name} = excluded.{name}" for name in spec.names if name not in spec.key)
        return f"{self.insert(table, spec.names, rows)} ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {updates}"

    def bind_timestamp(self, moment: datetime) -> Any:
        """The parameter for a ``TIMESTAMP`` column: ISO-8601 text with its UTC offset."""
        return _utc(moment).isoformat()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def cursor(self, connection: Any) -> Iterator[Any]:
        """A cursor of ``connection``, closed afterwards."""
        cursor = connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def begin(self, cursor: Any) -> None:
        """Begin a write transaction (implicit on most DB-API connections)."""
        if self.begin_statement:
            cursor.execute(self.begin_statement)

    def end_read(self, connection: Any) -> None:
        """End the transaction a read began, so it holds no snapshot or lock."""
        if not self.autocommit_reads:
            connection.rollback()

    def is_write_conflict(self, error: BaseException) -> bool:
        """Whether ``error`` is a concurrent writer's (a deadlock, a serialization or key race): try again."""
        return False

    # ------------------------------------------------------------------ catalog and reads

    def catalog_query(self, table: str) -> tuple[str, tuple[Any, ...]]:
        """A query whose first row says whether ``table`` exists (``information_schema``)."""
        schema, _, name = table.rpartition(".")
        sql = f"SELECT COUNT(*) FROM information_schema.tables WHERE LOWER(table_name) = LOWER({self.placeholder})"
        if schema:
            return f"{sql} AND LOWER(table_schema) = LOWER({self.placeholder})", (name, schema)
        return sql, (name,)

    def start_read_only(self, connection: Any) -> None:
        """Make what ``connection`` runs next read-only, where the database can (else the statement check alone)."""

    def check_sink(self, hook: DbApiHook, conn_id: str) -> None:
        """Refuse a database whose results would not outlive the task (nothing to refuse on most)."""


class SQLiteDialect(Dialect):
    """SQLite (``sqlite3``): values keep their type; timestamps are ISO-8601 text."""

    label = "SQLite"
    conn_types = ("sqlite",)
    hook_classes = ("SqliteHook",)
    # The 0.2 DDL, unchanged (the base types): SQLite accepts any type name and gives these the right affinity.

    def create_index(self, table: str, column: str) -> str:
        schema, _, name = table.rpartition(".")
        if not schema:
            return super().create_index(table, column)
        # SQLite qualifies the index, not the table: CREATE INDEX s.ix ON t (c).
        return f"CREATE INDEX IF NOT EXISTS {schema}.{index_name(name, column)} ON {name} ({column})"

    def catalog_query(self, table: str) -> tuple[str, tuple[Any, ...]]:
        schema, _, name = table.rpartition(".")
        catalog = f"{schema}.sqlite_master" if schema else "sqlite_master"
        return f"SELECT COUNT(*) FROM {catalog} WHERE type IN ('table', 'view') AND name = {self.placeholder}", (name,)

    def is_write_conflict(self, error: BaseException) -> bool:
        return "database is locked" in str(error)

    def start_read_only(self, connection: Any) -> None:
        connection.execute("PRAGMA query_only = ON")


class PostgresDialect(Dialect):
    """PostgreSQL (psycopg 2 or 3): ``TIMESTAMP WITH TIME ZONE``; text cannot hold NUL."""

    label = "PostgreSQL"
    conn_types = ("postgres",)
    hook_classes = ("PostgresHook",)
    #: SQLSTATEs of a concurrent writer: serialization failure, deadlock, unique violation.
    CONFLICT_STATES = frozenset({"40001", "40P01", "23505"})

    def catalog_query(self, table: str) -> tuple[str, tuple[Any, ...]]:
        return f"SELECT to_regclass({self.placeholder}) IS NOT NULL", (table,)

    def is_write_conflict(self, error: BaseException) -> bool:
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        return state in self.CONFLICT_STATES

    def start_read_only(self, connection: Any) -> None:
        if getattr(connection, "autocommit", False):
            connection.autocommit = False
        cursor = connection.cursor()
        try:
            cursor.execute("SET TRANSACTION READ ONLY")
        finally:
            cursor.close()


class MySQLDialect(Dialect):
    """
    MySQL and MariaDB (mysqlclient): keys as ``VARCHAR`` within InnoDB's 3072-byte key, ``DATETIME(6)`` in UTC.

    A text key column gets its own ``length``, or shares what ``KEY_BYTES / 4`` characters leave
    (utf8mb4 takes up to 4 bytes a character): ``VARCHAR(750)`` for a table keyed by ``source``.
    A longer value is refused by the database (strict mode) and fails that document alone.
    """

    label = "MySQL/MariaDB"
    conn_types = ("mysql",)
    hook_classes = ("MySqlHook",)
    #: Bytes of one InnoDB key the text columns may take (3072 less room for the other key parts).
    KEY_BYTES = 3000
    types = {
        ColumnType.TEXT: "LONGTEXT",
        ColumnType.INTEGER: "INTEGER",
        ColumnType.FLOAT: "DOUBLE",
        ColumnType.TIMESTAMP: "DATETIME(6)",
    }
    #: Error numbers of a concurrent writer: deadlock, lock wait timeout, duplicate key.
    CONFLICT_ERRORS = frozenset({1213, 1205, 1062})

    def column_type(self, column: Column, spec: TableSpec) -> str:
        if column.type is not ColumnType.KEY:
            return self.types[column.type]
        if column.length is not None:
            return f"VARCHAR({column.length})"
        if column.name not in spec.key:
            return f"VARCHAR({self.KEY_BYTES // 4})"
        text_keys = [other for other in spec.columns if other.name in spec.key and other.type is ColumnType.KEY]
        fixed = sum(other.length for other in text_keys if other.length is not None)
        shared = sum(1 for other in text_keys if other.length is None)
        return f"VARCHAR({(self.KEY_BYTES // 4 - fixed) // shared})"

    def create_table(self, table: str, spec: TableSpec) -> list[str]:
        # MySQL has no CREATE INDEX IF NOT EXISTS (MariaDB has): the indexes go inside CREATE TABLE
        # (create_indexes, for a migration, speaks MariaDB's).
        statement = super().create_table(table, spec)[0]
        indexes = "".join(
            f",\n    INDEX {index_name(table.rpartition('.')[2], column)} ({column})" for column in spec.indexes
        )
        return [statement[: -len("\n)")] + indexes + "\n) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"]

    def upsert(self, table: str, spec: TableSpec, rows: int) -> str | None:
        updates = ", ".join(f"{name} = VALUES({name})" for name in spec.names if name not in spec.key)
        return f"{self.insert(table, spec.names, rows)} ON DUPLICATE KEY UPDATE {updates}"

    def bind_timestamp(self, moment: datetime) -> Any:
        # DATETIME holds no offset and MySQL refuses text ending '+00:00': a naive UTC datetime.
        return _utc(moment).replace(tzinfo=None)

    def catalog_query(self, table: str) -> tuple[str, tuple[Any, ...]]:
        schema, _, name = table.rpartition(".")
        sql = (
            f"SELECT COUNT(*) FROM information_schema.tables WHERE table_name = {self.placeholder} AND table_schema = "
        )
        if schema:
            return f"{sql}{self.placeholder}", (name, schema)
        return f"{sql}DATABASE()", (name,)

    def is_write_conflict(self, error: BaseException) -> bool:
        code = error.args[0] if error.args else None
        return code in self.CONFLICT_ERRORS

    def start_read_only(self, connection: Any) -> None:
        cursor = connection.cursor()
        try:
            cursor.execute("START TRANSACTION READ ONLY")
        finally:
            cursor.close()


class DuckDBDialect(Dialect):
    """
    DuckDB (the official provider): each statement commits unless a transaction is begun.

    The writer works on the connection itself (a DuckDB ``cursor()`` is a second connection
    with transactions of its own), begins each write transaction and ends none after reads.
    """

    label = "DuckDB"
    conn_types = ("duckdb",)
    hook_classes = ("DuckDBHook",)
    types = {
        ColumnType.KEY: "VARCHAR",
        ColumnType.TEXT: "VARCHAR",
        ColumnType.INTEGER: "INTEGER",
        ColumnType.FLOAT: "DOUBLE",
        ColumnType.TIMESTAMP: "TIMESTAMPTZ",
    }
    begin_statement = "BEGIN TRANSACTION"
    autocommit_reads = True

    @contextmanager
    def cursor(self, connection: Any) -> Iterator[Any]:
        yield connection

    def bind_timestamp(self, moment: datetime) -> Any:
        return _utc(moment)

    def check_sink(self, hook: DbApiHook, conn_id: str) -> None:
        get_database = getattr(hook, "get_database", None)
        if get_database is not None and get_database() == ":memory:":
            raise DeepgramConfigurationError(
                f"sql_conn_id {conn_id!r} opens an in-memory DuckDB database (no such connection, or one without "
                "a database file), whose results would be lost when the task ends: create a duckdb connection "
                "whose host is a database file (an in-memory database serves as a sql source only)"
            )

    def is_write_conflict(self, error: BaseException) -> bool:
        return type(error).__name__ == "TransactionException" and "conflict" in str(error).lower()


class SnowflakeDialect(Dialect):
    """
    Snowflake: no indexes on standard tables, keys not enforced, each statement commits unless ``BEGIN``.

    Rewrites delete and insert in one explicit transaction (Snowflake serialises DML on a
    table, so a second writer waits and replaces the first one's rows).
    """

    label = "Snowflake"
    conn_types = ("snowflake",)
    hook_classes = ("SnowflakeHook",)
    types = {
        ColumnType.KEY: "VARCHAR",
        ColumnType.TEXT: "VARCHAR",
        ColumnType.INTEGER: "INTEGER",
        ColumnType.FLOAT: "FLOAT",
        ColumnType.TIMESTAMP: "TIMESTAMP_TZ",
    }
    supports_indexes = False
    begin_statement = "BEGIN"
    autocommit_reads = True

    def upsert(self, table: str, spec: TableSpec, rows: int) -> str | None:
        return None

    def bind_timestamp(self, moment: datetime) -> Any:
        return _utc(moment)


#: The databases the provider stores results in, in the README's order.
DIALECTS: tuple[type[Dialect], ...] = (SQLiteDialect, PostgresDialect, MySQLDialect, DuckDBDialect, SnowflakeDialect)


def find_dialect(hook: DbApiHook) -> type[Dialect] | None:
    """
    The dialect of ``hook`` by its ``conn_type``, else by its hook class (a subclass of a known hook); None when unknown.

    common.sql's ``dialect_name`` is not asked: it names Redshift's hook ``postgresql``, whose SQL
    (no ``ON CONFLICT``, no indexes) is not PostgreSQL's.
    """
    conn_type = getattr(hook, "conn_type", None)
    for dialect in DIALECTS:
        if conn_type in dialect.conn_types:
            return dialect
    classes = {cls.__name__ for cls in type(hook).__mro__}
    for dialect in DIALECTS:
        if classes & set(dialect.hook_classes):
            return dialect
    return None


def dialect_for(hook: DbApiHook, conn_id: str, argument: str = "sql_conn_id") -> Dialect:
    """
    Return the :class:`Dialect` results are written in through ``hook``.

    :param hook: a common.sql ``DbApiHook``.
    :param conn_id: its connection id, for the error message.
    :param argument: the argument that named the connection, for the error message.
    :raises DeepgramConfigurationError: for a database the provider does not store results in.
    """
    dialect = find_dialect(hook)
    if dialect is None:
        known = ", ".join(known.label for known in DIALECTS)
        raise DeepgramConfigurationError(
            f"{argument} {conn_id!r} is a {getattr(hook, 'conn_type', None)!r} connection ({type(hook).__name__}), "
            f"a database the provider cannot store results in yet (it knows {known}): use a connection to one "
            "of those, or write the results as files with results_path and load them yourself"
        )
    return dialect(hook.placeholder)


def read_dialect_for(hook: DbApiHook) -> Dialect:
    """The dialect a ``sql`` source reads through: the known one, else the plain base (statement check only)."""
    dialect = find_dialect(hook) or Dialect
    return dialect(getattr(hook, "placeholder", "%s"))


def hook_without_connection(conn_id: str) -> DbApiHook | None:
    """
    The hook a connection id names when no such connection exists, where the hook allows that.

    DuckDB's hook opens an in-memory database for its default connection id (``duckdb_default``)
    when that connection is not defined; every other id must name a connection.
    """
    try:
        from airflow.providers.duckdb.hooks.duckdb import DuckDBHook
    except ImportError:
        return None
    if conn_id == DuckDBHook.default_conn_name:
        return DuckDBHook()
    return None


def index_name(table: str, column: str) -> str:
    """Return ``ix_<table>_<column>``, shortened with a hash to fit PostgreSQL's 63 characters (MySQL's 64)."""
    import hashlib

    name = f"ix_{table}_{column}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(f"{table}.{column}".encode()).hexdigest()[:8]
    return f"ix_{table[: 63 - len(column) - 13]}_{digest}_{column}"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
