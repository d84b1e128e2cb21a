"""Pytest fixtures that run the Deepgram emulator (registered through the ``pytest11`` entry point).

- ``deepgram_emulator``: one emulator for the whole session, on a free port, key
  :data:`TEST_API_KEY`, ``max_concurrency=10``, no faults. It has ``.url``,
  ``.api_key``, ``.stats()`` (the dict ``GET /_emulator/stats`` returns:
  ``requests``, ``rate_limited``, ``peak_in_flight``, ``tags``, ...) and
  ``.reset_stats()``. It is shared, so a test that asserts on its counters calls
  ``reset_stats()`` first (or compares against a ``stats()`` taken before).
- ``deepgram_emulator_factory``: call it with :class:`EmulatorConfig` keyword
  arguments to get a started emulator of your own; all are stopped at teardown::

      def test_retries(deepgram_emulator_factory):
          server = deepgram_emulator_factory(error_rate=1.0, seed=7)

This module is imported by every pytest run in an environment where the package
is installed, so it imports the server only inside the fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_dgsentiment.emulator.server import EmulatorServer

#: The key the fixtures' emulators accept.
TEST_API_KEY = "emulator-test-key"


@pytest.fixture(scope="session")
def deepgram_emulator() -> Iterator[EmulatorServer]:
    """Yield a running emulator shared by the session (key ``emulator-test-key``, no faults)."""
    from airflow_provider_dgsentiment.emulator.server import EmulatorConfig, EmulatorServer

    server = EmulatorServer(EmulatorConfig(host="127.0.0.1", port=0, api_key=TEST_API_KEY, max_concurrency=10))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def deepgram_emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Yield a function that starts an emulator from ``EmulatorConfig`` keyword arguments."""
    from airflow_provider_dgsentiment.emulator.server import EmulatorConfig, EmulatorServer

    servers: list[EmulatorServer] = []

    def start(**kwargs: Any) -> EmulatorServer:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        kwargs.setdefault("api_key", TEST_API_KEY)
        server = EmulatorServer(EmulatorConfig(**kwargs))
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.stop()
