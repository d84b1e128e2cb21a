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
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.storage.warehouse import WarehouseWriter, validate_table_name

if TYPE_CHECKING:
    pass

DEFAULT_USAGE_TABLE = "deepgram_sentiment_usage"
#: How a try ended.
USAGE_OUTCOMES = ("success", "failed", "stopped", "error")

# Types that mean the same on SQLite and PostgreSQL (as in the warehouse's tables).
_USAGE_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    dag_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    map_index INTEGER NOT NULL,
    try_number INTEGER NOT NULL,
    tags TEXT NOT NULL,
    documents INTEGER NOT NULL,
    scored INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    requests INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE,
    ended_at TIMESTAMP WITH TIME ZONE,
    outcome TEXT NOT NULL,
    PRIMARY KEY (dag_id, task_id, run_id, map_index, try_number)
)"""


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
_KEY_COLUMNS = ("dag_id", "task_id", "run_id", "map_index", "try_number")


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
        """Create the table when missing, then replace the try's row with ``row`` (one transaction)."""
        values = astuple(row)
        with WarehouseWriter(self.sql_conn_id) as writer:
            mark = writer.placeholder
            key = " AND ".join(f"{column} = {mark}" for column in _KEY_COLUMNS)

            def replace(cursor: Any) -> None:
                cursor.execute(_USAGE_DDL.format(table=self.table))
                cursor.execute(f"DELETE FROM {self.table} WHERE {key}", values[: len(_KEY_COLUMNS)])
                cursor.execute(
                    f"INSERT INTO {self.table} ({', '.join(USAGE_COLUMNS)}) "
                    f"VALUES ({', '.join([mark] * len(USAGE_COLUMNS))})",
                    values,
                )

            writer.run_in_transaction(replace)
