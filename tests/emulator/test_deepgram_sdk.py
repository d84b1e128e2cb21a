"""The official deepgram-sdk (7.x) works against the emulator unchanged."""

from __future__ import annotations

import asyncio

import pytest

deepgram = pytest.importorskip("deepgram")

from deepgram import AsyncDeepgramClient, DeepgramClient  # noqa: E402
from deepgram.core.api_error import ApiError  # noqa: E402
from deepgram.environment import DeepgramClientEnvironment  # noqa: E402

from airflow_provider_dgsentiment.emulator.pytest_plugin import TEST_API_KEY  # noqa: E402
from airflow_provider_dgsentiment.emulator.server import MODEL_UUID, PROJECT_ID  # noqa: E402

REFERENCE_TEXT = (
    "Hi. Thank you for calling from premier phone services. "
    "This call may be recorded for quality and training purposes."
)


def environment_for(server) -> DeepgramClientEnvironment:
    """Point every SDK base URL at the emulator (only ``base`` is used by REST calls)."""
    websocket = server.url.replace("http://", "ws://", 1)
    return DeepgramClientEnvironment(base=server.url, production=websocket, agent=websocket, agent_rest=server.url)


def test_sdk_analyzes_text(deepgram_emulator):
    client = DeepgramClient(api_key=TEST_API_KEY, environment=environment_for(deepgram_emulator))

    response = client.read.v1.text.analyze(request={"text": REFERENCE_TEXT}, sentiment=True, language="en")

    sentiments = response.results.sentiments
    assert [(int(s.start_word), int(s.end_word), s.sentiment) for s in sentiments.segments] == [
        (0, 8, "positive"),
        (9, 18, "neutral"),
    ]
    assert sentiments.segments[0].text == "Hi. Thank you for calling from premier phone services."
    assert sentiments.segments[0].sentiment_score == pytest.approx(0.3612)
    assert sentiments.average.sentiment == "neutral"
    assert sentiments.average.sentiment_score == pytest.approx(0.3612 / 2)
    # The SDK's model nests metadata one level deeper than the API sends it; the
    # documented flat fields survive as extras.
    assert response.metadata.language == "en"
    assert response.metadata.sentiment_info["model_uuid"] == MODEL_UUID
    assert response.metadata.sentiment_info["input_tokens"] == 22


def test_sdk_raw_response_carries_the_request_id_header(deepgram_emulator):
    client = DeepgramClient(api_key=TEST_API_KEY, environment=environment_for(deepgram_emulator))

    raw = client.read.v1.text.with_raw_response.analyze(request={"text": "I hate this."}, sentiment=True, language="en")

    assert raw.headers["dg-request-id"] == raw.data.metadata.request_id
    assert raw.data.results.sentiments.average.sentiment == "negative"


def test_sdk_lists_projects(deepgram_emulator):
    client = DeepgramClient(api_key=TEST_API_KEY, environment=environment_for(deepgram_emulator))

    projects = client.manage.v1.projects.list().projects

    assert [(p.project_id, p.name) for p in projects] == [(PROJECT_ID, "Deepgram Emulator")]


def test_sdk_errors_carry_the_emulator_body(deepgram_emulator):
    environment = environment_for(deepgram_emulator)

    with pytest.raises(ApiError) as auth_error:
        DeepgramClient(api_key="wrong", environment=environment).read.v1.text.analyze(
            request={"text": REFERENCE_TEXT}, sentiment=True, language="en"
        )
    assert auth_error.value.status_code == 401
    assert auth_error.value.body["err_code"] == "INVALID_AUTH"

    client = DeepgramClient(api_key=TEST_API_KEY, environment=environment)
    with pytest.raises(ApiError) as language_error:
        client.read.v1.text.analyze(request={"text": REFERENCE_TEXT}, sentiment=True, language="es")
    assert language_error.value.status_code == 400
    assert language_error.value.body["err_msg"] == (
        "Request specified unsupported language: es. Only English is supported."
    )


def test_sdk_retries_429_honouring_retry_after(deepgram_emulator_factory):
    server = deepgram_emulator_factory(rate_limit_rate=1.0, retry_after=1)
    client = DeepgramClient(api_key=TEST_API_KEY, environment=environment_for(server), max_retries=1)

    with pytest.raises(ApiError) as exc_info:
        client.read.v1.text.analyze(request={"text": REFERENCE_TEXT}, sentiment=True, language="en")

    assert exc_info.value.status_code == 429
    assert server.stats()["rate_limited"] == 2  # the first try and one retry


def test_async_sdk_analyzes_text(deepgram_emulator):
    async def analyze():
        client = AsyncDeepgramClient(api_key=TEST_API_KEY, environment=environment_for(deepgram_emulator))
        return await asyncio.gather(
            *(
                client.read.v1.text.analyze(request={"text": REFERENCE_TEXT}, sentiment=True, language="en")
                for _ in range(5)
            )
        )

    responses = asyncio.run(analyze())

    assert len({r.metadata.request_id for r in responses}) == 5
    assert {len(r.results.sentiments.segments) for r in responses} == {2}
