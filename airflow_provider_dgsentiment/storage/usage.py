"""One row per task try in a SQL usage table: what the try sent, what it was billed, how it ended.

FinOps reads it with plain SQL (tokens per tag per day, 429s per DAG, ...)::

    deepgram_sentiment_usage   one row per (dag_id, task_id, run_id, map_index, try_number)

Columns: the task try's identity, ``tags`` (the Deepgram ``tag`` values of every request, a
JSON array), documents by outcome (``documents``, ``scored``, ``skipped``, ``failed``),
``input_tokens`` / ``output_tokens`` (what Deepgram bills), the engine's counters
(``requests``: every attempt; ``rate_limited``: 429 answers; ``retries``), ``started_at`` /
``ended_at`` (ISO-8601 UTC) and ``outcome`` (``success``, ``failed``, ``stopped`` or
``error``). A try's row is replaced when it is written again (one transaction: delete, insert),
so a row never doubles. Values are bound as parameters; the table name is a checked identifier.
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.storage.dialects import Column, ColumnType, TableSpec
from airflow_provider_dgsentiment.storage.warehouse import WarehouseWriter, validate_table_name

if TYPE_CHECKING:
    pass

DEFAULT_USAGE_TABLE = "deepgram_sentiment_usage"
#: How a try ended.
USAGE_OUTCOMES = ("success", "failed", "stopped", "error")

#: The usage table, rendered per database by the dialects (as the warehouse's tables are).
USAGE_TABLE = TableSpec(
    columns=(
        Column("dag_id", ColumnType.KEY, nullable=False),
        Column("task_id", ColumnType.KEY, nullable=False),
        Column("run_id", ColumnType.KEY, nullable=False),
        Column("map_index", ColumnType.INTEGER, nullable=False),
        Column("try_number", ColumnType.INTEGER, nullable=False),
        Column("tags", ColumnType.TEXT, nullable=False),
        Column("documents", ColumnType.INTEGER, nullable=False),
        Column("scored", ColumnType.INTEGER, nullable=False),
        Column("skipped", ColumnType.INTEGER, nullable=False),
        Column("failed", ColumnType.INTEGER, nullable=False),
        Column("input_tokens", ColumnType.INTEGER, nullable=False),
        Column("output_tokens", ColumnType.INTEGER, nullable=False),
        Column("requests", ColumnType.INTEGER, nullable=False),
        Column("rate_limited", ColumnType.INTEGER, nullable=False),
        Column("retries", ColumnType.INTEGER, nullable=False),
        Column("started_at", ColumnType.TIMESTAMP),
        Column("ended_at", ColumnType.TIMESTAMP),
        Column("outcome", ColumnType.TEXT, nullable=False),
    ),
    key=("dag_id", "task_id", "run_id", "map_index", "try_number"),
)


@dataclass(frozen=True)
class UsageRow:
    """One task try's usage (the columns of the usage table, in order)."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    tags: str
    documents: int
    scored: int
    skipped: int
    failed: int
    input_tokens: int
    output_tokens: int
    requests: int
    rate_limited: int
    retries: int
    started_at: str | None
    ended_at: str | None
    outcome: str

    @classmethod
    def of_try(
        cls,
        *,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: int,
        try_number: int,
        tags: tuple[str, ...] | list[str],
        figures: dict[str, Any],
        started_at: str | None,
        ended_at: str | None,
        outcome: str,
    ) -> UsageRow:
        """
        Build a row from a run's figures (``ScoringOutcome.counts()``: the manifest's and the asset event's).

        :param outcome: one of :data:`USAGE_OUTCOMES`.
        """
        if outcome not in USAGE_OUTCOMES:
            raise ValueError(f"outcome must be one of {USAGE_OUTCOMES}, got {outcome!r}")
        return cls(
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            map_index=map_index,
            try_number=try_number,
            tags=json.dumps(list(tags)),
            documents=int(figures["documents"]),
            scored=int(figures["scored"]),
            skipped=int(figures["skipped"]),
            failed=int(figures["failed"]),
            input_tokens=int(figures["input_tokens"]),
            output_tokens=int(figures["output_tokens"]),
            requests=int(figures["requests"]),
            rate_limited=int(figures["rate_limited"]),
            retries=int(figures["retries"]),
            started_at=started_at,
            ended_at=ended_at,
            outcome=outcome,
        )


USAGE_COLUMNS = tuple(column.name for column in fields(UsageRow))
assert USAGE_TABLE.names == USAGE_COLUMNS  # one description of the columns: the row and the table agree


class UsageTable:
    """
    Write task tries' usage rows through a ``DbApiHook`` (creating the table when missing).

    :param sql_conn_id: a connection whose hook is a common.sql ``DbApiHook``.
    :param table: the usage table, ``name`` or ``schema.name``.
    """

    def __init__(self, sql_conn_id: str, table: str = DEFAULT_USAGE_TABLE) -> None:
        self.sql_conn_id = sql_conn_id
        self.table = validate_table_name(table, "usage_table")

    def record(self, row: UsageRow) -> None:
        """Create the table when missing (through the database's dialect), then replace the try's row with ``row``."""
        with WarehouseWriter(self.sql_conn_id) as writer:
            dialect = writer.dialect
            mark = dialect.placeholder
            key = " AND ".join(f"{column} = {mark}" for column in USAGE_TABLE.key)
            values = [
                dialect.bind_timestamp(datetime.fromisoformat(value)) if name in _TIMES and value else value
                for name, value in zip(USAGE_COLUMNS, astuple(row))
            ]

            # DDL outside the row's transaction, as for the other tables: Snowflake and MySQL commit
            # DDL by themselves, and fakesnow refuses it after BEGIN.
            writer.ensure_table(self.table, USAGE_TABLE)

            def replace(cursor: Any) -> None:
                cursor.execute(f"DELETE FROM {self.table} WHERE {key}", values[: len(USAGE_TABLE.key)])
                cursor.execute(dialect.insert(self.table, USAGE_COLUMNS, 1), values)

            writer.run_in_transaction(replace)


_TIMES = ("started_at", "ended_at")
