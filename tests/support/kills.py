"""Kill a scoring run part-way (the worker, or the triggerer running its trigger), then retry it; count what was paid.

A run is a child process (``kill -9``: no clean-up code runs) scoring ``documents`` through a
slow emulator, in one of three output modes (SQL only, ``results_path`` only, both) and on one
of two paths (``worker``: ``execute``; ``deferrable``: the trigger, as a triggerer runs it).
Once the emulator has seen ``kill_at`` requests the child is killed; the retry runs in this
process (a new try of the task, or the restarted triggerer running the same trigger) against
a second emulator. Re-paid requests are the requests of both tries beyond one per document.
Used by tests/reliability/test_durable_kills.py and benchmarks/durability.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.operator_runs import RUN_ID, defer, make_operator, resume, run, trigger_event

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_CONN_ID = "dgs_kills_sqlite"
MODES = ("sql", "results_path", "both")
PATHS = ("worker", "deferrable")
DAG_ID = "test_sentiment_operator"

CHILD = """
import json, sys
from tests.support.kills import score
score(json.loads(sys.argv[1]))
print("FINISHED", flush=True)
"""


@dataclass(frozen=True)
class KillSpec:
    """One kill-and-retry: where the documents are, where results go, how the run goes."""

    mode: str
    path: str
    source: str
    db: str
    results: str
    max_concurrency: int

    @classmethod
    def under(cls, root: Path, mode: str, path: str, max_concurrency: int) -> KillSpec:
        """A run over ``root/in/*.txt`` storing into ``root/scores.db`` and ``root/results``."""
        return cls(
            mode=mode,
            path=path,
            source=f"file://{root}/in/*.txt",
            db=str(root / "scores.db"),
            results=str(root / "results"),
            max_concurrency=max_concurrency,
        )

    def operator_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "source": self.source,
            "xcom_output": "manifest",
            "max_concurrency": self.max_concurrency,
        }
        if self.mode in ("sql", "both"):
            kwargs["sql_conn_id"] = SQL_CONN_ID
        if self.mode in ("results_path", "both"):
            kwargs["results_path"] = f"file://{self.results}"
        return kwargs


@dataclass(frozen=True)
class KillOutcome:
    """What the two tries sent and what the retry returned."""

    documents: int
    sent_before_kill: int
    sent_by_retry: int
    manifest: dict[str, Any]

    @property
    def repaid(self) -> int:
        return self.sent_before_kill + self.sent_by_retry - self.documents


def connection_env(spec: KillSpec, server: Any) -> dict[str, str]:
    """The Airflow connections of a run against ``server`` (environment variables)."""
    return {
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT": json.dumps(
            {"conn_type": "deepgram", "host": server.url, "password": server.api_key}
        ),
        f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}": json.dumps({"conn_type": "sqlite", "host": spec.db}),
    }


def score(spec_json: dict[str, Any]) -> Any:
    """Run the task (worker) or its trigger (deferrable) to the end; return the manifest (or the trigger's event)."""
    spec = KillSpec(**spec_json)
    if spec.path == "worker":
        return run(make_operator(**spec.operator_kwargs()))
    deferred = defer(make_operator(deferrable=True, **spec.operator_kwargs()))
    event = trigger_event(deferred)
    return resume(deferred, event, deferrable=True, **spec.operator_kwargs())


def kill_part_way(spec: KillSpec, server: Any, kill_at: int, *, timeout: float = 120.0) -> int:
    """Start the run in a child process, ``kill -9`` it once ``server`` saw ``kill_at`` requests; return all it sent."""
    env = {**os.environ, **connection_env(spec, server)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec.__dict__)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while server.stats()["requests"] < kill_at:
            if child.poll() is not None:
                raise AssertionError(f"the run ended before the kill:\n{child.communicate()[0][-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {kill_at} requests within {timeout:.0f} s")
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        output = child.communicate(timeout=30)[0]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if "FINISHED" in output or child.returncode != -signal.SIGKILL:
        raise AssertionError(f"the run was not killed (status {child.returncode}):\n{output[-3000:]}")
    return int(server.stats()["requests"])


def kill_and_retry(spec: KillSpec, slow: Any, fast: Any, documents: int, kill_at: int) -> KillOutcome:
    """Kill the run at ``kill_at`` requests to ``slow``, retry it against ``fast``; return what each try sent."""
    sent_before_kill = kill_part_way(spec, slow, kill_at)
    saved = {name: os.environ.get(name) for name in connection_env(spec, fast)}
    os.environ.update(connection_env(spec, fast))
    fast.reset_stats()
    try:
        manifest = score(spec.__dict__)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return KillOutcome(documents, sent_before_kill, int(fast.stats()["requests"]), manifest)


def task_folder(results: str) -> Path:
    return Path(results) / f"dag_id={DAG_ID}" / f"run_id={RUN_ID}" / "task_id=score" / "map_index=-1"


def result_lines(results: str) -> list[dict[str, Any]]:
    """Every line of every part of the task's folder."""
    lines = []
    for part in sorted(task_folder(results).glob("part-*.jsonl")):
        lines += [json.loads(line) for line in part.read_text().splitlines()]
    return lines


def write_documents(folder: Path, count: int) -> list[str]:
    """``count`` short distinct documents; return their URIs."""
    folder.mkdir(parents=True, exist_ok=True)
    uris = []
    for i in range(count):
        path = folder / f"doc-{i:05d}.txt"
        path.write_text(f"Order {i} arrived on time and I am happy with it.", encoding="utf-8")
        uris.append(f"file://{path}")
    return uris
