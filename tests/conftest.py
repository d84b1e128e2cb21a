"""Test set-up shared by the whole suite.

Airflow reads its configuration at import, so the environment is set here,
before any test module imports Airflow: a private AIRFLOW_HOME with a SQLite
metadata DB, no example DAGs, and this repo's ``example_dags/`` as DAG folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("AIRFLOW_HOME", str(REPO_ROOT / ".airflow-home" / "tests"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "example_dags"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)

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
    message = f"{what} not available: {env_var} is not set (start it with `make services` or run `make test`)"
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

    monkeypatch.setattr("airflow_provider_dgsentiment.engine.retry_sleep", short_sleep)
    return asked
