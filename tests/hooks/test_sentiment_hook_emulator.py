"""DeepgramSentimentHook against the local emulator, over real HTTP on loopback."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from airflow_provider_dgsentiment.client.account_budget import HostAccountBudget
from airflow_provider_dgsentiment.exceptions import (
    DeepgramAuthenticationError,
    DeepgramBadRequestError,
    DeepgramUnsupportedLanguageError,
)
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

REFERENCE_TEXT = (
    "Hi. Thank you for calling from premier phone services. "
    "This call may be recorded for quality and training purposes."
)


def point_default_conn_at(monkeypatch, server, key=None, **extra):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": server.url, "password": key or server.api_key, "extra": extra}),
    )


def test_reference_example(deepgram_conn):
    with DeepgramSentimentHook() as hook:
        result = hook.analyze(REFERENCE_TEXT)
    assert [(s.start_word, s.end_word, s.sentiment) for s in result.segments] == [
        (0, 8, "positive"),
        (9, 18, "neutral"),
    ]
    assert result.average.sentiment_score == pytest.approx(
        (result.segments[0].sentiment_score + result.segments[1].sentiment_score) / 2
    )
    assert result.input_tokens == 22
    assert result.language == "en"
    assert result.request_id


def test_wrong_key_is_authentication_error(monkeypatch, deepgram_emulator):
    point_default_conn_at(monkeypatch, deepgram_emulator, key="not-the-key")
    with pytest.raises(DeepgramAuthenticationError) as raised:
        DeepgramSentimentHook().analyze("Good day.")
    assert (raised.value.status, raised.value.err_code, raised.value.err_msg) == (
        401,
        "INVALID_AUTH",
        "Invalid credentials.",
    )
    assert "not-the-key" not in str(raised.value)


def test_unsupported_language(deepgram_conn):
    with pytest.raises(DeepgramUnsupportedLanguageError, match="unsupported language: es. Only English is supported."):
        DeepgramSentimentHook().analyze("Hola amigo.", language="es")


def test_empty_text_is_bad_request(deepgram_conn):
    with pytest.raises(DeepgramBadRequestError):
        DeepgramSentimentHook().analyze("   ")


def test_test_connection(monkeypatch, deepgram_emulator):
    point_default_conn_at(monkeypatch, deepgram_emulator)
    ok, message = DeepgramSentimentHook().test_connection()
    assert ok, message
    point_default_conn_at(monkeypatch, deepgram_emulator, key="wrong")
    ok, message = DeepgramSentimentHook().test_connection()
    assert not ok and "INVALID_AUTH" in message


def test_analyze_url(deepgram_conn, tmp_path):
    (tmp_path / "doc.txt").write_text(REFERENCE_TEXT)
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = DeepgramSentimentHook().analyze_url(f"http://127.0.0.1:{server.server_port}/doc.txt")
    finally:
        server.shutdown()
    assert [s.sentiment for s in result.segments] == ["positive", "neutral"]


def test_analyze_many_stays_within_limit(monkeypatch, deepgram_emulator_factory):
    server = deepgram_emulator_factory(max_concurrency=10, latency=0.01)
    point_default_conn_at(monkeypatch, server)
    texts = [f"Document {i} is great and wonderful, I love it." for i in range(300)]
    hook = DeepgramSentimentHook()
    outcomes = dict(hook.analyze_many(iter(texts), max_concurrency=10))
    assert sorted(outcomes) == list(range(300))
    assert all(o.average.sentiment == "positive" for o in outcomes.values())
    stats = server.stats()
    assert stats["rate_limited"] == 0
    assert stats["max_in_flight"] <= 10
    assert hook.rate_limited_count == 0


def test_analyze_many_adapts_to_a_lower_account_limit(monkeypatch, deepgram_emulator_factory, sleeps_fast):
    """The account allows 3 in flight but the hook starts at 10: it backs off and loses nothing."""
    server = deepgram_emulator_factory(max_concurrency=3, latency=0.02)
    point_default_conn_at(monkeypatch, server, max_retries=10)
    hook = DeepgramSentimentHook()
    outcomes = dict(hook.analyze_many([f"Nice text {i}." for i in range(120)], max_concurrency=10))
    assert len(outcomes) == 120
    assert all(not isinstance(o, Exception) for o in outcomes.values())
    assert hook.rate_limited_count > 0
    stats = server.stats()
    # AIMD: after the first 429s the window shrinks, so far fewer 429s than requests.
    assert stats["rate_limited"] < 60


def test_engines_sharing_a_budget_stay_within_the_account_limit(
    monkeypatch, deepgram_emulator_factory, tmp_path, sleeps_fast
):
    """Two hooks, each allowed the whole limit of 4, run at once: the budget splits it, no 429."""
    server = deepgram_emulator_factory(max_concurrency=4, latency=0.02)
    point_default_conn_at(monkeypatch, server, max_concurrency=4, max_retries=10)
    budget = HostAccountBudget(4, "shared", folder=tmp_path)
    outcomes: list[dict] = [{}, {}]

    def score(slot: int) -> None:
        hook = DeepgramSentimentHook(account_budget=budget)
        texts = (f"Text {slot}-{i} is lovely." for i in range(150))
        outcomes[slot] = dict(hook.analyze_many(texts, max_concurrency=4))
        hook.close()

    threads = [threading.Thread(target=score, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [len(o) for o in outcomes] == [150, 150]
    assert not any(isinstance(o, Exception) for done in outcomes for o in done.values())
    stats = server.stats()
    assert stats["rate_limited"] == 0
    assert stats["peak_in_flight"] <= 4
    assert budget.lease("after", 4, 0) == 4  # both gave their slots back


def test_a_run_asking_more_than_the_connection_is_not_held_at_the_connections_number(
    monkeypatch, deepgram_emulator_factory
):
    """The default budget ("host") takes the connection's 10 as the account limit unless a run asks for more."""
    server = deepgram_emulator_factory(max_concurrency=40, latency=0.05)
    point_default_conn_at(monkeypatch, server)  # max_concurrency: the default 10
    hook = DeepgramSentimentHook()
    outcomes = dict(hook.analyze_many([f"Text {i} is fine." for i in range(300)], max_concurrency=25))
    hook.close()
    assert len(outcomes) == 300 and not any(isinstance(o, Exception) for o in outcomes.values())
    stats = server.stats()
    assert stats["rate_limited"] == 0
    assert 10 < stats["peak_in_flight"] <= 25


def test_server_errors_are_retried_until_scored(monkeypatch, deepgram_emulator_factory, sleeps_fast):
    server = deepgram_emulator_factory(error_rate=0.3, seed=7)
    point_default_conn_at(monkeypatch, server, max_retries=8)
    hook = DeepgramSentimentHook()
    outcomes = dict(hook.analyze_many([f"Fine text {i}." for i in range(100)]))
    assert all(not isinstance(o, Exception) for o in outcomes.values())
    assert hook.retry_count > 0
    assert server.stats()["server_errors"] == hook.retry_count


def test_text_over_token_limit_is_chunked_and_merged(deepgram_conn):
    sentence = "The support team was wonderful and solved my problem quickly."
    text = " ".join([sentence] * 16_000)  # 176,000 tokens: over the 150K limit
    result = DeepgramSentimentHook().analyze(text)
    assert len(result.request_ids) >= 2
    assert result.segments[0].start_word == 0
    assert result.segments[-1].end_word == len(text.split()) - 1
    for previous, current in zip(result.segments, result.segments[1:]):
        assert current.start_word == previous.end_word + 1
    assert result.input_tokens == 176_000
