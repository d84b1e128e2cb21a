"""Running the operator in a test: build it, run it in the worker or deferred, read the tables."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.providers.common.compat.sdk import (
    DAG,
    TaskDeferred,
)

from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator
from tests.conftest import airflow_serde

RUN_ID = "manual__2024-05-01T00:00:00+00:00"


def make_operator(**kwargs) -> DeepgramSentimentOperator:
    """Build the operator inside a DAG, as users do."""
    kwargs.setdefault("task_id", "score")
    with DAG(dag_id="test_sentiment_operator", schedule=None):
        return DeepgramSentimentOperator(**kwargs)


def run(operator: DeepgramSentimentOperator, *, params: dict | None = None, map_index: int = -1):
    """Render the templated fields and call execute, the way the task runner does."""
    context = {"run_id": RUN_ID, "ti": SimpleNamespace(map_index=map_index), "params": params or {}}
    operator.render_template_fields(context)
    return operator.execute(context)


def requests_during(emulator, action):
    """Run ``action()``; return ``(its value or the exception it raised, requests the emulator received)``."""
    before = emulator.stats()["requests"]
    try:
        value = action()
    except Exception as exc:
        value = exc
    return value, emulator.stats()["requests"] - before


def table_rows(db: Path, table: str, order: str = "source") -> list[dict]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(f"SELECT * FROM {table} ORDER BY {order}")]


def table_count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def defer(operator) -> TaskDeferred:
    """Run ``execute`` and return the ``TaskDeferred`` it raises."""
    with pytest.raises(TaskDeferred) as excinfo:
        run(operator)
    return excinfo.value


def trigger_event(deferred: TaskDeferred) -> dict:
    """Rebuild the trigger from its stored form (as the triggerer does), run it, return its one event."""
    from airflow.providers.common.compat.module_loading import import_string

    serialize, deserialize = airflow_serde()

    classpath, kwargs = deferred.trigger.serialize()
    trigger = import_string(classpath)(**deserialize(serialize(kwargs)))

    async def events() -> list:
        return [event async for event in trigger.run()]

    fired = asyncio.run(events())
    assert len(fired) == 1
    return json.loads(json.dumps(fired[0].payload))


def resume(deferred: TaskDeferred, event: dict, **operator_kwargs):
    """Call the resume method on a fresh operator, as a worker does after the trigger fired."""
    operator = make_operator(**operator_kwargs)
    operator.render_template_fields(context())
    return getattr(operator, deferred.method_name)(context(), event=event, **(deferred.kwargs or {}))


def run_deferred(**operator_kwargs):
    """execute -> TaskDeferred -> trigger -> execute_complete; return the XCom value."""
    deferred = defer(make_operator(deferrable=True, **operator_kwargs))
    return resume(deferred, trigger_event(deferred), deferrable=True, **operator_kwargs)


def without_run_specifics(value):
    """Drop what differs between two runs on the same input (request ids, creation times)."""
    if isinstance(value, dict):
        return {key: without_run_specifics(item) for key, item in value.items() if key not in ("request_id", "created")}
    if isinstance(value, list):
        return [without_run_specifics(item) for item in value]
    return value


def context(map_index: int = -1) -> dict:
    return {"run_id": RUN_ID, "ti": SimpleNamespace(map_index=map_index), "params": {}}
