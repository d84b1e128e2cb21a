"""The one request engine, through the hook: tags, token budget, redirects, deadlines, validation,
unreachable endpoints, early close, lazy input, one loop per hook."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from airflow_provider_dgsentiment.client.engine import MAX_CONSECUTIVE_CONNECT_FAILURES
from airflow_provider_dgsentiment.client.transport import masked_url
from airflow_provider_dgsentiment.exceptions import (
    TOKEN_BUDGET_EXCEEDED,
    DeepgramAPIError,
    DeepgramConfigurationError,
    DeepgramConnectionError,
    DeepgramEndpointUnreachableError,
    DeepgramRedirectError,
    DeepgramResponseError,
    DeepgramTimeoutError,
    DeepgramTokenBudgetError,
)
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook
from tests.support.stand_in import KEY, Answer, ok_body, set_conn


def scored(text: str, tokens: int = 3) -> Answer:
    body = ok_body(text)
    body["metadata"]["sentiment_info"]["input_tokens"] = tokens
    return Answer(json=body)


# ---------------------------------------------------------------------- tags


def test_every_request_carries_one_tag_parameter_per_tag(conn, hook):
    conn.answer(lambda request: scored(request.json()["text"]))
    outcomes = dict(hook.analyze_many(["a.", "b."], tags=["airflow", "my_dag", "score task"]))
    assert len(outcomes) == 2
    for request in conn.requests:
        assert request.query == [
            ("sentiment", "true"),
            ("language", "en"),
            ("tag", "airflow"),
            ("tag", "my_dag"),
            ("tag", "score task"),
        ]


@pytest.mark.anyio
async def test_aanalyze_many_sends_tags_too(conn):
    conn.answer(lambda request: scored(request.json()["text"]))
    hook = DeepgramSentimentHook()
    outcomes = [item async for item in hook.aanalyze_many(["a."], tags=["airflow", "dag"])]
    assert len(outcomes) == 1
    assert conn.last_request.qs["tag"] == ["airflow", "dag"]


# ---------------------------------------------------------------------- token budget


def test_token_budget_stops_before_a_request_would_pass_the_cap(conn, hook):
    # Each text "one two three." is estimated at 4 tokens; the stand-in bills 10 per request.
    conn.answer(lambda request: scored(request.json()["text"], tokens=10))
    texts = ["one two three."] * 20
    outcomes = list(hook.analyze_many(texts, max_concurrency=1, max_input_tokens=50, used_input_tokens=15))
    results = [o for _, o in outcomes if not isinstance(o, Exception)]
    errors = [o for _, o in outcomes if isinstance(o, Exception)]
    # 15 used + 3 * 10 = 45. After the first answer the estimate is corrected to what the API bills
    # (10 per request, not 4), so a fourth request (45 + 10 = 55) is not sent: 0.2 sent it and billed 55.
    assert len(results) == 3 and conn.call_count == 3
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, DeepgramTokenBudgetError) and isinstance(error, DeepgramAPIError)
    assert (error.status, error.err_code, error.systemic) == (0, TOKEN_BUDGET_EXCEEDED, True)
    assert "max_input_tokens=50" in str(error) and "45 input tokens used" in str(error) and "about 10" in str(error)


def test_token_budget_holds_against_billed_tokens_with_many_in_flight(conn, hook):
    """The API bills 5x our estimate: 10 in flight must not all be admitted on the estimate."""
    conn.answer(lambda request: Answer(json=scored(request.json()["text"], tokens=20).json, delay=0.02))
    outcomes = list(hook.analyze_many(["one two three."] * 50, max_concurrency=10, max_input_tokens=100))
    assert sum(isinstance(o, DeepgramTokenBudgetError) for _, o in outcomes) == 1
    billed = 20 * conn.call_count
    # 0.2 admitted 10 requests at once on the estimate (10 * 4 = 40 <= 100) and billed 200.
    assert billed <= 100 and conn.call_count == 5
    assert conn.max_in_flight <= 4  # one until the first answer, then what fits the corrected budget


def test_token_budget_counts_requests_in_flight(conn, hook):
    """With 5 in flight, the tokens of requests not yet answered count against the cap too."""
    conn.answer(lambda request: Answer(json=scored(request.json()["text"], tokens=4).json, delay=0.05))
    outcomes = list(hook.analyze_many(["one two three."] * 50, max_concurrency=5, max_input_tokens=40))
    scored_count = sum(not isinstance(o, Exception) for _, o in outcomes)
    assert scored_count == conn.call_count == 10  # 10 * 4 = 40, never more
    # The document that would have passed the cap says so; the ones not sent after it yield nothing.
    assert sum(isinstance(o, DeepgramTokenBudgetError) for _, o in outcomes) == 1
    assert len(outcomes) == 11


# ---------------------------------------------------------------------- redirects


def test_redirect_is_not_followed_and_names_status_and_masked_location(conn, hook, sleeps, log_text):
    location = f"https://elsewhere.test/v1/read?key={KEY}&sentiment=true"
    conn.answer(Answer(302, headers={"Location": location}))
    with pytest.raises(DeepgramRedirectError) as raised:
        hook.analyze("Hello there.")
    error = raised.value
    assert conn.call_count == 1 and sleeps == []  # not followed, not retried
    assert error.status == 302 and error.systemic
    message = str(error)
    assert "302" in message and "https://elsewhere.test/v1/read?key=***&sentiment=***" in message
    assert KEY not in message and KEY not in repr(error) and KEY not in log_text()


def test_redirect_stops_the_run(conn, hook, sleeps):
    conn.answer(Answer(301, headers={"Location": "https://api.deepgram.com/v1/read"}))
    outcomes = list(hook.analyze_many([f"text {i}." for i in range(200)], max_concurrency=3))
    assert conn.call_count <= 3
    assert all(isinstance(o, DeepgramRedirectError) for _, o in outcomes)


def test_masked_url_drops_credentials_and_query_values():
    assert masked_url("https://user:pw@host.test:8443/p?a=1&b=2#frag") == "https://host.test:8443/p?a=***&b=***#***"
    assert masked_url(None) == "(none)"


# ---------------------------------------------------------------------- deadline for the whole response


def test_timeout_is_a_deadline_for_the_whole_response(monkeypatch, stand_in, sleeps):
    """A server that sends headers at once, then one byte every 0.5 s, fails after ~timeout, not never."""
    set_conn(monkeypatch, stand_in.url, timeout=1.0, max_retries=0)
    stand_in.answer(Answer(json=ok_body(), drip=0.5))
    with DeepgramSentimentHook() as hook:
        started = time.monotonic()
        with pytest.raises(DeepgramTimeoutError, match=r"CLIENT_TIMEOUT: no response within 1.0s") as raised:
            hook.analyze("Hello there.")
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0
    assert raised.value.retryable


# ---------------------------------------------------------------------- response validation


def test_invalid_answer_fails_its_document_alone_and_is_not_retried(conn, hook, sleeps):
    def respond(request):
        text = request.json()["text"]
        body = ok_body(text)
        if text == "bad.":
            body["results"]["sentiments"]["segments"][0]["sentiment_score"] = float("nan")
        return Answer(text=json.dumps(body))  # json.dumps writes NaN, as a broken server would

    conn.answer(respond)
    outcomes = dict(hook.analyze_many(["good one.", "bad.", "good two."], max_concurrency=1))
    assert isinstance(outcomes[1], DeepgramResponseError)
    assert "results.sentiments.segments[0].sentiment_score is nan, not a finite number" in str(outcomes[1])
    assert not isinstance(outcomes[0], Exception) and not isinstance(outcomes[2], Exception)
    assert conn.call_count == 3 and sleeps == []


def _segment(text: str, start_word: int, end_word: int) -> dict:
    return {
        "text": text,
        "start_word": start_word,
        "end_word": end_word,
        "sentiment": "neutral",
        "sentiment_score": 0.0,
    }


def _with_segments(text: str, segments: list[dict]) -> Answer:
    body = ok_body(text)
    body["results"]["sentiments"]["segments"] = segments
    return Answer(json=body)


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ([], "the answer has no segments for a text of 4 words (segments must cover every word)"),
        (
            [_segment("Good morning", 0, 1)],
            "the segments end at word 1, but the text has 4 words: words 2..3 are not covered",
        ),
        (
            [_segment("another, longer text of six words", 0, 5)],
            "the segments reach word 5, past the text's last word 3 (the text has 4 words; "
            "is this another text's answer?)",
        ),
    ],
    ids=["no-segments", "stops-short", "another-texts-answer"],
)
def test_an_answer_that_does_not_cover_the_words_sent_fails_its_document(conn, hook, sleeps, segments, message):
    wrong = "Good morning to you."

    def respond(request):
        text = request.json()["text"]
        return _with_segments(text, segments) if text == wrong else scored(text)

    conn.answer(respond)
    outcomes = dict(hook.analyze_many(["Fine.", wrong, "Also fine here."], max_concurrency=1))
    error = outcomes[1]
    assert isinstance(error, DeepgramResponseError) and not error.systemic
    assert message in str(error) and "(request_id=req-ok)" in str(error)
    assert not isinstance(outcomes[0], Exception) and not isinstance(outcomes[2], Exception)
    assert conn.call_count == 3 and sleeps == []  # not retried: the same text would get the same answer


def test_a_part_of_a_chunked_text_answered_short_fails_the_whole_text(monkeypatch, stand_in):
    """Each part's answer is checked against the part's own words, before offsets are shifted."""
    set_conn(monkeypatch, stand_in.url)
    first_part = "One two three. " * 3
    text = first_part + "Four five six."

    def respond(request):
        part = request.json()["text"]
        words = part.split()
        end = len(words) - 1 if part.startswith("One") else len(words) - 2  # the last part drops a word
        return _with_segments(part, [_segment(part, 0, end)])

    stand_in.answer(respond)
    with DeepgramSentimentHook(max_chunk_tokens=12) as chunking_hook, pytest.raises(DeepgramResponseError) as raised:
        chunking_hook.analyze(text)
    assert stand_in.call_count >= 2
    assert "the segments end at word 1, but the text has 3 words: words 2..2 are not covered" in str(raised.value)


# ---------------------------------------------------------------------- base URL


@pytest.mark.parametrize(
    ("host", "part"),
    [
        (f"https://{KEY}@api.deepgram.com", "credentials"),
        (f"https://user:{KEY}@api.deepgram.com", "credentials"),
        (f"https://api.deepgram.com/v1/read?key={KEY}", "a path and a query"),
        (f"https://api.deepgram.com?token={KEY}", "a query"),
        (f"https://api.deepgram.com/{KEY}", "a path"),
        (f"https://api.deepgram.com#{KEY}", "a fragment"),
    ],
)
def test_base_url_with_secret_parts_is_refused_without_echoing_them(monkeypatch, host, part):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT", json.dumps({"conn_type": "deepgram", "host": host, "password": "k-12345"})
    )
    with pytest.raises(DeepgramConfigurationError) as raised:
        _ = DeepgramSentimentHook().settings
    message = str(raised.value)
    assert part in message
    assert "https://api.deepgram.com" in message
    assert KEY not in message and KEY not in repr(raised.value)


def test_base_url_with_a_trailing_slash_is_fine(monkeypatch):
    set_conn(monkeypatch, "https://api.eu.deepgram.com/")
    assert DeepgramSentimentHook().settings.base_url == "https://api.eu.deepgram.com"


# ---------------------------------------------------------------------- unreachable endpoint


def test_dead_endpoint_stops_the_run_after_a_few_connection_failures(monkeypatch, closed_port, sleeps):
    set_conn(monkeypatch, f"http://127.0.0.1:{closed_port}", max_retries=10)
    with DeepgramSentimentHook() as hook:
        started = time.monotonic()
        outcomes = list(hook.analyze_many((f"text {i}." for i in range(3000)), max_concurrency=10))
        elapsed = time.monotonic() - started
        attempts = hook.request_count
    assert elapsed < 5
    # Each worker stops at its next failure once the engine counts the endpoint unreachable.
    assert attempts <= MAX_CONSECUTIVE_CONNECT_FAILURES + 10
    assert 1 <= len(outcomes) <= 10
    unreachable = [o for _, o in outcomes if isinstance(o, DeepgramEndpointUnreachableError)]
    assert unreachable and all(isinstance(o, DeepgramConnectionError) for _, o in outcomes)
    error = unreachable[0]
    assert error.systemic and not error.retryable
    assert f"http://127.0.0.1:{closed_port} is unreachable" in str(error)
    assert f"{MAX_CONSECUTIVE_CONNECT_FAILURES} connection attempts in a row" in str(error)


def test_one_refused_connection_among_answers_is_just_retried(monkeypatch, stand_in, sleeps):
    """Dropped connections with answers in between never add up to 'unreachable'."""
    set_conn(monkeypatch, stand_in.url, max_retries=10)
    count = {"n": 0}

    def respond(request):
        count["n"] += 1
        return Answer(drop=True) if count["n"] % 2 else scored(request.json()["text"])

    stand_in.answer(respond)
    with DeepgramSentimentHook() as hook:
        outcomes = dict(hook.analyze_many([f"t {i}." for i in range(20)], max_concurrency=1))
    assert all(not isinstance(o, Exception) for o in outcomes.values())


# ---------------------------------------------------------------------- closing early


def slow_after_first(stand_in, fast: int = 10):
    """Answer the first ``fast`` requests at once (the window grows out of slow start), then never."""
    seen = {"n": 0}

    def respond(request):
        seen["n"] += 1
        return scored(request.json()["text"]) if seen["n"] <= fast else Answer(json=ok_body(), delay=30)

    stand_in.answer(respond)


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_closing_analyze_many_early_cancels_requests_in_flight(conn, hook):
    slow_after_first(conn)
    taken = []

    def texts():
        for i in range(1000):
            taken.append(i)
            yield f"text {i}."

    results = hook.analyze_many(texts(), max_concurrency=5)
    for _ in range(10):
        assert not isinstance(next(results)[1], Exception)
    assert wait_until(lambda: conn.in_flight == 5, 5)
    sent = conn.call_count
    started = time.monotonic()
    results.close()
    assert time.monotonic() - started < 1.0
    assert wait_until(lambda: conn.in_flight == 0, 1.0), "requests in flight were not cancelled"
    time.sleep(0.2)
    assert conn.call_count == sent  # nothing more was sent
    assert len(taken) <= 10 + 5 * 2 + 1  # the input was read only a little ahead
    # The hook still works after an early close.
    conn.answer(lambda request: scored(request.json()["text"]))
    assert hook.analyze("Hello there.").request_id == "req-ok"


@pytest.mark.anyio
async def test_closing_aanalyze_many_early_cancels_requests_in_flight(conn):
    slow_after_first(conn)
    hook = DeepgramSentimentHook()
    results = hook.aanalyze_many((f"text {i}." for i in range(1000)), max_concurrency=5)
    for _ in range(10):
        assert not isinstance((await results.__anext__())[1], Exception)
    for _ in range(250):
        if conn.in_flight == 5:
            break
        await asyncio.sleep(0.02)
    assert conn.in_flight == 5
    sent = conn.call_count
    started = time.monotonic()
    await results.aclose()
    assert time.monotonic() - started < 1.0
    for _ in range(50):
        if conn.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert conn.in_flight == 0, "requests in flight were not cancelled"
    assert conn.call_count == sent


# ---------------------------------------------------------------------- lazy input, one loop per hook


@pytest.mark.anyio
async def test_aanalyze_many_consumes_an_async_iterable_lazily(conn):
    conn.answer(lambda request: Answer(json=scored(request.json()["text"]).json, delay=0.01))
    pulled = 0

    async def texts():
        nonlocal pulled
        for i in range(100):
            pulled += 1
            yield f"text {i}."

    hook = DeepgramSentimentHook()
    seen = 0
    async for _index, outcome in hook.aanalyze_many(texts(), max_concurrency=4):
        assert not isinstance(outcome, Exception)
        seen += 1
        # Never more than the workers' texts plus the finished ones ahead of what was handed back.
        assert pulled <= seen + 4 + 4
    assert seen == pulled == 100


def test_one_loop_one_session_one_window_per_hook(conn, hook):
    conn.answer(lambda request: scored(request.json()["text"]))
    threads_before = {t.name for t in threading.enumerate()}
    assert "deepgram-engine" not in threads_before
    list(hook.analyze_many(["a.", "b."]))
    engine = hook.get_conn()
    session = engine._session
    loop_thread = hook._loop_thread
    list(hook.analyze_many(["c.", "d."]))
    hook.analyze("e.")
    assert hook.get_conn() is engine and engine._session is session and hook._loop_thread is loop_thread
    assert engine.window is hook.get_conn().window
    new_threads = [t.name for t in threading.enumerate() if t.name not in threads_before]
    # One loop thread (plus the loop's own resolver threads), however many calls.
    assert [name for name in new_threads if not name.startswith("asyncio_")] == ["deepgram-engine"]
    hook.close()
    assert session.closed
    assert not loop_thread._thread.is_alive()
