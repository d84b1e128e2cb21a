"""DeepgramSentimentTrigger and DeepgramObjectsTrigger: plain-JSON kwargs, one terminal event, results stored by the trigger."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import (
    DeepgramAPIError,
)
from airflow_provider_dgsentiment.storage import sources as sources_module
from airflow_provider_dgsentiment.triggers.sentiment import DeepgramObjectsTrigger, DeepgramSentimentTrigger
from tests.conftest import POSITIVE, SQL_CONN_ID, airflow_serde
from tests.support.triggers import only_event

TRIGGER_PATH = "airflow_provider_dgsentiment.triggers.sentiment.DeepgramSentimentTrigger"
OBJECTS_TRIGGER_PATH = "airflow_provider_dgsentiment.triggers.sentiment.DeepgramObjectsTrigger"
SQL = {
    "sql_conn_id": SQL_CONN_ID,
    "segments_table": "deepgram_sentiment_segments",
    "averages_table": "deepgram_sentiment_averages",
    "dag_id": "d",
    "task_id": "t",
    "run_id": "r",
}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def uri(path: Path) -> str:
    return f"file://{path}"


def score_trigger(entries: list[str], *, xcom_output: str = "full", **kwargs) -> DeepgramSentimentTrigger:
    kwargs.setdefault("deepgram_conn_id", "deepgram_default")
    options = {"progress_interval": 30.0, **kwargs.pop("options", {})}
    return DeepgramSentimentTrigger(source={"entries": entries}, xcom_output=xcom_output, options=options, **kwargs)


def set_connection(monkeypatch, host: str, key: str | None, **extra) -> None:
    conn = {"conn_type": "deepgram", "host": host, "extra": extra}
    if key is not None:
        conn["password"] = key
    monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", json.dumps(conn))


def items(event: dict) -> list[dict]:
    return event["outcome"]["items"]


# ---------------------------------------------------------------------- serialisation


def test_serialize_is_exact_and_round_trips():
    trigger = DeepgramSentimentTrigger(
        deepgram_conn_id="dg_conn",
        source={"entries": ["s3://bucket/in/*.txt"], "conn_id": "aws_default", "shard": [1, 4]},
        xcom_output="manifest",
        options={"language": "en", "max_concurrency": 4},
        warehouse=SQL,
        results={"results_path": "s3://bucket/results", "conn_id": None, "task_id": "t", "map_index": 3},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == TRIGGER_PATH
    assert kwargs == {
        "deepgram_conn_id": "dg_conn",
        "source": {"entries": ["s3://bucket/in/*.txt"], "conn_id": "aws_default", "shard": [1, 4]},
        "xcom_output": "manifest",
        "options": {"language": "en", "max_concurrency": 4},
        "warehouse": SQL,
        "results": {"results_path": "s3://bucket/results", "conn_id": None, "task_id": "t", "map_index": 3},
    }
    # Through JSON and through Airflow's own serde (what the task runner stores), then re-instantiated.
    from airflow.providers.common.compat.module_loading import import_string

    serialize, deserialize = airflow_serde()

    for encoded in (json.loads(json.dumps(kwargs)), deserialize(serialize(kwargs))):
        again = import_string(classpath)(**encoded)
        assert isinstance(again, DeepgramSentimentTrigger)
        assert again.serialize() == (classpath, kwargs)


def test_objects_trigger_serialize_is_exact_and_round_trips():
    trigger = DeepgramObjectsTrigger(
        source=["file:///data/in/*.txt", "s3://aws_x@bucket/in/"],
        source_conn_id=None,
        min_objects=3,
        sql_conn_id="warehouse",
        averages_table="analytics.averages",
        poke_interval=30,
        reading={"format": "jsonl", "text_field": "body", "id_field": "id", "key_namespace": "tickets"},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == OBJECTS_TRIGGER_PATH
    assert kwargs == {
        "source": ["file:///data/in/*.txt", "s3://aws_x@bucket/in/"],
        "source_conn_id": None,
        "min_objects": 3,
        "sql_conn_id": "warehouse",
        "averages_table": "analytics.averages",
        "poke_interval": 30.0,
        "return_uris": True,
        "reading": {"format": "jsonl", "text_field": "body", "id_field": "id", "key_namespace": "tickets"},
    }
    assert DeepgramObjectsTrigger(**json.loads(json.dumps(kwargs))).serialize() == (classpath, kwargs)
    assert DeepgramObjectsTrigger(source="file:///x/*.txt").serialize()[1]["source"] == "file:///x/*.txt"


def test_objects_trigger_turns_object_storage_paths_into_uris():
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    paths = [ObjectStoragePath("file:///data/in/a.txt"), ObjectStoragePath("s3://aws_x@bucket/in/b.txt")]
    assert DeepgramObjectsTrigger(source=paths).serialize()[1]["source"] == [
        "file:///data/in/a.txt",
        "s3://aws_x@bucket/in/b.txt",  # the connection id stays in the URI
    ]


# ---------------------------------------------------------------------- scoring events


def test_success_event_carries_the_outcome_in_listing_order(deepgram_conn, inbox):
    (inbox / "empty.txt").write_text("  \n\t")
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger([f"file://{inbox}/*.txt"]))
    assert deepgram_conn.stats()["requests"] - before == 3  # the empty object costs no request
    assert event["status"] == "success"
    assert event["message"] == "Scored 3 of 4 document(s): 0 failed, 1 skipped, 0 stored"
    outcome = event["outcome"]
    assert (outcome["total"], outcome["scored"], outcome["skipped"], outcome["failed"]) == (4, 3, 1, 0)
    assert outcome["systemic_error"] is None
    assert outcome["sentiment_counts"] == {"positive": 1, "neutral": 1, "negative": 1}
    assert outcome["input_tokens"] > 0 and outcome["output_tokens"] > 0
    listed = [uri(inbox / name) for name in ("a.txt", "b.txt", "c.txt", "empty.txt")]
    assert [item["source"] for item in items(event)] == listed
    assert items(event)[3] == {"source": listed[3], "status": "skipped", "reason": "empty document"}
    result = items(event)[0]
    assert result["results"]["sentiments"]["average"]["sentiment"] == "positive"
    segments = result["results"]["sentiments"]["segments"]
    assert " ".join(segment["text"] for segment in segments) == POSITIVE
    assert outcome["inputs"] == [["file", f"{inbox}/{name}"] for name in ("a.txt", "b.txt", "c.txt", "empty.txt")]


def test_with_sql_the_trigger_stores_the_rows_and_the_event_carries_no_results(deepgram_conn, tmp_path, sqlite_db):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        (folder / f"{i:03}.txt").write_text(f"Review {i}: {'great value, I love it' if i % 2 else 'awful'}.")
    event = only_event(score_trigger([f"file://{folder}/"], xcom_output="manifest", warehouse=SQL))
    encoded = json.dumps(event)
    assert len(encoded) < 4096, len(encoded)  # counts, not 300 results
    assert "segments" not in encoded and "great value" not in encoded
    assert event["outcome"]["items"] is None
    assert (event["outcome"]["scored"], event["outcome"]["stored"]) == (300, 300)
    with sqlite3.connect(sqlite_db) as connection:
        rows = connection.execute(
            "SELECT COUNT(DISTINCT source), MIN(run_id), MAX(task_id) FROM deepgram_sentiment_averages"
        )
        assert rows.fetchone() == (300, "r", "t")


def test_reads_run_in_threads_never_on_the_event_loop(deepgram_conn, inbox, monkeypatch):
    on_loop: list[str] = []
    real_read = sources_module.read_document

    def watched_read(path: str, conn_id: str | None) -> str:
        try:
            asyncio.get_running_loop()
            on_loop.append(str(path))  # called on an event loop: must never happen
        except RuntimeError:
            pass
        time.sleep(0.01)
        return real_read(path, conn_id)

    monkeypatch.setattr(sources_module, "read_document", watched_read)
    for i in range(30):
        (inbox / f"more{i:02}.txt").write_text(f"Text {i} is nice.")
    event = only_event(score_trigger([f"file://{inbox}/*.txt"], xcom_output="summary"))
    assert event["outcome"]["scored"] == 33
    assert on_loop == []
    assert threading.active_count() < 60


def test_wrong_key_gives_a_systemic_401_and_stops_sending(deepgram_conn, monkeypatch, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(40):
        (folder / f"d{i:02}.txt").write_text(f"Document {i} is fine.")
    set_connection(monkeypatch, deepgram_conn.url, "wrong-key-0000")
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger([f"file://{folder}/*.txt"], options={"max_concurrency": 2}))
    sent = deepgram_conn.stats()["requests"] - before
    assert 1 <= sent <= 2, f"{sent} requests sent after a 401"
    outcome = event["outcome"]
    systemic = outcome["systemic_error"]
    assert systemic["error_class"] == "DeepgramAuthenticationError"
    assert (systemic["status"], systemic["err_code"]) == (401, "INVALID_AUTH")
    assert outcome["failed"] == sent and outcome["scored"] == 0
    assert len([item for item in items(event) if item is not None]) == sent  # the rest were never sent
    assert "wrong-key-0000" not in json.dumps(event)
    assert event["message"].endswith(f"stopped after: {DeepgramAPIError.from_dict(systemic)}")


def test_timeouts_are_reported_per_document(deepgram_emulator_factory, monkeypatch, inbox):
    slow = deepgram_emulator_factory(spike_rate=1.0, spike_latency=2.0, seed=1)
    set_connection(monkeypatch, slow.url, slow.api_key, timeout=0.2, max_retries=0)
    started = time.monotonic()
    event = only_event(score_trigger([uri(inbox / "a.txt"), uri(inbox / "b.txt")], xcom_output="summary"))
    assert time.monotonic() - started < 1.8  # gave up at the client timeout, did not wait for the answers
    outcome = event["outcome"]
    assert outcome["systemic_error"] is None and outcome["failed"] == 2
    for name, reason in outcome["failures"]:
        assert name in (uri(inbox / "a.txt"), uri(inbox / "b.txt"))
        assert "CLIENT_TIMEOUT" in reason and "no response within 0.2s" in reason


def test_missing_and_undecodable_objects_are_failures_naming_why(deepgram_conn, inbox):
    (inbox / "latin1.txt").write_bytes("Café crème".encode("latin-1"))
    entries = [uri(inbox / "gone.txt"), uri(inbox / "a.txt"), uri(inbox / "latin1.txt")]
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger(entries))
    assert deepgram_conn.stats()["requests"] - before == 1
    failures = dict(event["outcome"]["failures"])
    assert failures[entries[0]] == "object not found"
    assert failures[entries[2]].startswith("not valid UTF-8 text (byte 0xe9 at offset 3)")
    assert event["message"] == "Scored 1 of 3 document(s): 2 failed, 0 skipped, 0 stored"


def test_only_empty_objects_send_nothing(deepgram_conn, tmp_path):
    (tmp_path / "e1.txt").write_text("")
    (tmp_path / "e2.txt").write_text("\n \n")
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger([f"file://{tmp_path}/*.txt"]))
    assert deepgram_conn.stats()["requests"] - before == 0
    assert items(event) == [
        {"source": uri(tmp_path / name), "status": "skipped", "reason": "empty document"}
        for name in ("e1.txt", "e2.txt")
    ]


def test_more_documents_than_the_bound_is_refused_before_any_request(deepgram_conn, tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.txt").write_text("Fine.")
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger([f"file://{tmp_path}/*.txt"], options={"max_documents": 4}))
    assert deepgram_conn.stats()["requests"] - before == 0
    assert event["status"] == "error" and event["error_class"] == "DeepgramConfigurationError"
    assert (
        "names 5 documents, more than the 4 documents a deferred run that stores nowhere can carry back"
        in event["message"]
    )
    assert "give sql_conn_id or results_path and xcom_output='manifest'" in event["message"]


def test_a_source_matching_nothing_is_an_error_event(deepgram_conn, tmp_path):
    event = only_event(score_trigger([f"file://{tmp_path}/nothing/*.txt"]))
    assert event["status"] == "error"
    assert f"file://{tmp_path}/nothing/*.txt matched no objects" in event["message"]


def test_unknown_connection_is_an_error_event(monkeypatch, inbox):
    event = only_event(score_trigger([uri(inbox / "a.txt")], deepgram_conn_id="no_such_deepgram_conn"))
    assert event["status"] == "error"
    assert event["error"] is None
    assert event["error_class"] == "AirflowNotFoundException"
    assert "no_such_deepgram_conn" in event["message"]


def test_connection_without_key_is_a_configuration_error_event(monkeypatch, deepgram_emulator, inbox):
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    set_connection(monkeypatch, deepgram_emulator.url, None)
    event = only_event(score_trigger([uri(inbox / "a.txt")]))
    assert event["status"] == "error"
    assert event["error_class"] == "DeepgramConfigurationError"
    assert event["message"].startswith("No Deepgram API key")


# ---------------------------------------------------------------------- waiting for objects


def test_objects_trigger_fires_when_enough_objects_exist(inbox):
    (inbox / ".hidden.txt").write_text("not counted")
    event = only_event(DeepgramObjectsTrigger(source=f"file://{inbox}/*.txt", min_objects=3, poke_interval=0.05))
    assert event["status"] == "success"
    assert event["uris"] == [uri(inbox / name) for name in ("a.txt", "b.txt", "c.txt")]
    assert (event["matched"], event["scored"]) == (3, 0)


def test_objects_trigger_keeps_waiting_then_fires_when_objects_arrive(inbox):
    trigger = DeepgramObjectsTrigger(source=f"file://{inbox}/", min_objects=5, poke_interval=0.05)

    async def scenario() -> tuple[bool, dict]:
        run = trigger.run()
        waiting = asyncio.ensure_future(anext(run))
        try:
            await asyncio.wait_for(asyncio.shield(waiting), timeout=0.5)
            fired_early = True
        except asyncio.TimeoutError:
            fired_early = False
        (inbox / "d.txt").write_text("four")
        (inbox / "sub").mkdir()
        (inbox / "sub" / "e.txt").write_text("five")
        event = await asyncio.wait_for(waiting, timeout=5)
        with pytest.raises(StopAsyncIteration):
            await anext(run)
        return fired_early, event.payload

    fired_early, payload = asyncio.run(scenario())
    assert fired_early is False
    assert payload["status"] == "success"
    assert payload["uris"][-2:] == [uri(inbox / "d.txt"), uri(inbox / "sub" / "e.txt")]
    assert len(payload["uris"]) == 5


def test_objects_trigger_does_not_fire_while_nothing_matches(tmp_path):
    trigger = DeepgramObjectsTrigger(source=f"file://{tmp_path}/nothing/*.txt", min_objects=1, poke_interval=0.05)

    async def first_event():
        return await anext(trigger.run())

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(asyncio.wait_for(first_event(), timeout=0.4))


def test_objects_trigger_reports_a_bad_path_as_an_error_event():
    event = only_event(DeepgramObjectsTrigger(source="   ", min_objects=1, poke_interval=0.05))
    assert event["status"] == "error"
    assert event["error_class"] == "DeepgramConfigurationError"
    assert "source must name a URI" in event["message"]


def test_objects_trigger_counts_only_unscored_objects(inbox, tmp_path, monkeypatch):
    """With sql_conn_id, objects the load history holds unchanged do not count."""
    from tests.support.sensor_runs import store_loaded

    db = tmp_path / "scores.db"
    monkeypatch.setenv("AIRFLOW_CONN_DGS_TRIGGER_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    store_loaded("dgs_trigger_sqlite", [uri(inbox / "a.txt"), uri(inbox / "b.txt")])
    kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": "dgs_trigger_sqlite", "poke_interval": 0.05}
    event = only_event(DeepgramObjectsTrigger(min_objects=1, **kwargs))
    assert event["status"] == "success", event
    assert event["uris"] == [uri(inbox / "c.txt")]
    assert (event["matched"], event["scored"]) == (3, 2)

    async def first_event():
        return await anext(DeepgramObjectsTrigger(min_objects=2, **kwargs).run())

    with pytest.raises(asyncio.TimeoutError):  # only one unscored object: keeps waiting
        asyncio.run(asyncio.wait_for(first_event(), timeout=0.4))
