"""DeepgramSentimentTrigger and DeepgramObjectsTrigger: serialisation, and their one event against the emulator."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import (
    DeepgramAPIError,
    DeepgramAuthenticationError,
    DeepgramConnectionError,
    DeepgramNotFoundError,
    DeepgramPaymentRequiredError,
    DeepgramRateLimitError,
    DeepgramResponseError,
    DeepgramServerError,
    DeepgramTimeoutError,
    DeepgramTokenLimitError,
    DeepgramUnsupportedLanguageError,
    make_api_error,
)
from airflow_provider_dgsentiment.triggers import sentiment as trigger_module
from airflow_provider_dgsentiment.triggers.sentiment import (
    NOT_SENT,
    READ_CONCURRENCY,
    DeepgramObjectsTrigger,
    DeepgramSentimentTrigger,
    api_error_from_dict,
)
from tests.operators.test_sentiment_operator import (  # noqa: F401  (fixtures used by name)
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    inbox,
)

TRIGGER_PATH = "airflow_provider_dgsentiment.triggers.sentiment.DeepgramSentimentTrigger"
OBJECTS_TRIGGER_PATH = "airflow_provider_dgsentiment.triggers.sentiment.DeepgramObjectsTrigger"


# ---------------------------------------------------------------------- helpers


def airflow_serde():
    """Return Airflow's ``serialize``/``deserialize``, what the task runner stores trigger kwargs with."""
    try:
        from airflow.sdk.serde import deserialize, serialize
    except ImportError:  # Airflow 2
        from airflow.serialization.serde import deserialize, serialize
    return serialize, deserialize


def all_events(trigger) -> list:
    """Run the trigger to its end and return every event it yielded."""

    async def collect() -> list:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


def only_event(trigger) -> dict:
    """Run the trigger; check it yields exactly one event and return that event's payload."""
    events = all_events(trigger)
    assert len(events) == 1, f"expected one terminal event, got {len(events)}"
    payload = events[0].payload
    json.dumps(payload)  # plain JSON, nothing pickled
    return payload


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def uri(path: Path) -> str:
    return f"file://{path}"


def score_trigger(uris: list[str], **kwargs) -> DeepgramSentimentTrigger:
    kwargs.setdefault("deepgram_conn_id", "deepgram_default")
    return DeepgramSentimentTrigger(uris=uris, **kwargs)


def set_connection(monkeypatch, host: str, key: str | None, **extra) -> None:
    conn = {"conn_type": "deepgram", "host": host, "extra": extra}
    if key is not None:
        conn["password"] = key
    monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", json.dumps(conn))


# ---------------------------------------------------------------------- serialisation


def test_serialize_is_exact_and_round_trips():
    trigger = DeepgramSentimentTrigger(
        deepgram_conn_id="dg_conn",
        uris=["file:///data/a.txt", "s3://bucket/in/b.txt"],
        source_conn_id="aws_default",
        language="en",
        max_concurrency=4,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == TRIGGER_PATH
    assert kwargs == {
        "deepgram_conn_id": "dg_conn",
        "uris": ["file:///data/a.txt", "s3://bucket/in/b.txt"],
        "source_conn_id": "aws_default",
        "language": "en",
        "max_concurrency": 4,
        "resume_state": None,
    }
    # Through JSON and through Airflow's own serde (what the task runner stores), then re-instantiated.
    from airflow.providers.common.compat.module_loading import import_string

    serialize, deserialize = airflow_serde()

    for encoded in (json.loads(json.dumps(kwargs)), deserialize(serialize(kwargs))):
        again = import_string(classpath)(**encoded)
        assert isinstance(again, DeepgramSentimentTrigger)
        assert again.serialize() == (classpath, kwargs)


def test_serialize_keeps_resume_state_unchanged():
    state = {"total": 3, "keep": "summary", "items": [None, {"source": "x", "status": "skipped"}], "pending": 1}
    classpath, kwargs = score_trigger(["file:///a.txt"], resume_state=state).serialize()
    assert kwargs["resume_state"] == state
    assert DeepgramSentimentTrigger(**json.loads(json.dumps(kwargs))).resume_state == state


def test_objects_trigger_serialize_is_exact_and_round_trips():
    trigger = DeepgramObjectsTrigger(
        path=["file:///data/in/*.txt", "s3://aws_x@bucket/in/"],
        conn_id=None,
        min_objects=3,
        sql_conn_id="warehouse",
        averages_table="analytics.averages",
        poke_interval=30,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == OBJECTS_TRIGGER_PATH
    assert kwargs == {
        "path": ["file:///data/in/*.txt", "s3://aws_x@bucket/in/"],
        "conn_id": None,
        "min_objects": 3,
        "sql_conn_id": "warehouse",
        "averages_table": "analytics.averages",
        "poke_interval": 30.0,
    }
    assert DeepgramObjectsTrigger(**json.loads(json.dumps(kwargs))).serialize() == (classpath, kwargs)
    assert DeepgramObjectsTrigger(path="file:///x/*.txt").serialize()[1]["path"] == "file:///x/*.txt"


def test_objects_trigger_turns_object_storage_paths_into_uris():
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    paths = [ObjectStoragePath("file:///data/in/a.txt"), ObjectStoragePath("s3://aws_x@bucket/in/b.txt")]
    assert DeepgramObjectsTrigger(path=paths).serialize()[1]["path"] == [
        "file:///data/in/a.txt",
        "s3://aws_x@bucket/in/b.txt",  # the connection id stays in the URI
    ]
    assert DeepgramObjectsTrigger(path=paths[0]).serialize()[1]["path"] == "file:///data/in/a.txt"


# ---------------------------------------------------------------------- scoring events


def test_success_event_in_uri_order_with_fingerprints_and_api_shaped_results(deepgram_conn, inbox):
    (inbox / "empty.txt").write_text("  \n\t")
    uris = [uri(inbox / "c.txt"), uri(inbox / "empty.txt"), uri(inbox / "a.txt"), uri(inbox / "b.txt")]
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger(uris))
    assert deepgram_conn.stats()["requests"] - before == 3  # the empty object costs no request
    assert event["status"] == "success"
    assert event["systemic_error"] is None
    assert event["message"] == "Scored 3 of 4 object(s): 0 failed, 1 skipped"
    documents = event["documents"]
    assert [document["source"] for document in documents] == uris
    assert documents[1] == {"source": uris[1], "skipped": "empty document"}
    scored = [documents[0], documents[2], documents[3]]
    assert [set(document) for document in scored] == [{"source", "fingerprint", "result"}] * 3
    assert [document["fingerprint"] for document in scored] == [sha256(NEUTRAL), sha256(POSITIVE), sha256(NEGATIVE)]
    assert [document["result"]["results"]["sentiments"]["average"]["sentiment"] for document in scored] == [
        "neutral",
        "positive",
        "negative",
    ]
    result = documents[2]["result"]
    assert set(result) == {"metadata", "results"}
    assert result["metadata"]["request_id"] and result["metadata"]["sentiment_info"]["input_tokens"] > 0
    segments = result["results"]["sentiments"]["segments"]
    assert " ".join(segment["text"] for segment in segments) == POSITIVE
    assert segments[-1]["end_word"] == len(POSITIVE.split()) - 1


def test_many_objects_over_several_batches_keep_their_order(deepgram_conn, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    texts = [f"Review {i}: {'great value, I love it' if i % 2 else 'broken on arrival, awful'}." for i in range(150)]
    uris = []
    for i, text in enumerate(texts):
        (folder / f"{i:03}.txt").write_text(text)
        uris.append(uri(folder / f"{i:03}.txt"))
    uris.reverse()  # any order given is the order reported
    texts.reverse()
    # max_concurrency=1 gives batches of 64: three batches, the next read while one is scored.
    event = only_event(score_trigger(uris, max_concurrency=1))
    documents = event["documents"]
    assert [document["source"] for document in documents] == uris
    assert [document["fingerprint"] for document in documents] == [sha256(text) for text in texts]
    assert [" ".join(s["text"] for s in d["result"]["results"]["sentiments"]["segments"]) for d in documents] == texts


def test_reads_run_in_threads_a_few_at_a_time(deepgram_conn, inbox, monkeypatch):
    loop_threads: set[int] = set()
    running = 0
    most = 0
    lock = threading.Lock()
    real_read = trigger_module.read_document

    def slow_read(path: str, conn_id: str | None) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            try:
                asyncio.get_running_loop()
                loop_threads.add(threading.get_ident())  # called on an event loop: must never happen
            except RuntimeError:
                pass
            time.sleep(0.02)
            return real_read(path, conn_id)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(trigger_module, "read_document", slow_read)
    uris = [uri(inbox / name) for name in ("a.txt", "b.txt", "c.txt")] * 10
    event = only_event(score_trigger(uris))
    assert len(event["documents"]) == 30
    assert all("result" in document for document in event["documents"])
    assert loop_threads == set()
    assert 1 < most <= READ_CONCURRENCY


def test_wrong_key_gives_a_systemic_401_and_stops_sending(deepgram_conn, monkeypatch, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    uris = []
    for i in range(40):
        (folder / f"d{i:02}.txt").write_text(f"Document {i} is fine.")
        uris.append(uri(folder / f"d{i:02}.txt"))
    set_connection(monkeypatch, deepgram_conn.url, "wrong-key-0000")
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger(uris, max_concurrency=2))
    sent = deepgram_conn.stats()["requests"] - before
    assert 1 <= sent <= 2, f"{sent} requests sent after a 401"
    assert event["status"] == "success"
    systemic = event["systemic_error"]
    assert systemic["error_class"] == "DeepgramAuthenticationError"
    assert (systemic["status"], systemic["err_code"]) == (401, "INVALID_AUTH")
    errors = [document for document in event["documents"] if "error" in document]
    assert len(errors) == sent
    assert all(document["error"]["status"] == 401 for document in errors)
    not_sent = [document for document in event["documents"] if "not_sent" in document]
    assert len(not_sent) == 40 - sent and all(document["not_sent"] == NOT_SENT for document in not_sent)
    assert [document["source"] for document in event["documents"]] == uris
    assert "wrong-key-0000" not in json.dumps(event)
    assert event["message"].endswith(f"{40 - sent} not sent after: {api_error_from_dict(systemic)}")


def test_timeouts_are_reported_per_document(deepgram_emulator_factory, monkeypatch, inbox):
    slow = deepgram_emulator_factory(spike_rate=1.0, spike_latency=2.0, seed=1)
    set_connection(monkeypatch, slow.url, slow.api_key, timeout=0.2, max_retries=0)
    uris = [uri(inbox / "a.txt"), uri(inbox / "b.txt")]
    started = time.monotonic()
    event = only_event(score_trigger(uris))
    assert time.monotonic() - started < 1.8  # gave up at the client timeout, did not wait for the answers
    assert event["status"] == "success" and event["systemic_error"] is None
    for document, source in zip(event["documents"], uris):
        assert document["source"] == source
        error = document["error"]
        assert error["error_class"] == "DeepgramTimeoutError"
        assert (error["status"], error["err_code"]) == (0, "CLIENT_TIMEOUT")
        assert "no response within 0.2s" in error["err_msg"]


def test_missing_and_undecodable_objects_are_read_errors_naming_why(deepgram_conn, inbox):
    (inbox / "latin1.txt").write_bytes("Café crème".encode("latin-1"))
    uris = [uri(inbox / "gone.txt"), uri(inbox / "a.txt"), uri(inbox / "latin1.txt")]
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger(uris))
    assert deepgram_conn.stats()["requests"] - before == 1
    gone, good, latin1 = event["documents"]
    assert gone == {"source": uris[0], "read_error": "object not found"}
    assert good["fingerprint"] == sha256(POSITIVE)
    assert latin1["source"] == uris[2]
    assert latin1["read_error"].startswith("not valid UTF-8 text (byte 0xe9 at offset 3)")
    assert event["message"] == "Scored 1 of 3 object(s): 2 failed, 0 skipped"


def test_only_empty_objects_send_nothing(deepgram_conn, tmp_path):
    (tmp_path / "e1.txt").write_text("")
    (tmp_path / "e2.txt").write_text("\n \n")
    uris = [uri(tmp_path / "e1.txt"), uri(tmp_path / "e2.txt")]
    before = deepgram_conn.stats()["requests"]
    event = only_event(score_trigger(uris))
    assert deepgram_conn.stats()["requests"] - before == 0
    assert event["documents"] == [{"source": u, "skipped": "empty document"} for u in uris]


def test_unknown_connection_is_an_error_event(monkeypatch, inbox):
    event = only_event(score_trigger([uri(inbox / "a.txt")], deepgram_conn_id="no_such_deepgram_conn"))
    assert event["status"] == "error"
    assert event["error"] is None
    assert event["error_class"] == "AirflowNotFoundException"
    assert "no_such_deepgram_conn" in event["message"]


def test_connection_without_key_is_a_configuration_error_event(monkeypatch, deepgram_emulator, inbox):
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    set_connection(monkeypatch, deepgram_emulator.url, None)
    event = only_event(score_trigger([uri(inbox / "a.txt")], resume_state={"pending": 1}))
    assert event["status"] == "error"
    assert event["error_class"] == "DeepgramConfigurationError"
    assert event["message"].startswith("No Deepgram API key")
    assert event["resume_state"] == {"pending": 1}  # echoed in error events too


def test_resume_state_comes_back_unchanged(deepgram_conn, inbox):
    state = {"total": 2, "keep": "full", "items": [{"source": "s", "status": "skipped", "reason": "r"}, None]}
    event = only_event(score_trigger([uri(inbox / "a.txt")], resume_state=state))
    assert event["resume_state"] == state
    assert "resume_state" not in only_event(score_trigger([uri(inbox / "a.txt")]))


# ---------------------------------------------------------------------- errors to dicts and back


@pytest.mark.parametrize(
    "error",
    [
        make_api_error(400, {"err_code": "TOKEN_LIMIT_EXCEEDED", "err_msg": "Too many tokens."}, request_id="r1"),
        make_api_error(
            400, {"err_code": "INVALID_QUERY_PARAMETER", "err_msg": "Request specified unsupported language: xx"}
        ),
        make_api_error(400, {"err_code": "BAD_REQUEST", "err_msg": "no"}),
        make_api_error(401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}, request_id="r2"),
        make_api_error(402, {"err_code": "ASR_PAYMENT_REQUIRED", "err_msg": "No credit."}),
        make_api_error(404, None, body_text="<html><title>Not Found</title></html>"),
        make_api_error(429, {"err_code": "TOO_MANY_REQUESTS", "err_msg": "Slow down."}, retry_after=2),
        make_api_error(503, None, body_text="upstream down"),
        DeepgramResponseError("results.sentiments is missing", status=200, request_id="r3"),
        DeepgramTimeoutError(0, "CLIENT_TIMEOUT", "no response within 0.2s: ReadTimeout"),
        DeepgramConnectionError(0, "CONNECTION_ERROR", "ConnectError: refused"),
    ],
)
def test_api_errors_survive_the_trip_through_an_event(error):
    data = json.loads(json.dumps(error.to_dict()))
    rebuilt = api_error_from_dict(data)
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    assert (rebuilt.status, rebuilt.err_code, rebuilt.err_msg, rebuilt.request_id) == (
        error.status,
        error.err_code,
        error.err_msg,
        error.request_id,
    )
    assert (rebuilt.systemic, rebuilt.retryable) == (error.systemic, error.retryable)


def test_error_classes_cover_the_whole_family():
    expected = {
        DeepgramAuthenticationError,
        DeepgramPaymentRequiredError,
        DeepgramNotFoundError,
        DeepgramRateLimitError,
        DeepgramServerError,
        DeepgramTokenLimitError,
        DeepgramUnsupportedLanguageError,
    }
    for cls in expected:
        data = {"error_class": cls.__name__, "status": 418, "err_code": "X", "err_msg": "m", "request_id": None}
        assert type(api_error_from_dict(data)) is cls


def test_unknown_error_class_falls_back_to_the_status_mapping():
    rebuilt = api_error_from_dict(
        {"error_class": "os.system", "status": 401, "err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}
    )
    assert type(rebuilt) is DeepgramAuthenticationError
    assert isinstance(api_error_from_dict({"status": 500}), DeepgramServerError)
    assert isinstance(api_error_from_dict({}), DeepgramAPIError)


# ---------------------------------------------------------------------- waiting for objects


def test_objects_trigger_fires_when_enough_objects_exist(inbox):
    (inbox / ".hidden.txt").write_text("not counted")
    event = only_event(DeepgramObjectsTrigger(path=f"file://{inbox}/*.txt", min_objects=3, poke_interval=0.05))
    assert event["status"] == "success"
    assert event["uris"] == [uri(inbox / name) for name in ("a.txt", "b.txt", "c.txt")]
    assert (event["matched"], event["scored"]) == (3, 0)


def test_objects_trigger_keeps_waiting_then_fires_when_objects_arrive(inbox):
    trigger = DeepgramObjectsTrigger(path=f"file://{inbox}/", min_objects=5, poke_interval=0.05)

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
    trigger = DeepgramObjectsTrigger(path=f"file://{tmp_path}/nothing/*.txt", min_objects=1, poke_interval=0.05)

    async def first_event():
        return await anext(trigger.run())

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(asyncio.wait_for(first_event(), timeout=0.4))


def test_objects_trigger_reports_a_bad_path_as_an_error_event():
    event = only_event(DeepgramObjectsTrigger(path="   ", min_objects=1, poke_interval=0.05))
    assert event["status"] == "error"
    assert event["error_class"] == "DeepgramConfigurationError"
    assert "path must name a URI" in event["message"]


def test_objects_trigger_counts_only_unscored_objects(inbox, tmp_path, monkeypatch):
    """With sql_conn_id, objects whose URI is a source in the averages table do not count."""
    import sqlite3

    db = tmp_path / "scores.db"
    monkeypatch.setenv("AIRFLOW_CONN_DGS_TRIGGER_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE deepgram_sentiment_averages (source TEXT PRIMARY KEY, fingerprint TEXT)")
        connection.executemany(
            "INSERT INTO deepgram_sentiment_averages VALUES (?, ?)",
            [(uri(inbox / "a.txt"), sha256(POSITIVE)), (uri(inbox / "b.txt"), sha256(NEGATIVE))],
        )
    kwargs = {"path": f"file://{inbox}/*.txt", "sql_conn_id": "dgs_trigger_sqlite", "poke_interval": 0.05}
    event = only_event(DeepgramObjectsTrigger(min_objects=1, **kwargs))
    assert event["status"] == "success", event
    assert event["uris"] == [uri(inbox / "c.txt")]
    assert (event["matched"], event["scored"]) == (3, 2)

    async def first_event():
        return await anext(DeepgramObjectsTrigger(min_objects=2, **kwargs).run())

    with pytest.raises(asyncio.TimeoutError):  # only one unscored object: keeps waiting
        asyncio.run(asyncio.wait_for(first_event(), timeout=0.4))
