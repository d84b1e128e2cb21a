"""DeepgramSentimentHook against a scripted loopback stand-in: retries, Retry-After, error shapes, settings."""

from __future__ import annotations

import json

import pytest

from airflow_provider_dgsentiment.exceptions import (
    DeepgramAPIError,
    DeepgramAuthenticationError,
    DeepgramBadRequestError,
    DeepgramConfigurationError,
    DeepgramConnectionError,
    DeepgramPaymentRequiredError,
    DeepgramRateLimitError,
    DeepgramResponseError,
    DeepgramServerError,
    DeepgramTimeoutError,
    DeepgramTokenLimitError,
    DeepgramUnsupportedLanguageError,
)
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook
from tests.support.stand_in import KEY, Answer, ok_body, set_conn

BASE = "https://api.deepgram.test"


def error_body(code, msg, request_id="req-err"):
    return {"err_code": code, "err_msg": msg, "request_id": request_id}


def test_analyze_sends_documented_request(conn, hook):
    conn.answer(Answer(json=ok_body(), headers={"dg-request-id": "req-ok"}))
    result = hook.analyze("Hello there.")
    request = conn.last_request
    assert (request.method, request.path) == ("POST", "/v1/read")
    assert request.qs == {"sentiment": ["true"], "language": ["en"]}
    assert request.headers["Authorization"] == f"Token {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {"text": "Hello there."}
    assert result.request_id == "req-ok"
    assert result.average.sentiment == "positive"
    assert result.to_dict() == ok_body()


def test_analyze_url_sends_url_body(conn, hook):
    conn.answer(Answer(json=ok_body()))
    hook.analyze_url("https://example.test/a.txt")
    assert conn.last_request.json() == {"url": "https://example.test/a.txt"}


@pytest.mark.parametrize(
    ("first", "error_class"),
    [
        (Answer(429, json=error_body("TOO_MANY_REQUESTS", "slow down")), DeepgramRateLimitError),
        (Answer(408, json=error_body("TIMEOUT", "request timeout")), DeepgramTimeoutError),
        (Answer(500, json=error_body("INTERNAL", "boom")), DeepgramServerError),
        (Answer(502, text="<html><title>502 Bad Gateway</title></html>"), DeepgramServerError),
        (Answer(503, json=error_body("UNAVAILABLE", "later")), DeepgramServerError),
        (Answer(drop=True), DeepgramConnectionError),
        (Answer(json=ok_body(), delay=2.0), DeepgramTimeoutError),  # past the 0.5 s timeout
    ],
)
def test_retryable_failure_then_success(monkeypatch, stand_in, sleeps, first, error_class, log_text):
    set_conn(monkeypatch, stand_in.url, timeout=0.5)
    stand_in.answer(first, Answer(json=ok_body()))
    with DeepgramSentimentHook() as hook:
        result = hook.analyze("Hello there.")
        assert result.request_id == "req-ok"
        assert stand_in.call_count == 2
        assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.5
        assert hook.retry_count == 1
    text = log_text()
    assert "retry 1/3" in text
    expected = {
        DeepgramRateLimitError: "429",
        DeepgramTimeoutError: "408" if first.status == 408 else "CLIENT_TIMEOUT",
        DeepgramServerError: str(first.status),
        DeepgramConnectionError: "CONNECTION_ERROR",
    }[error_class]
    assert f"{expected}" in text.split("retry 1/3")[0].rsplit("\n", 1)[-1]


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (
            400,
            error_body("INVALID_QUERY_PARAMETER", "Failed to deserialize query parameters: missing field `language`"),
            DeepgramBadRequestError,
        ),
        (
            400,
            error_body("TOKEN_LIMIT_EXCEEDED", "Text input for sentiment currently supports up to 150K tokens."),
            DeepgramTokenLimitError,
        ),
        (
            400,
            error_body(
                "INVALID_QUERY_PARAMETER", "Request specified unsupported language: es. Only English is supported."
            ),
            DeepgramUnsupportedLanguageError,
        ),
        (401, error_body("INVALID_AUTH", "Invalid credentials."), DeepgramAuthenticationError),
        (402, error_body("ASR_PAYMENT_REQUIRED", "Payment required."), DeepgramPaymentRequiredError),
        (403, error_body("INSUFFICIENT_PERMISSIONS", "No permission."), DeepgramAuthenticationError),
    ],
)
def test_client_errors_are_not_retried(conn, sleeps, status, body, error_class):
    conn.answer(Answer(status, json=body, headers={"dg-request-id": "hdr-id"}))
    with pytest.raises(error_class) as raised, DeepgramSentimentHook(max_chunk_tokens=1000) as hook:
        hook.analyze("Hello there.")
    error = raised.value
    assert conn.call_count == 1
    assert sleeps == []
    assert (error.status, error.err_code, error.err_msg, error.request_id) == (
        status,
        body["err_code"],
        body["err_msg"],
        "req-err",
    )
    assert body["err_msg"] in str(error) and "req-err" in str(error)


def test_retry_after_seconds_is_honoured(conn, hook, sleeps):
    conn.answer(
        Answer(429, json=error_body("TOO_MANY_REQUESTS", "x"), headers={"Retry-After": "7"}),
        Answer(json=ok_body()),
    )
    hook.analyze("Hello there.")
    assert sleeps == [7.0]


def test_retry_after_http_date_is_honoured(conn, hook, sleeps):
    conn.answer(
        Answer(503, json=error_body("X", "x"), headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        Answer(json=ok_body()),
    )
    hook.analyze("Hello there.")
    assert sleeps == [0.0]  # a date in the past means: retry now


def test_retries_are_bounded_and_backoff_grows(conn, hook, sleeps):
    conn.answer(Answer(503, json=error_body("UNAVAILABLE", "down", "r-503")))
    with pytest.raises(DeepgramServerError) as raised:
        hook.analyze("Hello there.")
    assert conn.call_count == 4  # first try + max_retries=3
    assert len(sleeps) == 3
    assert sleeps[0] <= 0.5 < sleeps[2] <= 2.0
    assert raised.value.request_id == "r-503"


def test_html_502_from_proxy_gives_readable_error(conn, sleeps):
    html = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    conn.answer(Answer(502, text=html, headers={"Content-Type": "text/html"}))
    with (
        pytest.raises(DeepgramServerError, match="502: non-JSON HTML response: 502 Bad Gateway"),
        DeepgramSentimentHook(max_retries=0) as hook,
    ):
        hook.analyze("Hello there.")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json at all", r"Unreadable Deepgram response \(HTTP 200\): the body is not JSON"),
        (json.dumps({"metadata": {}}), "results should be an object"),
        (json.dumps({"metadata": {}, "results": {"sentiments": {"segments": "x"}}}), "segments should be a list"),
        (
            json.dumps({"metadata": {"request_id": "r9"}, "results": {"sentiments": {"segments": [{"text": "a"}]}}}),
            r"segments\[0\].start_word should be an integer, got NoneType \(request_id=r9\)",
        ),
        (json.dumps([1, 2]), "response body should be an object"),
    ],
)
def test_wrong_shaped_response_raises_response_error(conn, hook, sleeps, body, message):
    conn.answer(Answer(text=body))
    with pytest.raises(DeepgramResponseError, match=message):
        hook.analyze("Hello there.")
    assert conn.call_count == 1 and sleeps == []  # not retried


def test_token_limit_answer_splits_finer(conn):
    """When Deepgram counts more tokens than our estimate, the hook splits the text finer once."""
    sentences = " ".join(f"Sentence number {i} is fine." for i in range(600))  # ~3600 tokens

    def respond(request):
        text = request.json()["text"]
        if len(text.split()) > 1200:
            return Answer(400, json=error_body("TOKEN_LIMIT_EXCEEDED", "too long"))
        return Answer(json=ok_body(text))

    conn.answer(respond)
    with DeepgramSentimentHook(max_chunk_tokens=4000) as hook:
        result = hook.analyze(sentences)
    assert result.segments[0].start_word == 0
    assert result.segments[-1].end_word == len(sentences.split()) - 1
    for previous, current in zip(result.segments, result.segments[1:]):
        assert current.start_word == previous.end_word + 1


def test_key_never_in_errors_or_logs(conn, hook, sleeps, log_text):
    conn.answer(
        Answer(500, json=error_body("E", "boom")),
        Answer(401, json=error_body("INVALID_AUTH", "Invalid credentials.")),
    )
    with pytest.raises(DeepgramAuthenticationError) as raised:
        hook.analyze("Hello there.")
    assert KEY not in str(raised.value) and KEY not in repr(raised.value)
    text = log_text()
    assert "retry 1/3" in text
    assert KEY not in text
    assert KEY not in repr(DeepgramSentimentHook().settings)


def test_plain_http_refused_for_remote_host(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": "http://api.deepgram.com", "password": KEY}),
    )
    with pytest.raises(DeepgramConfigurationError, match="Refusing plain http to api.deepgram.com"):
        DeepgramSentimentHook().analyze("hi")


def test_plain_http_allowed_when_connection_says_so(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps(
            {
                "conn_type": "deepgram",
                "host": "http://proxy.internal:8080",
                "password": KEY,
                "extra": {"allow_insecure_http": True},
            }
        ),
    )
    # Settings only: the network here is loopback-only, so no request goes to proxy.internal.
    assert DeepgramSentimentHook().settings.base_url == "http://proxy.internal:8080"


@pytest.mark.parametrize("host", ["http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"])
def test_plain_http_allowed_for_loopback(monkeypatch, host):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT", json.dumps({"conn_type": "deepgram", "host": host, "password": KEY})
    )
    assert DeepgramSentimentHook().settings.base_url == host


def test_connection_uri_form_and_extras(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        f"deepgram://:{KEY}@api.eu.deepgram.com?timeout=12&max_retries=2&max_concurrency=4",
    )
    settings = DeepgramSentimentHook().settings
    assert settings.base_url == "https://api.eu.deepgram.com"
    assert (settings.timeout, settings.max_retries, settings.max_concurrency) == (12.0, 2, 4)
    assert settings.api_key == KEY


def test_default_host_and_env_key_fallback(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", raising=False)
    monkeypatch.setenv("DEEPGRAM_API_KEY", "env-key-123")
    settings = DeepgramSentimentHook().settings
    assert settings.base_url == "https://api.deepgram.com"
    assert settings.api_key == "env-key-123"


def test_missing_key_is_a_clear_configuration_error(monkeypatch):
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", json.dumps({"conn_type": "deepgram", "host": BASE}))
    with pytest.raises(DeepgramConfigurationError, match="No Deepgram API key.*deepgram_default.*DEEPGRAM_API_KEY"):
        DeepgramSentimentHook().analyze("hi")


def test_bad_extra_is_a_clear_configuration_error(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": BASE, "password": KEY, "extra": {"max_concurrency": 0}}),
    )
    with pytest.raises(DeepgramConfigurationError, match="max_concurrency must be at least 1"):
        _ = DeepgramSentimentHook().settings


def test_test_connection_uses_projects_endpoint(conn, hook):
    conn.answer(Answer(json={"projects": [{"project_id": "p", "name": "n"}]}))
    assert hook.test_connection() == (
        True,
        "Connection to Deepgram works: the key sees 1 project(s).",
    )
    assert (conn.last_request.method, conn.last_request.path) == ("GET", "/v1/projects")
    assert conn.last_request.headers["Authorization"] == f"Token {KEY}"


def test_test_connection_reports_bad_key_without_raising(conn, hook):
    conn.answer(Answer(401, json=error_body("INVALID_AUTH", "Invalid credentials.")))
    ok, message = hook.test_connection()
    assert not ok
    assert "401 INVALID_AUTH: Invalid credentials." in message


def test_test_connection_reports_unreachable_host_without_raising(monkeypatch, closed_port):
    set_conn(monkeypatch, f"http://127.0.0.1:{closed_port}")
    with DeepgramSentimentHook() as hook:
        ok, message = hook.test_connection()
    assert not ok and message.startswith("Could not reach Deepgram")
    assert KEY not in message


def test_analyze_many_yields_errors_per_document(conn, hook, sleeps):
    def respond(request):
        text = request.json()["text"]
        if text == "bad":
            return Answer(400, json=error_body("INVALID_REQUEST_BODY", "bad text"))
        return Answer(json=ok_body(text, request_id=f"id-{text}"))

    conn.answer(respond)
    outcomes = dict(hook.analyze_many(["a b.", "bad", "c d."], max_concurrency=2))
    assert sorted(outcomes) == [0, 1, 2]
    assert outcomes[0].request_id == "id-a b."
    assert isinstance(outcomes[1], DeepgramBadRequestError)
    assert outcomes[2].request_id == "id-c d."


def test_analyze_many_stops_sending_after_systemic_error(conn, hook, sleeps):
    conn.answer(Answer(401, json=error_body("INVALID_AUTH", "Invalid credentials.")))
    outcomes = list(hook.analyze_many((f"text {i}." for i in range(500)), max_concurrency=2))
    assert conn.call_count <= 2
    assert all(isinstance(error, DeepgramAuthenticationError) for _, error in outcomes)
    assert isinstance(outcomes[0][1], DeepgramAPIError)
