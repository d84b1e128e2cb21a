"""DeepgramNewObjectsTrigger: run() over real files and a real SQLite load history, with a triggerer restart between.

The trigger is rebuilt from its serialized kwargs for each "triggerer" (as a triggerer does after a
restart); events are taken from run() with a deadline, so "no event" is a real wait of two polls.
"""

from __future__ import annotations

import asyncio
import json
import time

from airflow.providers.common.compat.triggers import BaseEventTrigger

from airflow_provider_dgsentiment.triggers.new_objects import DeepgramNewObjectsTrigger
from tests.conftest import SQL_CONN_ID
from tests.support.operator_runs import make_operator, run

POLL = 0.2


def events_within(kwargs: dict, seconds: float) -> list[dict]:
    """Run a trigger built from ``kwargs`` for ``seconds``; return the payloads it yielded (then it is cancelled)."""
    trigger = DeepgramNewObjectsTrigger(**json.loads(json.dumps(kwargs)))
    fired: list[dict] = []

    async def watch() -> None:
        async for event in trigger.run():
            fired.append(event.payload)

    async def bounded() -> None:
        try:
            await asyncio.wait_for(watch(), seconds)
        except asyncio.TimeoutError:
            pass

    asyncio.run(bounded())
    return fired


def test_fires_once_per_batch_of_new_objects_across_restarts(deepgram_conn, inbox, sqlite_db):
    assert issubclass(DeepgramNewObjectsTrigger, BaseEventTrigger)
    source = f"file://{inbox}/*.txt"
    classpath, kwargs = DeepgramNewObjectsTrigger(
        source=source, sql_conn_id=SQL_CONN_ID, poll_interval=POLL
    ).serialize()
    assert classpath == "airflow_provider_dgsentiment.triggers.new_objects.DeepgramNewObjectsTrigger"

    (first,) = events_within(kwargs, 3)
    assert first["status"] == "success" and first["count"] == 3
    assert first["uris"] == sorted(f"file://{inbox}/{name}" for name in ("a.txt", "b.txt", "c.txt"))

    # The triggerer restarts: the same objects are not announced again.
    assert events_within(kwargs, 5 * POLL) == []

    # A new object and a changed one: one event naming both.
    (inbox / "d.txt").write_text("A new review: the service was excellent.")
    time.sleep(0.01)
    (inbox / "a.txt").write_text("Changed: this is now a much worse experience than before.")
    (second,) = events_within(kwargs, 3)
    assert second["uris"] == [f"file://{inbox}/a.txt", f"file://{inbox}/d.txt"]

    # The scheduled run scores them; the load history then holds them: still nothing new.
    run(make_operator(source=source, sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    assert events_within(kwargs, 5 * POLL) == []

    # Another watch (another asset) over the same source announces on its own; the scored objects are not new.
    assert events_within({**kwargs, "watch": "other"}, 5 * POLL) == []
    (inbox / "e.txt").write_text("Yet another one, quite neutral.")
    assert [event["uris"] for event in events_within({**kwargs, "watch": "other"}, 3)] == [[f"file://{inbox}/e.txt"]]
