"""DeepgramSentimentSensor with deferrable=True: poke once, defer, resume with the URIs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
from airflow_provider_dgsentiment.triggers.sentiment import DeepgramObjectsTrigger


def make_sensor(path, **kwargs) -> DeepgramSentimentSensor:
    return DeepgramSentimentSensor(
        task_id="sense", source=path, deferrable=True, poke_interval=0.05, timeout=30, **kwargs
    )


def first_event(trigger, timeout=10.0):
    async def take():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(take(), timeout))


def test_objects_already_there_return_without_deferring(tmp_path):
    (tmp_path / "a.txt").write_text("Lovely.")
    sensor = make_sensor(f"file://{tmp_path}/*.txt")
    assert sensor.execute({}) == [f"file://{tmp_path}/a.txt"]


def test_defers_to_the_objects_trigger_then_returns_its_uris(tmp_path):
    sensor = make_sensor(f"file://{tmp_path}/*.txt", min_objects=2)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, DeepgramObjectsTrigger)
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_dgsentiment.triggers.sentiment.DeepgramObjectsTrigger"
    assert kwargs["source"] == [f"file://{tmp_path}/*.txt"]
    assert kwargs["min_objects"] == 2
    json.dumps(kwargs)  # plain JSON only

    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("Fine.")
    event = first_event(DeepgramObjectsTrigger(**kwargs))
    assert sensor.execute_complete({}, event) == [f"file://{tmp_path}/a.txt", f"file://{tmp_path}/b.txt"]


def test_error_events_raise(tmp_path):
    sensor = make_sensor(f"file://{tmp_path}/*.txt")
    with pytest.raises(DeepgramError, match="Waiting for objects at .* failed in the triggerer: storage unreachable"):
        sensor.execute_complete({}, {"status": "error", "message": "storage unreachable"})
    with pytest.raises(DeepgramConfigurationError, match="bad table"):
        sensor.execute_complete(
            {}, {"status": "error", "message": "bad table", "error_class": "DeepgramConfigurationError"}
        )


def test_nightly_dag_with_deferrable_sensor_and_operator_writes_the_same_rows(
    airflow_db, deepgram_conn, tmp_path, monkeypatch, log_text
):
    """The nightly example through dag.test(): sensor and mapped operator deferrable vs in the worker."""
    from tests.support.dags import load_dag

    folder = tmp_path / "in"
    folder.mkdir()
    texts = {
        "a.txt": "The team was wonderful and helpful. I am delighted.",
        "b.txt": "The product broke after a day. Terrible and useless.",
        "c.txt": "The parcel arrived on Monday.",
    }
    for name, text in texts.items():
        (folder / name).write_text(text)
    rows = {}
    for mode in ("worker", "deferrable"):
        db = tmp_path / f"{mode}.db"
        monkeypatch.setenv("AIRFLOW_CONN_DGSENTIMENT_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
        dag = load_dag("deepgram_sentiment_nightly.py")
        deferrable = mode == "deferrable"
        dag.get_task("wait_for_texts").deferrable = deferrable
        before = log_text()
        dag_run = dag.test(run_conf={"source": f"file://{folder}/*.txt", "shard_size": 2, "deferrable": deferrable})
        after = log_text()
        assert dag_run.state == "success", after[-3000:]
        inline_triggers = after.count("[DAG TEST] running trigger in line") - before.count(
            "[DAG TEST] running trigger in line"
        )
        # Two mapped shards (3 documents, shard_size 2) deferred; the sensor found the files on its first poke.
        assert inline_triggers == (2 if deferrable else 0)
        with sqlite3.connect(db) as connection:
            rows[mode] = {
                "averages": connection.execute(
                    "SELECT source, fingerprint, sentiment, sentiment_score, segment_count, input_tokens "
                    "FROM deepgram_sentiment_averages ORDER BY source"
                ).fetchall(),
                "segments": connection.execute(
                    "SELECT source, segment_index, text, start_word, end_word, sentiment, sentiment_score "
                    "FROM deepgram_sentiment_segments ORDER BY source, segment_index"
                ).fetchall(),
            }
    assert rows["deferrable"] == rows["worker"]
    assert len(rows["deferrable"]["averages"]) == 3
    assert [row[2] for row in rows["deferrable"]["averages"]] == ["positive", "negative", "neutral"]


# ---------------------------------------------------------------------- the trigger's own deadline


def test_the_trigger_ends_with_a_timeout_event_at_the_sensors_deadline(tmp_path):
    """The trigger carries the sensor's timeout: it ends by itself, though its poke interval is longer."""
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    sensor = DeepgramSentimentSensor(
        task_id="sense", source=f"file://{tmp_path}/*.txt", deferrable=True, poke_interval=600, timeout=1
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    kwargs = deferred.value.trigger.serialize()[1]
    assert kwargs["deadline"]
    started = time.monotonic()
    event = first_event(DeepgramObjectsTrigger(**kwargs), timeout=20)
    assert time.monotonic() - started < 10
    assert event["status"] == "error" and event["error_class"] == "AirflowSensorTimeout"
    with pytest.raises(AirflowSensorTimeout, match="0 object\\(s\\) to score, not 1"):
        sensor.execute_complete({}, event)


def test_a_deferrable_sensor_times_out_under_dag_test(airflow_db, tmp_path, monkeypatch, log_text):
    """``dag.test()`` runs the trigger in line: the sensor's timeout=2 ends it, poke_interval=600 notwithstanding."""
    from tests.support.dags import load_dag

    (tmp_path / "in").mkdir()
    monkeypatch.setenv(
        "AIRFLOW_CONN_DGSENTIMENT_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")})
    )
    dag = load_dag("deepgram_sentiment_nightly.py")
    sensor = dag.get_task("wait_for_texts")
    sensor.deferrable, sensor.poke_interval, sensor.timeout, sensor.soft_fail = True, 600, 2, False
    started = time.monotonic()
    dag_run = dag.test(run_conf={"source": f"file://{tmp_path}/in/*.txt"})
    elapsed = time.monotonic() - started
    assert dag_run.state == "failed", log_text()[-3000:]
    assert elapsed < 90, f"the sensor waited {elapsed:.0f} s"
    assert "AirflowSensorTimeout" in log_text()
    print(f"\ndag.test() of a deferrable sensor with timeout=2, poke_interval=600: failed after {elapsed:.1f} s")
