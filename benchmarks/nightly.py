"""Nightly benchmark: an incremental night over N text objects of which 1% changed, 0.2's way beside 0.3's.

Run it from the repository root with the project's virtualenv (``make benchmark`` runs the default)::

    .venv/bin/python benchmarks/nightly.py                      # 10,000 objects
    .venv/bin/python benchmarks/nightly.py --objects 100000     # the issue's 100k (a few minutes)
    .venv/bin/python benchmarks/nightly.py --week 10000         # also the week of dated exports, full size

Every object is already scored (the averages table holds its fingerprint) and 1% of them were
rewritten since. Each case runs in a fresh child process against one emulator
(``--max-concurrency 50 --latency 0``, so requests cost their own work, not a simulated wait):

- ``0.2 (read all)``: 0.2's behaviour: every object is read and fingerprinted, the changed ones
  sent. It is this code with the load history's lookup turned off (``LoadHistory.loads`` answers
  nothing), which is exactly what 0.2 did for text objects;
- ``0.3 upgrade night``: the first 0.3 night after an upgrade: no load history yet, so every object
  is read once (nothing is sent: the fingerprints match) and the history is recorded;
- ``0.3 (listing)``: the next night, 1% changed: a listing (sizes and modification times), the
  changed objects read and sent.

"Reads" counts the objects read (``read_document`` calls, what are GETs on an object store); the
S3 test ``test_unchanged_objects_are_not_read_again_on_s3`` counts real GETs on the S3 server.
"Requests" are the emulator's own count. ``--week N`` adds the week of dated exports: 7 nights
of one export of N tickets (then 1% changed and 1% new each day), requests and rows per night.
This prints figures, not verdicts: it asserts nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emulator_process import EmulatorProcess  # benchmarks/ is on sys.path when a benchmark runs as a script

API_KEY = "nightly-benchmark-key"
MAX_CONCURRENCY = 50
RESULT_CONN_ID = "nightly_results"
CHILD_TIMEOUT = 3 * 3600
CHANGED_SHARE = 0.01
TEMPLATES = (
    "Review {i}: the product arrived on time and works great. I love it.",
    "Review {i}: it broke after two days and support never answered. Awful.",
    "Note {i}: the package contains a manual and a cable.",
)


def make_text(index: int, version: int = 0) -> str:
    return TEMPLATES[(index + version) % len(TEMPLATES)].format(i=index) + (f" (edit {version})" if version else "")


# ---------------------------------------------------------------------- the child: one night


def child(case: str, folder: Path, database: Path, result_file: Path) -> None:
    """Run one night in this fresh process; write what it measured as JSON."""
    from types import SimpleNamespace

    from airflow.providers.common.compat.sdk import DAG, ObjectStoragePath
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook  # noqa: F401  (imported before the clock)

    from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator
    from airflow_provider_dgsentiment.storage import load_history, sources

    os.environ[f"AIRFLOW_CONN_{RESULT_CONN_ID.upper()}"] = json.dumps({"conn_type": "sqlite", "host": str(database)})
    reads = {"objects": 0}
    read_document = sources.read_document

    def counted_read(*args: Any, **kwargs: Any) -> str:
        reads["objects"] += 1
        return read_document(*args, **kwargs)

    sources.read_document = counted_read  # type: ignore[assignment]
    if case == "0.2":
        load_history.LoadHistory.loads = lambda self, objects: {}  # type: ignore[method-assign]
    if case == "seed":
        seed(folder, database)
        result_file.write_text(json.dumps({"case": case}))
        return
    ObjectStoragePath(f"file://{folder}").fs  # noqa: B018  (loads the filesystem registry before the clock)
    with DAG(dag_id="benchmark_nightly", schedule=None):
        operator = DeepgramSentimentOperator(
            task_id="score",
            source=f"file://{folder}/",
            sql_conn_id=RESULT_CONN_ID,
            xcom_output="manifest",
            max_concurrency=MAX_CONCURRENCY,
            progress_interval=600.0,
        )
    context = {"run_id": f"manual__{case}", "ti": SimpleNamespace(map_index=-1), "params": {}}
    operator.render_template_fields(context)
    started = time.perf_counter()
    manifest = operator.execute(context)
    seconds = time.perf_counter() - started
    result_file.write_text(
        json.dumps(
            {
                "case": case,
                "seconds": seconds,
                "reads": reads["objects"],
                "documents": manifest["documents"],
                "scored": manifest["scored"],
                "unchanged": manifest["unchanged"],
            }
        )
    )


def seed(folder: Path, database: Path) -> None:
    """Store every object of ``folder`` as scored (as a night of 0.2 or 0.3 leaves them), without requests."""
    from airflow_provider_dgsentiment.client.results import SentimentResult
    from airflow_provider_dgsentiment.storage.sources import fingerprint
    from airflow_provider_dgsentiment.storage.warehouse import RunIdentity, ScoredDocument, WarehouseWriter

    body = {
        "metadata": {"request_id": "seed", "language": "en", "sentiment_info": {"input_tokens": 9, "output_tokens": 9}},
        "results": {
            "sentiments": {
                "segments": [
                    {"text": "x", "start_word": 0, "end_word": 1, "sentiment": "neutral", "sentiment_score": 0}
                ],
                "average": {"sentiment": "neutral", "sentiment_score": 0},
            }
        },
    }
    result = SentimentResult.from_response(body)
    with WarehouseWriter(RESULT_CONN_ID, run=RunIdentity("seed", "seed", "seed"), write_batch_size=5000) as writer:
        writer.ensure_tables()
        writer.write(
            ScoredDocument(f"file://{path}", fingerprint(path.read_text()), result, "en", location=f"file://{path}")
            for path in sorted(folder.iterdir())
        )


# ---------------------------------------------------------------------- the parent


class Nights:
    """Runs children against one emulator, each a fresh process, and reads back what they measured."""

    def __init__(self, emulator: EmulatorProcess, scratch: Path) -> None:
        self.emulator = emulator
        self.scratch = scratch

    def run(self, case: str, folder: Path, database: Path) -> dict[str, Any]:
        result_file = self.scratch / f"{case}.json"
        connection = {"conn_type": "deepgram", "host": self.emulator.url, "password": API_KEY}
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.scratch / "airflow-home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_DEEPGRAM_DEFAULT": json.dumps({**connection, "extra": {"max_concurrency": MAX_CONCURRENCY}}),
        }
        before = self.emulator.stats()["requests"]
        command = [sys.executable, os.path.abspath(__file__), "--child", case, str(folder), str(database)]
        command += ["--result", str(result_file)]
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        if completed.returncode != 0 or not result_file.exists():
            tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-12:])
            raise RuntimeError(f"night {case} failed (exit {completed.returncode}):\n{tail}")
        result = json.loads(result_file.read_text())
        result["requests"] = self.emulator.stats()["requests"] - before
        return result


def nightly(nights: Nights, scratch: Path, count: int) -> list[dict[str, Any]]:
    folder = scratch / f"objects-{count}"
    folder.mkdir()
    for index in range(count):
        (folder / f"doc-{index:07d}.txt").write_text(make_text(index), encoding="utf-8")
    seeded = scratch / "seeded.db"
    nights.run("seed", folder, seeded)
    database_02, database_03 = scratch / "v02.db", scratch / "v03.db"
    shutil.copy(seeded, database_02)
    shutil.copy(seeded, database_03)
    upgrade = nights.run("0.3 upgrade night", folder, database_03)
    step = max(1, round(1 / CHANGED_SHARE))
    for index in range(0, count, step):  # 1% rewritten since
        (folder / f"doc-{index:07d}.txt").write_text(make_text(index, 1), encoding="utf-8")
    old = nights.run("0.2", folder, database_02)
    old["case"] = "0.2 (read all)"
    new = nights.run("0.3", folder, database_03)
    new["case"] = "0.3 (listing)"
    return [old, upgrade, new]


def week(nights: Nights, scratch: Path, tickets: int) -> list[tuple[int, int, int, int, float]]:
    """Seven dated exports of every ticket, 1% changed and 1% new each day: (day, records, requests, rows, s)."""
    database = scratch / "week.db"
    texts = {f"T-{number:06d}": make_text(number) for number in range(tickets)}
    step = max(1, tickets // 100)
    figures = []
    for day in range(1, 8):
        if day > 1:
            keys = sorted(texts)
            for key in keys[day::100][:step]:
                texts[key] = make_text(int(key[2:]), day)
            for number in range(len(keys), len(keys) + step):
                texts[f"T-{number:06d}"] = make_text(number, day)
        folder = scratch / f"exports-{day}"
        folder.mkdir()
        rows = "".join(json.dumps({"ticket_id": key, "body": text}) + "\n" for key, text in texts.items())
        (folder / "tickets.jsonl.gz").write_bytes(gzip.compress(rows.encode(), compresslevel=1))
        result = nights.run("export", folder, database)
        with sqlite3.connect(database) as connection:
            stored = connection.execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()[0]
        figures.append((day, len(texts), result["requests"], stored, result["seconds"]))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000, help="objects in the nightly folder")
    parser.add_argument("--week", type=int, default=0, help="tickets per dated export (0: no week)")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "FOLDER", "DATABASE"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        case, folder, database = arguments.child
        if case == "export":
            export_night(Path(folder), Path(database), arguments.result)
        else:
            child(case, Path(folder), Path(database), arguments.result)
        return
    with (
        EmulatorProcess(api_key=API_KEY, max_concurrency=MAX_CONCURRENCY, latency=0.0) as emulator,
        tempfile.TemporaryDirectory(prefix="dgs-nightly-") as scratch_name,
    ):
        scratch = Path(scratch_name)
        nights = Nights(emulator, scratch)
        results = nightly(nights, scratch, arguments.objects)
        print(f"\nNightly over {arguments.objects} text objects, {CHANGED_SHARE:.0%} changed (file://, SQLite):")
        print(" | ".join(("case", "seconds", "objects read (GETs)", "requests", "unchanged (not read)")))
        for result in results:
            print(
                f"{result['case']} | {result['seconds']:.1f} | {result['reads']} | {result['requests']} | "
                f"{result['unchanged']}"
            )
        if arguments.week:
            print(f"\nA week of dated exports, {arguments.week} tickets, 1% changed + 1% new a day:")
            print("day | tickets in the export | requests | rows | seconds")
            for day, records, requests, rows, seconds in week(nights, scratch, arguments.week):
                print(f"{day} | {records} | {requests} | {rows} | {seconds:.1f}")


def export_night(folder: Path, database: Path, result_file: Path) -> None:
    """One night of the week: the operator over that day's export, keyed by ticket_id."""
    from types import SimpleNamespace

    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator

    os.environ[f"AIRFLOW_CONN_{RESULT_CONN_ID.upper()}"] = json.dumps({"conn_type": "sqlite", "host": str(database)})
    with DAG(dag_id="benchmark_week", schedule=None):
        operator = DeepgramSentimentOperator(
            task_id="score",
            source=f"file://{folder}/tickets.jsonl.gz",
            id_field="ticket_id",
            text_field="body",
            sql_conn_id=RESULT_CONN_ID,
            xcom_output="manifest",
            max_concurrency=MAX_CONCURRENCY,
            progress_interval=600.0,
        )
    context = {"run_id": "manual__week", "ti": SimpleNamespace(map_index=-1), "params": {}}
    operator.render_template_fields(context)
    started = time.perf_counter()
    manifest = operator.execute(context)
    result_file.write_text(json.dumps({"seconds": time.perf_counter() - started, "scored": manifest["scored"]}))


if __name__ == "__main__":
    main()
