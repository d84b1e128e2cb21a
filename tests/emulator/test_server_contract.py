"""The emulator speaks the Deepgram /v1/read contract over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import functools
import http.server
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from airflow_provider_dgsentiment.emulator.pytest_plugin import TEST_API_KEY
from airflow_provider_dgsentiment.emulator.server import MODEL_UUID, PROJECT_ID

REFERENCE_TEXT = (
    "Hi. Thank you for calling from premier phone services. "
    "This call may be recorded for quality and training purposes."
)
READ_QUERY = "/v1/read?sentiment=true&language=en"
AUTH = {"Authorization": f"Token {TEST_API_KEY}"}
TIMEOUT = 10

LONG_WORDS = "The extraordinarily accommodating representatives demonstrated unquestionable professionalism."
TOKEN_LIMIT_MSG = (
    "Text input for Sentiment Analysis currently supports up to 150K tokens. Please revise your text "
    "input to fit within the defined token limit. For more information, please visit our API documentation."
)


def read(server, body=None, *, query=READ_QUERY, headers=AUTH, session=None, timeout=TIMEOUT, **kwargs):
    """POST to the emulator's /v1/read (JSON body unless ``data`` is given)."""
    sender = session or requests
    if body is not None:
        kwargs["json"] = body
    return sender.post(f"{server.url}{query}", headers=headers, timeout=timeout, **kwargs)


def assert_error(response, status, err_code, err_msg=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"err_code", "err_msg", "request_id"}
    assert body["err_code"] == err_code
    if err_msg is not None:
        assert body["err_msg"] == err_msg
    assert response.headers["dg-request-id"] == body["request_id"]
    assert uuid.UUID(body["request_id"]).version == 4
    return body


@pytest.fixture
def emulator(deepgram_emulator):
    deepgram_emulator.reset_stats()
    return deepgram_emulator


@pytest.fixture
def text_file_server(tmp_path):
    """Serve ``tmp_path`` over loopback HTTP; yield its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- success ------------------------------------------------------------------------------


def test_reference_example_has_the_documented_shape(emulator):
    response = read(emulator, {"text": REFERENCE_TEXT})

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"metadata", "results"}
    metadata = body["metadata"]
    assert set(metadata) == {"request_id", "created", "language", "sentiment_info"}
    assert response.headers["dg-request-id"] == metadata["request_id"]
    assert uuid.UUID(metadata["request_id"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", metadata["created"])
    assert metadata["language"] == "en"
    assert metadata["sentiment_info"] == {"model_uuid": MODEL_UUID, "input_tokens": 22, "output_tokens": 22}

    sentiments = body["results"]["sentiments"]
    assert set(body["results"]) == {"sentiments"}
    assert set(sentiments) == {"segments", "average"}
    segments = sentiments["segments"]
    assert [(s["start_word"], s["end_word"], s["sentiment"]) for s in segments] == [
        (0, 8, "positive"),
        (9, 18, "neutral"),
    ]
    assert segments[0]["text"] == "Hi. Thank you for calling from premier phone services."
    assert segments[1]["text"] == "This call may be recorded for quality and training purposes."
    assert segments[0]["sentiment_score"] == pytest.approx(0.3612)
    assert segments[1]["sentiment_score"] == 0.0
    for segment in segments:
        assert set(segment) == {"text", "start_word", "end_word", "sentiment", "sentiment_score"}
    mean = (segments[0]["sentiment_score"] + segments[1]["sentiment_score"]) / 2
    assert sentiments["average"] == {"sentiment": "neutral", "sentiment_score": pytest.approx(mean)}


def test_every_response_gets_its_own_request_id(emulator):
    first = read(emulator, {"text": REFERENCE_TEXT}).json()["metadata"]["request_id"]
    second = read(emulator, {"text": REFERENCE_TEXT}).json()["metadata"]["request_id"]

    assert first != second


def test_same_text_gives_the_same_result(emulator):
    text = "The agent was friendly and helpful. The wait, however, was horrible and I am annoyed. Fine."
    first = read(emulator, {"text": text}).json()
    second = read(emulator, {"text": text}).json()

    assert first["results"] == second["results"]
    assert first["metadata"]["sentiment_info"] == second["metadata"]["sentiment_info"]


def test_url_body_is_fetched_and_scored(emulator, text_file_server, tmp_path):
    (tmp_path / "call.txt").write_text(REFERENCE_TEXT, encoding="utf-8")

    response = read(emulator, {"url": f"{text_file_server}/call.txt"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["sentiment_info"]["input_tokens"] == 22
    assert [(s["start_word"], s["end_word"]) for s in body["results"]["sentiments"]["segments"]] == [(0, 8), (9, 18)]


def test_url_that_cannot_be_fetched_is_a_400(emulator, text_file_server):
    body = assert_error(read(emulator, {"url": f"{text_file_server}/missing.txt"}), 400, "REMOTE_CONTENT_ERROR")
    assert "missing.txt" in body["err_msg"] and "404" in body["err_msg"]


def test_large_text_is_scored(emulator):
    text = " ".join(f"Sentence {i} is about a lovely and wonderful day." for i in range(3000))

    response = read(emulator, {"text": text})

    assert response.status_code == 200, response.text
    segments = response.json()["results"]["sentiments"]["segments"]
    assert segments[-1]["end_word"] == len(text.split()) - 1


def test_tag_parameter_is_accepted(emulator):
    response = read(emulator, {"text": REFERENCE_TEXT}, query=f"{READ_QUERY}&tag=nightly&tag=batch-7")
    assert response.status_code == 200, response.text
    assert emulator.stats()["tags"] == {"nightly": 1, "batch-7": 1}


def test_tags_up_to_128_characters_are_accepted_longer_ones_refused(emulator):
    assert read(emulator, {"text": REFERENCE_TEXT}, query=f"{READ_QUERY}&tag={'t' * 128}").status_code == 200

    body = assert_error(
        read(emulator, {"text": REFERENCE_TEXT}, query=f"{READ_QUERY}&tag=ok&tag={'t' * 129}"),
        400,
        "INVALID_QUERY_PARAMETER",
    )
    assert "128 characters" in body["err_msg"] and "129" in body["err_msg"]


def test_long_words_count_more_tokens_than_words(emulator):
    response = read(emulator, {"text": LONG_WORDS})

    assert response.status_code == 200, response.text
    # 7 words and a full stop; the emulator's sub-word count: 1+3+2+3+2+2+3 words, 1 mark.
    assert response.json()["metadata"]["sentiment_info"] == {
        "model_uuid": MODEL_UUID,
        "input_tokens": 17,
        "output_tokens": 17,
    }


# -- the three documented 400 errors ------------------------------------------------------


def test_missing_language(emulator):
    assert_error(
        read(emulator, {"text": REFERENCE_TEXT}, query="/v1/read?sentiment=true"),
        400,
        "INVALID_QUERY_PARAMETER",
        "Failed to deserialize query parameters: missing field `language`",
    )


@pytest.mark.parametrize("language", ["es", "fr", "en-US"])
def test_unsupported_language(emulator, language):
    assert_error(
        read(emulator, {"text": REFERENCE_TEXT}, query=f"/v1/read?sentiment=true&language={language}"),
        400,
        "INVALID_QUERY_PARAMETER",
        f"Request specified unsupported language: {language}. Only English is supported.",
    )


def test_token_limit_exceeded(emulator):
    text = "word " * 150_001

    assert_error(read(emulator, {"text": text}), 400, "TOKEN_LIMIT_EXCEEDED", TOKEN_LIMIT_MSG)


def test_token_limit_boundary(deepgram_emulator_factory):
    server = deepgram_emulator_factory(token_limit=10)

    assert read(server, {"text": "one two three four five six seven eight nine ten"}).status_code == 200
    eleven = read(server, {"text": "one two three four five six seven eight nine ten eleven"})
    assert_error(eleven, 400, "TOKEN_LIMIT_EXCEEDED")


def test_token_limit_boundary_counts_sub_words(deepgram_emulator_factory):
    server = deepgram_emulator_factory(token_limit=3)

    # One word each: 18 letters are 3 tokens (1 + 2 for the 8 beyond 10), 19 are 4.
    assert read(server, {"text": "abcdefghijklmnopqr"}).status_code == 200
    assert_error(read(server, {"text": "abcdefghijklmnopqrs"}), 400, "TOKEN_LIMIT_EXCEEDED", TOKEN_LIMIT_MSG)


def test_token_limit_is_checked_with_the_sub_word_count(emulator):
    text = " ".join([LONG_WORDS] * 9_000)  # 72,000 words and marks, 153,000 tokens

    assert len(text.split()) + text.count(".") == 72_000
    assert_error(read(emulator, {"text": text}), 400, "TOKEN_LIMIT_EXCEEDED", TOKEN_LIMIT_MSG)
    under = read(emulator, {"text": " ".join([LONG_WORDS] * 8_800)})  # 149,600 tokens
    assert under.status_code == 200, under.text
    assert under.json()["metadata"]["sentiment_info"]["input_tokens"] == 149_600


# -- other query errors ---------------------------------------------------------------------


def test_unknown_parameter_is_rejected(emulator):
    body = assert_error(
        read(emulator, {"text": REFERENCE_TEXT}, query=f"{READ_QUERY}&smart_format=true"),
        400,
        "INVALID_QUERY_PARAMETER",
    )
    assert body["err_msg"].startswith("Failed to deserialize query parameters: unknown field `smart_format`")


@pytest.mark.parametrize("query", ["/v1/read?language=en", "/v1/read?sentiment=false&language=en"])
def test_sentiment_must_be_requested(emulator, query):
    body = assert_error(read(emulator, {"text": REFERENCE_TEXT}, query=query), 400, "INVALID_QUERY_PARAMETER")
    assert "sentiment=true" in body["err_msg"]


def test_sentiment_must_be_a_boolean(emulator):
    body = assert_error(
        read(emulator, {"text": REFERENCE_TEXT}, query="/v1/read?sentiment=yes&language=en"),
        400,
        "INVALID_QUERY_PARAMETER",
    )
    assert "sentiment" in body["err_msg"]


@pytest.mark.parametrize(
    "feature",
    ["summarize=true", "topics=true", "intents=true", "custom_topic=billing", "callback=http://127.0.0.1:1/cb"],
)
def test_other_features_are_not_implemented(emulator, feature):
    body = assert_error(
        read(emulator, {"text": REFERENCE_TEXT}, query=f"{READ_QUERY}&{feature}"), 400, "INVALID_QUERY_PARAMETER"
    )
    assert f"`{feature.split('=')[0]}`" in body["err_msg"]
    assert "only Sentiment Analysis" in body["err_msg"]


def test_disabled_feature_flags_are_accepted(emulator):
    assert read(emulator, {"text": REFERENCE_TEXT}, query=f"{READ_QUERY}&topics=false").status_code == 200


# -- body errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"text": REFERENCE_TEXT, "url": "http://127.0.0.1:1/x.txt"}, "exactly one of `text` or `url`"),
        ({}, "exactly one of `text` or `url`"),
        ([REFERENCE_TEXT], "JSON object"),
        ({"text": 42}, "`text` must be a string"),
        ({"text": REFERENCE_TEXT, "model": "x"}, "unknown field `model`"),
        ({"url": ""}, "`url` must be a non-empty string"),
        ({"text": ""}, "empty"),
        ({"text": "  \n\t "}, "empty"),
    ],
)
def test_bad_bodies_are_rejected(emulator, body, fragment):
    error = assert_error(read(emulator, body), 400, "INVALID_REQUEST_BODY")
    assert fragment in error["err_msg"]


def test_invalid_json_is_rejected(emulator):
    response = read(emulator, data=b'{"text": "unterminated', headers={**AUTH, "Content-Type": "application/json"})

    error = assert_error(response, 400, "INVALID_REQUEST_BODY")
    assert "not valid JSON" in error["err_msg"]


# -- auth, methods, projects ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Token wrong-key"},
        {"Authorization": f"Bearer {TEST_API_KEY}"},
        {"Authorization": "Token "},
        {"Authorization": TEST_API_KEY},
    ],
    ids=["missing", "wrong", "bearer", "empty", "no-scheme"],
)
def test_bad_credentials_are_401(emulator, headers):
    assert_error(read(emulator, {"text": REFERENCE_TEXT}, headers=headers), 401, "INVALID_AUTH", "Invalid credentials.")


def test_any_key_is_accepted_when_configured(deepgram_emulator_factory):
    server = deepgram_emulator_factory(accept_any_key=True)

    assert read(server, {"text": REFERENCE_TEXT}, headers={"Authorization": "Token whatever"}).status_code == 200
    assert_error(read(server, {"text": REFERENCE_TEXT}, headers={}), 401, "INVALID_AUTH")


def test_get_on_read_is_405(emulator):
    response = requests.get(f"{emulator.url}{READ_QUERY}", headers=AUTH, timeout=TIMEOUT)

    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "POST"


def test_projects_lists_the_emulator_project(emulator):
    response = requests.get(f"{emulator.url}/v1/projects", headers=AUTH, timeout=TIMEOUT)

    assert response.status_code == 200
    assert emulator.stats()["project_requests"] == 1
    assert emulator.stats()["requests"] == 0, "requests counts /v1/read only"
    assert response.json() == {"projects": [{"project_id": PROJECT_ID, "name": "Deepgram Emulator"}]}
    assert uuid.UUID(response.headers["dg-request-id"])


def test_projects_with_a_wrong_key_is_401(emulator):
    response = requests.get(f"{emulator.url}/v1/projects", headers={"Authorization": "Token nope"}, timeout=TIMEOUT)

    assert_error(response, 401, "INVALID_AUTH", "Invalid credentials.")


# -- concurrency and faults -----------------------------------------------------------------


def test_requests_beyond_max_concurrency_get_429(deepgram_emulator_factory):
    server = deepgram_emulator_factory(max_concurrency=2, latency=0.5, latency_jitter=0.0)
    barrier = threading.Barrier(5)

    def call(_):
        barrier.wait()
        return read(server, {"text": REFERENCE_TEXT})

    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(call, range(5)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429, 429]
    for response in responses:
        if response.status_code == 429:
            assert_error(response, 429, "TOO_MANY_REQUESTS", "Too many requests. Please try again later.")
            assert response.headers["Retry-After"] == "1"
    stats = server.stats()
    assert stats["peak_in_flight"] == 2
    assert stats["max_in_flight"] == 2
    assert stats["requests"] == 5
    assert stats["rate_limited"] == 3
    assert stats["in_flight"] == 0


def test_latency_is_applied_with_jitter(deepgram_emulator_factory):
    server = deepgram_emulator_factory(latency=0.1, latency_jitter=0.2)
    session = requests.Session()
    read(server, {"text": "warm up the connection"}, session=session)

    elapsed = []
    for _ in range(5):
        started = time.perf_counter()
        assert read(server, {"text": REFERENCE_TEXT}, session=session).status_code == 200
        elapsed.append(time.perf_counter() - started)

    assert min(elapsed) >= 0.08
    assert max(elapsed) < 0.2


def test_error_rate_one_answers_500_or_503(deepgram_emulator_factory):
    server = deepgram_emulator_factory(error_rate=1.0, seed=3)

    statuses = []
    for _ in range(12):
        response = read(server, {"text": REFERENCE_TEXT})
        statuses.append(response.status_code)
        expected_code = {500: "INTERNAL_SERVER_ERROR", 503: "SERVICE_UNAVAILABLE"}[response.status_code]
        assert_error(response, response.status_code, expected_code)

    assert set(statuses) == {500, 503}
    assert server.stats()["server_errors"] == 12


def test_rate_limit_rate_one_answers_429_with_retry_after(deepgram_emulator_factory):
    server = deepgram_emulator_factory(rate_limit_rate=1.0, retry_after=7)

    for _ in range(3):
        response = read(server, {"text": REFERENCE_TEXT})
        assert_error(response, 429, "TOO_MANY_REQUESTS")
        assert response.headers["Retry-After"] == "7"
    assert server.stats()["rate_limited"] == 3


def test_drop_rate_one_closes_the_connection_without_a_response(deepgram_emulator_factory):
    server = deepgram_emulator_factory(drop_rate=1.0)
    session = requests.Session()

    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            read(server, {"text": REFERENCE_TEXT}, session=session)
    stats = server.stats()
    assert stats["dropped"] == 3
    assert stats["by_status"] == {}
    assert stats["in_flight"] == 0


def test_spike_delays_requests_past_a_client_timeout(deepgram_emulator_factory):
    server = deepgram_emulator_factory(spike_rate=1.0, spike_latency=0.4)

    with pytest.raises(requests.Timeout):
        read(server, {"text": REFERENCE_TEXT}, timeout=0.15)
    started = time.perf_counter()
    assert read(server, {"text": REFERENCE_TEXT}).status_code == 200
    assert time.perf_counter() - started >= 0.35


def test_faults_repeat_with_the_same_seed(deepgram_emulator_factory):
    def run(seed):
        server = deepgram_emulator_factory(error_rate=0.3, rate_limit_rate=0.3, seed=seed)
        return [read(server, {"text": REFERENCE_TEXT}).status_code for _ in range(20)]

    first, second, other = run(11), run(11), run(12)

    assert first == second
    assert {200, 429} <= set(first)
    assert set(first) & {500, 503}
    assert first != other


def test_invalid_fault_settings_are_refused():
    from airflow_provider_dgsentiment.emulator import EmulatorConfig

    with pytest.raises(ValueError, match="error_rate"):
        EmulatorConfig(error_rate=1.5)
    with pytest.raises(ValueError, match="must not exceed 1"):
        EmulatorConfig(error_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError, match="max_concurrency"):
        EmulatorConfig(max_concurrency=0)


# -- stats ----------------------------------------------------------------------------------


def test_stats_count_requests_by_outcome(emulator):
    read(emulator, {"text": REFERENCE_TEXT}, query=f"{READ_QUERY}&tag=nightly&tag=airflow")
    read(emulator, {"text": LONG_WORDS}, query=f"{READ_QUERY}&tag=airflow&tag=airflow")
    read(emulator, {"text": REFERENCE_TEXT}, query="/v1/read?sentiment=true&tag=airflow")
    read(emulator, {"text": REFERENCE_TEXT}, headers={})

    stats = emulator.stats()
    assert stats == {
        "requests": 4,
        "rate_limited": 0,
        "peak_in_flight": 1,
        # Every /v1/read request's tags, whatever its answer; once per request.
        "tags": {"nightly": 1, "airflow": 3},
        "by_status": {"200": 2, "400": 1, "401": 1},
        "server_errors": 0,
        "dropped": 0,
        "in_flight": 0,
        "max_in_flight": 1,
        "scored_texts": 2,
        "input_tokens": 22 + 17,
        "project_requests": 0,
    }
    over_http = requests.get(f"{emulator.url}/_emulator/stats", timeout=TIMEOUT)
    assert over_http.status_code == 200
    assert over_http.headers["Content-Type"].startswith("application/json")
    assert over_http.json() == stats


def test_peak_in_flight_counts_concurrent_requests(deepgram_emulator_factory):
    server = deepgram_emulator_factory(max_concurrency=10, latency=0.3, latency_jitter=0.0)
    barrier = threading.Barrier(4)

    def call(_):
        barrier.wait()
        return read(server, {"text": REFERENCE_TEXT}).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(call, range(4))) == [200] * 4
    assert read(server, {"text": REFERENCE_TEXT}).status_code == 200  # alone: the peak stays

    stats = requests.get(f"{server.url}/_emulator/stats", timeout=TIMEOUT).json()
    assert (stats["requests"], stats["peak_in_flight"], stats["rate_limited"]) == (5, 4, 0)


@pytest.mark.parametrize("path", ["/_emulator/stats/reset", "/_emulator/reset"])
def test_stats_reset_over_http(emulator, path):
    read(emulator, {"text": REFERENCE_TEXT}, query=f"{READ_QUERY}&tag=nightly")

    response = requests.post(f"{emulator.url}{path}", timeout=TIMEOUT)

    assert response.status_code == 200
    assert response.json() == emulator.stats()
    assert emulator.stats()["requests"] == 0
    assert emulator.stats()["by_status"] == {}
    assert emulator.stats()["tags"] == {}
    assert emulator.stats()["peak_in_flight"] == 0


def test_stats_need_no_key_and_only_answer_their_methods(emulator):
    assert requests.get(f"{emulator.url}/_emulator/stats", headers={"Authorization": "Token nope"}, timeout=TIMEOUT).ok
    assert requests.get(f"{emulator.url}/_emulator/stats/reset", timeout=TIMEOUT).status_code == 405
    assert requests.post(f"{emulator.url}/_emulator/stats", timeout=TIMEOUT).status_code == 405


# -- lifecycle ------------------------------------------------------------------------------


def test_server_lifecycle_and_context_manager():
    from airflow_provider_dgsentiment.emulator import EmulatorServer

    with EmulatorServer(api_key="lifecycle-key") as server:
        url = server.url
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        response = requests.post(
            f"{url}{READ_QUERY}",
            json={"text": "Good."},
            headers={"Authorization": "Token lifecycle-key"},
            timeout=TIMEOUT,
        )
        assert response.status_code == 200
        with pytest.raises(RuntimeError, match="already running"):
            server.start()

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_emulator/stats", timeout=TIMEOUT)
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018


@pytest.mark.parametrize(
    ("peer", "status"),
    [("127.0.0.1", 200), ("127.8.9.10", 200), ("::1", 200), ("::ffff:127.0.0.1", 200), ("192.0.2.7", 403)],
)
def test_stats_answer_loopback_clients_only(peer, status):
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    from airflow_provider_dgsentiment.emulator.server import Emulator, EmulatorConfig

    emulator = Emulator(EmulatorConfig(api_key="k"))
    emulator.stats.arrived(["nightly"])
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40_000) if name == "peername" else default

    async def ask():
        stats = await emulator._handle_stats(make_mocked_request("GET", "/_emulator/stats", transport=transport))
        reset = await emulator._handle_reset(make_mocked_request("POST", "/_emulator/stats/reset", transport=transport))
        return stats, reset

    stats, reset = asyncio.run(ask())

    assert (stats.status, reset.status) == (status, status)
    assert emulator.stats.snapshot()["requests"] == (0 if status == 200 else 1), "a refused reset zeroes nothing"
