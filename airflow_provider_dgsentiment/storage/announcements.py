"""Which new or changed objects an event trigger has announced: a small table that survives triggerer restarts.

An :class:`~airflow_provider_dgsentiment.triggers.new_objects.DeepgramNewObjectsTrigger` fires an
event for objects the load history says the operator would read (new, or changed since a
complete read); it records here each object and version it announced, per watch, so a restarted
triggerer (or the next look before the scheduled run has scored them) does not fire for them
again. A changed object (another version) is announced again::

    deepgram_sentiment_announced   one row per (watch, object): the version last announced, and when

It lives in the SQL database of the operator's tables (the load history's database), written
through the same kind of connection; values are bound as parameters. Without a SQL database (an
operator with ``results_path`` alone) both the load history and the announcements live beside the
results (:mod:`~airflow_provider_dgsentiment.storage.object_history`, ``_load_history/announced/``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.storage.load_history import LoadHistory
from airflow_provider_dgsentiment.storage.object_history import ObjectLoadHistory
from airflow_provider_dgsentiment.storage.sources import DocumentSource, plan_object_reads, results_root, source_entries
from airflow_provider_dgsentiment.storage.warehouse import (
    DEFAULT_AVERAGES_TABLE,
    LOOKUP_BATCH_SIZE,
    WarehouseWriter,
    batched,
    validate_table_name,
)

DEFAULT_ANNOUNCED_TABLE = "deepgram_sentiment_announced"

_ANNOUNCED_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    watch TEXT NOT NULL,
    object TEXT NOT NULL,
    version TEXT NOT NULL,
    announced_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (watch, object)
)"""


def new_unannounced_objects(
    watch: str,
    source: Any,
    conn_id: str | None,
    *,
    sql_conn_id: str | None = None,
    averages_table: str = DEFAULT_AVERAGES_TABLE,
    announced_table: str = DEFAULT_ANNOUNCED_TABLE,
    results_path: str | None = None,
    results_conn_id: str | None = None,
) -> dict[str, str]:
    """
    The objects the operator would read (load history) that ``watch`` has not announced at this version.

    Blocking (a listing and a few SELECTs, or a few GETs of the history beside the results): a
    trigger calls it in a thread. ``results_path`` is used when there is no ``sql_conn_id``.
    :return: ``{object: version}`` in listing order.
    """
    table = validate_table_name(announced_table, "announced_table")
    objects = DocumentSource(entries=tuple(str(entry) for entry in source_entries(source)), conn_id=conn_id)
    if not sql_conn_id:
        history = _object_history(results_path, results_conn_id)
        history.prepare(documents=False, compact=False)
        plan, _, _ = plan_object_reads(objects, history, keep_missing=False)
        found = {name: str(version or "") for name, version in plan.to_read.items()}
        known = history.announced(watch, list(found)) if found else {}
        return {name: version for name, version in found.items() if known.get(name) != version}
    with WarehouseWriter(sql_conn_id, averages_table=averages_table) as writer:
        plan, _, _ = plan_object_reads(objects, LoadHistory(writer), keep_missing=False)
        listing = {name: str(version or "") for name, version in plan.to_read.items()}
        if not listing:
            return {}
        announced = _announced(writer, table, watch, list(listing))
    return {name: version for name, version in listing.items() if announced.get(name) != version}


def announce(
    watch: str,
    objects: Mapping[str, str],
    *,
    sql_conn_id: str | None = None,
    announced_table: str = DEFAULT_ANNOUNCED_TABLE,
    results_path: str | None = None,
    results_conn_id: str | None = None,
) -> None:
    """Record ``objects`` (``{object: version}``) as announced by ``watch`` (one transaction, or one new object)."""
    if not sql_conn_id:
        _object_history(results_path, results_conn_id).announce(watch, objects)
        return
    table = validate_table_name(announced_table, "announced_table")
    now = datetime.now(timezone.utc).isoformat()
    with WarehouseWriter(sql_conn_id) as writer:
        mark = writer.placeholder

        def replace(cursor: Any) -> None:
            cursor.execute(_ANNOUNCED_DDL.format(table=table))
            for name, version in objects.items():
                cursor.execute(f"DELETE FROM {table} WHERE watch = {mark} AND object = {mark}", (watch, name))
                cursor.execute(
                    f"INSERT INTO {table} (watch, object, version, announced_at) VALUES ({mark}, {mark}, {mark}, {mark})",
                    (watch, name, version, now),
                )

        writer.run_in_transaction(replace)


def _object_history(results_path: str | None, results_conn_id: str | None) -> ObjectLoadHistory:
    if not results_path:
        raise DeepgramConfigurationError("watching for new objects needs sql_conn_id or results_path")
    return ObjectLoadHistory(results_root(results_path, results_conn_id or None))


def _announced(writer: WarehouseWriter, table: str, watch: str, names: list[str]) -> dict[str, str]:
    mark = writer.placeholder
    cursor = writer.connection.cursor()
    try:
        cursor.execute(_ANNOUNCED_DDL.format(table=table))
        writer.connection.commit()
        found: dict[str, str] = {}
        for batch in batched(names, LOOKUP_BATCH_SIZE):
            cursor.execute(
                f"SELECT object, version FROM {table} WHERE watch = {mark} AND object IN ({', '.join([mark] * len(batch))})",
                (watch, *batch),
            )
            found.update({str(name): str(version) for name, version in cursor.fetchall()})
        return found
    finally:
        cursor.close()
