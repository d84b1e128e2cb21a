"""Fixtures of the hook and engine tests: the scripted loopback stand-in, recorded retry sleeps, a closed port."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.stand_in import StandIn

#: The key of the connection the stand-in tests use (it must never show up anywhere).
KEY = "dg-secret-key-0123456789"


def ok_body(text="Hello there.", request_id="req-ok"):
    words = text.split()
    return {
        "metadata": {
            "request_id": request_id,
            "created": "2023-12-01T15:54:39.681Z",
            "language": "en",
            "sentiment_info": {"model_uuid": "m-1", "input_tokens": 3, "output_tokens": 3},
        },
        "results": {
            "sentiments": {
                "segments": [
                    {
                        "text": text,
                        "start_word": 0,
                        "end_word": len(words) - 1,
                        "sentiment": "positive",
                        "sentiment_score": 0.5,
                    }
                ],
                "average": {"sentiment": "positive", "sentiment_score": 0.5},
            }
        },
    }


def set_conn(monkeypatch, host, **extra):
    extra.setdefault("max_retries", 3)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": host, "password": KEY, "extra": extra}),
    )


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    """A scripted loopback server; point the connection at ``stand_in.url``."""
    server = StandIn()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def conn(monkeypatch, stand_in):
    """``deepgram_default`` pointed at the stand-in (plain http is allowed on loopback)."""
    set_conn(monkeypatch, stand_in.url)
    return stand_in


@pytest.fixture
def hook():
    """A hook on ``deepgram_default``, closed after the test."""
    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

    with DeepgramSentimentHook() as made:
        yield made


@pytest.fixture
def sleeps(monkeypatch):
    """Record the engine's retry delays instead of sleeping them."""
    recorded: list[float] = []

    async def record(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr("airflow_provider_dgsentiment.engine.retry_sleep", record)
    return recorded


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, like the triggerer."""
    return "asyncio"
