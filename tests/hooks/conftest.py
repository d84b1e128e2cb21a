"""Fixtures of the hook and engine tests: the scripted loopback stand-in, recorded retry sleeps, a closed port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stand_in import StandIn


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    """A scripted loopback server; point the connection at ``stand_in.url``."""
    server = StandIn()
    try:
        yield server
    finally:
        server.stop()


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
