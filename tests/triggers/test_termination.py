"""SIGTERM stops the triggers: under ``airflow dags test`` (``dag.test()`` runs them in line) and in the worker.

Each test runs a DAG in a child process, waits until its trigger (or task) is at work, sends
SIGTERM, and checks the process ends soon, that no request is sent after the signal beyond
those already in flight, and that what was scored is stored.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Airflow 2.11's own SIGTERM handler raises out of ``dag.test()`` before the run logs its stop,
#: so the log lines are checked on Airflow 3 only; what was sent and stored is checked on both.
AIRFLOW_3 = int(__import__("airflow").__version__.split(".")[0]) >= 3
#: The nightly example's requests in flight per scoring task (its MAX_CONCURRENCY: the account limit, shared through the budget).
CONCURRENCY = 10

#: ``dag.test()`` of the nightly example (``airflow dags test`` runs the same), the sensor tuned by argv.
CHILD = textwrap.dedent(
    """
    import json, sys
    from tests.support.dags import load_dag

    kind, source = sys.argv[1], sys.argv[2]
    dag = load_dag("deepgram_sentiment_nightly.py")
    sensor = dag.get_task("wait_for_texts")
    sensor.deferrable, sensor.poke_interval, sensor.timeout, sensor.soft_fail = True, 1, 600, False
    dag.get_task("score_shard").retries = 0  # the try SIGTERM stopped is the last: what it sent is what it paid
    conf = {"source": source, "deferrable": kind == "trigger"}
    print("STATE", dag.test(run_conf=conf).state, flush=True)
    """
)


def sqlite_conn(db: Path) -> str:
    return json.dumps({"conn_type": "sqlite", "host": str(db)})


def start_child(kind: str, source: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, source],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, child: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if child.poll() is not None:
            raise AssertionError(f"the run ended before {what}:\n{child.communicate()[0][-3000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.05)


def terminate(child: subprocess.Popen, timeout: float = 60) -> str:
    """SIGTERM, then the output once the process ended by itself (within ``timeout``)."""
    child.send_signal(signal.SIGTERM)
    try:
        return child.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        child.kill()
        raise AssertionError(
            f"the process ignored SIGTERM for {timeout:.0f} s:\n{child.communicate()[0][-3000:]}"
        ) from None


def failed_on_sigterm(output: str) -> bool:
    """The DAG run ended failed: Airflow 3's ``dag.test()`` returns a failed run; Airflow 2.11's own
    SIGTERM handler raises ``AirflowTaskTerminated`` out of ``dag.test()`` after ``on_kill``."""
    return "STATE failed" in output or "AirflowTaskTerminated: Task received SIGTERM signal" in output


def test_sigterm_stops_a_deferrable_sensor_under_dag_test(airflow_db, tmp_path):
    """The sensor's trigger polls in line (timeout=600); SIGTERM ends it, and the task fails."""
    source = f"file://{tmp_path}/in/*.txt"
    (tmp_path / "in").mkdir()
    child = start_child("sensor", source, {"AIRFLOW_CONN_DGSENTIMENT_SQLITE": sqlite_conn(tmp_path / "scores.db")})
    output: list[str] = []

    def polling() -> bool:
        # The trigger logs each look; read lines until one says it is looking again.
        line = child.stdout.readline()
        output.append(line)
        return "looking again in" in line

    wait_for(polling, child, "poll by the trigger")
    started = time.monotonic()
    rest = terminate(child)
    assert time.monotonic() - started < 60
    text = "".join(output) + rest
    assert failed_on_sigterm(text), text[-3000:]
    assert "got SIGTERM" in text or not AIRFLOW_3


@pytest.mark.parametrize("kind", ["trigger", "worker"])
def test_sigterm_stops_sending_and_stores_what_was_scored(kind, airflow_db, tmp_path, deepgram_emulator_factory):
    """The scoring run stops on SIGTERM (the trigger in line, or the task via on_kill): no new request; stored."""
    from tests.reliability.helpers import write_documents

    write_documents(tmp_path / "in", 400)
    db = tmp_path / "scores.db"
    slow = deepgram_emulator_factory(latency=0.1, max_concurrency=50)
    env = {
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT": json.dumps(
            {"conn_type": "deepgram", "host": slow.url, "password": slow.api_key}
        ),
        "AIRFLOW_CONN_DGSENTIMENT_SQLITE": sqlite_conn(db),
    }
    child = start_child(kind, f"file://{tmp_path}/in/*.txt", env)
    wait_for(lambda: slow.stats()["requests"] >= 100, child, "100 requests")
    at_signal = slow.stats()["requests"]
    output = terminate(child)
    sent = slow.stats()["requests"]
    assert failed_on_sigterm(output), output[-3000:]
    assert "Stopped before the end" in output or not AIRFLOW_3
    # Requests already on their way when the signal came may still arrive; no new one is sent.
    assert sent - at_signal <= CONCURRENCY, f"{sent - at_signal} requests after SIGTERM"
    with sqlite3.connect(db) as connection:
        stored = connection.execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()[0]
    assert sent - CONCURRENCY <= stored <= sent, f"{stored} stored of {sent} sent"
    print(f"\n{kind}: SIGTERM after {at_signal} requests; {sent} sent in all; {stored} stored")
