"""Test set-up shared by the whole suite.

Airflow reads its configuration at import, so the environment is set here,
before any test module imports Airflow: a private AIRFLOW_HOME with a SQLite
metadata DB, no example DAGs, and this repo's ``example_dags/`` as DAG folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.stand_in import KEY, StandIn, set_conn  # noqa: F401  (KEY: the stand-in connection's key)

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("AIRFLOW_HOME", str(REPO_ROOT / ".airflow-home" / "tests"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "example_dags"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
# Loopback only: the Snowflake connector probes cloud metadata services (169.254.169.254) to
# report the platform, and botocore looks there for credentials; neither may leave the machine.
os.environ.setdefault("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# gcsfs (2026.3 on) first asks each bucket its storage layout over gRPC with TLS; gcp-storage-emulator
# speaks HTTP only, so each probe retries for 60 s and, its answer not cached, again on the next call.
# gcsfs reads this switch at import (README, "Object stores"): the plain HTTP filesystem, as before 2026.3.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)


def _home_fernet_key(home: Path) -> str:
    """
    The test home's Fernet key, kept in a file beside its DB so every process agrees.

    Without it, this process may read an empty key (the home's airflow.cfg not yet
    written) while a subprocess (``airflow dags reserialize``, ``dags test``) writes one
    and stores encrypted trigger kwargs this process then cannot read.
    """
    import configparser

    from cryptography.fernet import Fernet

    written = configparser.ConfigParser(interpolation=None)
    written.read(home / "airflow.cfg")
    if written.get("core", "fernet_key", fallback=""):
        return written.get("core", "fernet_key")  # a home made before this key file existed
    key_file = home / "fernet.key"
    if not key_file.exists():
        key_file.write_text(Fernet.generate_key().decode())
        key_file.chmod(0o600)
    return key_file.read_text().strip()


os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", _home_fernet_key(Path(os.environ["AIRFLOW_HOME"])))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(env_var: str, what: str) -> str:
    """
    Return the address of a server started by scripts/services.sh.

    Outside CI a missing server skips the test with the reason; in CI it fails it,
    because there the servers must run.
    """
    value = os.environ.get(env_var)
    if value:
        return value
    missing_in_ci(f"{what} not available: {env_var} is not set (start it with `make services` or run `make test`)")


def missing_in_ci(message: str) -> NoReturn:
    """Skip the test saying what is missing; in CI fail it, because there everything must be present."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite in the test AIRFLOW_HOME)."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture
def deepgram_conn(monkeypatch, deepgram_emulator):
    """Point ``deepgram_default`` at the session emulator and return the key it accepts."""
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": deepgram_emulator.url, "password": deepgram_emulator.api_key}),
    )
    return deepgram_emulator


@pytest.fixture
def log_text(caplog, capsys):
    """Return everything logged so far: Airflow 3 logs through structlog to stdout, Airflow 2 to logging."""
    import logging

    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def read() -> str:
        captured = capsys.readouterr()
        seen.append(captured.out + captured.err)
        from airflow import __version__ as airflow_version

        if int(airflow_version.split(".")[0]) < 3:
            # Airflow 2: the root logger's console handler echoes every record to stdout too.
            return caplog.text
        return caplog.text + "".join(seen)

    return read


@pytest.fixture
def sleeps_fast(monkeypatch):
    """Shorten the engine's retry sleeps to at most 10 ms (and record what was asked for)."""
    import asyncio

    asked: list[float] = []

    async def short_sleep(seconds: float) -> None:
        asked.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))

    monkeypatch.setattr("airflow_provider_dgsentiment.client.engine.retry_sleep", short_sleep)
    return asked


# ---------------------------------------------------------------------- shared fixtures

SQL_CONN_ID = "dgs_test_sqlite"
POSITIVE = "I absolutely love this product. It is wonderful and works great!"
NEGATIVE = "This is terrible. I hate it and the support was awful."
NEUTRAL = "The package arrived on Tuesday. It contains a manual."


@pytest.fixture
def sqlite_db(tmp_path, monkeypatch) -> Path:
    """A SQLite connection ``dgs_test_sqlite`` to a fresh file; returns the file."""
    import json

    path = tmp_path / "sentiment.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


@pytest.fixture
def inbox(tmp_path) -> Path:
    """A folder with three text files: a (positive), b (negative), c (neutral)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text(POSITIVE)
    (folder / "b.txt").write_text(NEGATIVE)
    (folder / "c.txt").write_text(NEUTRAL)
    return folder


def sentiment_body(text: str, score: float = 0.5) -> dict:
    """A valid /v1/read response body for ``text`` with one segment."""
    import uuid

    words = text.split()
    label = "positive" if score > 0.333 else "negative" if score < -0.333 else "neutral"
    return {
        "metadata": {
            "request_id": str(uuid.uuid4()),
            "created": "2024-05-01T00:00:00.000Z",
            "language": "en",
            "sentiment_info": {"model_uuid": "mock-model", "input_tokens": len(words), "output_tokens": len(words)},
        },
        "results": {
            "sentiments": {
                "segments": [
                    {
                        "text": text,
                        "start_word": 0,
                        "end_word": max(len(words) - 1, 0),
                        "sentiment": label,
                        "sentiment_score": score,
                    }
                ],
                "average": {"sentiment": label, "sentiment_score": score},
            }
        },
    }


class StandInAPI:
    """
    Deepgram's ``/v1/read`` played by the loopback :class:`tests.support.stand_in.StandIn`, answering per text.

    ``answer(text)`` returns None (a valid positive result), ``(status, body)`` or
    ``(status, body, headers)`` (a dict body is sent as JSON, a string as it is); ``texts``
    records what was sent and ``call_count`` how many requests arrived.
    """

    def __init__(self) -> None:
        import threading

        self.answer = lambda text: None
        self.texts: list[str] = []
        self.lock = threading.Lock()
        self.stand_in = None

    def start(self) -> StandInAPI:
        from tests.support.stand_in import StandIn

        self.stand_in = StandIn()
        self.stand_in.answer(self._respond)
        return self

    @property
    def url(self) -> str:
        return self.stand_in.url

    @property
    def call_count(self) -> int:
        return self.stand_in.call_count

    def _respond(self, recorded):
        from tests.support.stand_in import Answer

        text = recorded.json().get("text", "")
        with self.lock:
            self.texts.append(text)
        answer = self.answer(text)
        if answer is None:
            answer = (200, sentiment_body(text))
        status, body, *rest = answer
        headers = dict(rest[0]) if rest else {}
        if isinstance(body, dict):
            request_id = body.get("request_id") or body.get("metadata", {}).get("request_id", "rid")
            headers.setdefault("dg-request-id", str(request_id))
            return Answer(status, json=body, headers=headers)
        return Answer(status, text=str(body), headers=headers)

    def stop(self) -> None:
        if self.stand_in is not None:
            self.stand_in.stop()


@pytest.fixture
def mock_deepgram(monkeypatch):
    """Point ``deepgram_default`` at a loopback :class:`StandInAPI` that answers every text positively.

    Returns the stand-in: set ``answer`` (text -> None, ``(status, body)`` or ``(status, body, headers)``);
    ``texts`` and ``call_count`` tell what arrived (``mocker.call_count`` too, as in requests_mock).
    """
    import json

    api = StandInAPI().start()
    api.mocker = api
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps(
            {"conn_type": "deepgram", "host": api.url, "password": "mock-key-5f1c2b7e9d", "extra": {"max_retries": 0}}
        ),
    )
    yield api
    api.stop()


def airflow_serde():
    """Return Airflow's ``serialize``/``deserialize``, what the task runner stores trigger kwargs with."""
    try:
        from airflow.sdk.serde import deserialize, serialize
    except ImportError:  # Airflow 2
        from airflow.serialization.serde import deserialize, serialize
    return serialize, deserialize


# ---- the hook and engine tests: the scripted loopback stand-in, recorded retry sleeps, a closed port


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

    monkeypatch.setattr("airflow_provider_dgsentiment.client.engine.retry_sleep", record)
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
