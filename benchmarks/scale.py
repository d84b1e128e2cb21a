"""Scale benchmark: big runs through the operator, in the worker and through the trigger, against the emulator.

Run it from the repository root with the project's virtualenv (``make benchmark-scale``)::

    .venv/bin/python benchmarks/scale.py
    .venv/bin/python benchmarks/scale.py --text-sizes 2000 20000 --record-size 20000

One emulator (``python -m airflow_provider_dgsentiment.emulator --max-concurrency 50
--latency 0.05``) runs in its own process; the bound is ``50 / 0.05 = 1000`` documents per
second. Each case runs in a fresh child process (this script with ``--child``) that measures
its own wall time, CPU time (``time.process_time``, all threads) and peak RSS (``VmHWM`` of
``/proc/self/status``, the child's own high-water mark):

- ``worker``: N ``file://`` text documents, ``sql_conn_id`` SQLite, ``xcom_output="manifest"``;
- ``deferrable``: the same through the triggerer's path: ``execute`` raises ``TaskDeferred``,
  the child rebuilds the trigger from its serialized kwargs (as the triggerer does), runs
  ``DeepgramSentimentTrigger.run()`` and resumes with ``execute_complete``; "event bytes" is
  ``len(json.dumps(event.payload))``;
- ``jsonl.gz``: one gzipped JSONL file of M records (``id_field="id"``) into SQLite;
- ``sql rows``: an M-row SQLite table (``sql=``) scored into another SQLite database.

"XCom bytes" is ``len(json.dumps(return value))``. The input files are written once into a
cache folder under /tmp (``--cache``) and reused. The clock covers the operator's own work
(listing, reading, scoring, writing rows), not interpreter start-up or writing the inputs.
This prints figures, not verdicts: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emulator_process import EmulatorProcess  # benchmarks/ is on sys.path when a benchmark runs as a script

API_KEY = "scale-benchmark-key"
MAX_CONCURRENCY = 50
LATENCY = 0.05
BOUND = MAX_CONCURRENCY / LATENCY
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "dgsentiment-scale-cache"
RESULT_CONN_ID = "scale_results"
SOURCE_CONN_ID = "scale_source"
CHILD_TIMEOUT = 4 * 3600
TEMPLATES = (
    "Review {i}: the product arrived on time and works great. I love it.",
    "Review {i}: it broke after two days and support never answered. Awful.",
    "Note {i}: the package contains a manual and a cable.",
    "Ticket {i}: the app crashes when I open settings, please fix it soon.",
)


def make_text(index: int) -> str:
    return TEMPLATES[index % len(TEMPLATES)].format(i=index)


# ---------------------------------------------------------------------- inputs (cached)


def text_folder(cache: Path, count: int) -> Path:
    """``count`` text files, written once."""
    folder = cache / f"text-{count}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            (folder / f"doc-{index:07d}.txt").write_text(make_text(index), encoding="utf-8")
        done.write_text("ok")
    return folder


def jsonl_file(cache: Path, count: int) -> Path:
    path = cache / f"records-{count}.jsonl.gz"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with gzip.open(partial, "wt", encoding="utf-8", compresslevel=1) as out:
            for index in range(count):
                out.write(json.dumps({"id": f"r{index:07d}", "text": make_text(index)}) + "\n")
        partial.rename(path)
    return path


def sql_table(cache: Path, count: int) -> Path:
    path = cache / f"tickets-{count}.db"
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        with sqlite3.connect(partial) as connection:
            connection.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT)")
            connection.executemany(
                "INSERT INTO tickets (id, body) VALUES (?, ?)", ((i, make_text(i)) for i in range(count))
            )
        partial.rename(path)
    return path


# ---------------------------------------------------------------------- the child


def peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(case: str, count: int, cache: Path, result_file: Path) -> None:
    """Run one case in this fresh process and write what it measured as JSON."""
    from types import SimpleNamespace

    from airflow.providers.common.compat.sdk import DAG, ObjectStoragePath, TaskDeferred
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook  # noqa: F401  (imported before the clock)

    from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator

    workdir = Path(tempfile.mkdtemp(prefix="dgs-scale-"))
    results_db = workdir / "results.db"
    os.environ[f"AIRFLOW_CONN_{RESULT_CONN_ID.upper()}"] = json.dumps({"conn_type": "sqlite", "host": str(results_db)})
    kwargs: dict[str, Any] = {
        "sql_conn_id": RESULT_CONN_ID,
        "xcom_output": "manifest",
        "max_concurrency": MAX_CONCURRENCY,
        "on_error": "skip",
        "progress_interval": 60.0,
    }
    if case in ("worker", "deferrable"):
        folder = text_folder(cache, count)
        kwargs["source"] = f"file://{folder}/*.txt"
        ObjectStoragePath(f"file://{folder}").fs  # noqa: B018  (loads the filesystem registry before the clock)
    elif case == "jsonl.gz":
        kwargs.update(source=f"file://{jsonl_file(cache, count)}", id_field="id")
    else:
        source_db = sql_table(cache, count)
        os.environ[f"AIRFLOW_CONN_{SOURCE_CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "sqlite", "host": str(source_db)}
        )
        kwargs.update(
            sql="SELECT id, body FROM tickets", sql_source_conn_id=SOURCE_CONN_ID, text_field="body", id_field="id"
        )
    with DAG(dag_id="benchmark_scale", schedule=None):
        operator = DeepgramSentimentOperator(task_id="score", deferrable=case == "deferrable", **kwargs)
    context = {"run_id": "manual__scale", "ti": SimpleNamespace(map_index=-1), "params": {}}
    operator.render_template_fields(context)

    event_bytes = None
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    if case == "deferrable":
        try:
            operator.execute(context)
            raise RuntimeError("the operator did not defer")
        except TaskDeferred as deferred:
            from airflow.providers.common.compat.module_loading import import_string

            classpath, trigger_kwargs = deferred.trigger.serialize()
            trigger = import_string(classpath)(**json.loads(json.dumps(trigger_kwargs)))

            async def first_event():
                async for event in trigger.run():
                    return event

            event = asyncio.run(first_event())
            event_bytes = len(json.dumps(event.payload))
            value = getattr(operator, deferred.method_name)(context, event=event.payload, **(deferred.kwargs or {}))
    else:
        value = operator.execute(context)
    seconds = time.perf_counter() - wall_started
    cpu_seconds = time.process_time() - cpu_started
    with sqlite3.connect(results_db) as connection:
        rows = connection.execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()[0]
    result_file.write_text(
        json.dumps(
            {
                "case": case,
                "n": count,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "peak_rss_mb": peak_rss_mb(),
                "event_bytes": event_bytes,
                "xcom_bytes": len(json.dumps(value)),
                "scored": value["scored"],
                "failed": value["failed"],
                "rows": rows,
            }
        )
    )


# ---------------------------------------------------------------------- the parent


def run_case(emulator: EmulatorProcess, case: str, count: int, cache: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dgs-scale-result-") as scratch:
        result_file = Path(scratch) / "result.json"
        connection = {"conn_type": "deepgram", "host": emulator.url, "password": API_KEY}
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(Path(scratch) / "airflow-home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_DEEPGRAM_DEFAULT": json.dumps({**connection, "extra": {"max_concurrency": MAX_CONCURRENCY}}),
        }
        before = emulator.stats()
        command = [sys.executable, os.path.abspath(__file__), "--child", case, str(count)]
        command += ["--cache", str(cache), "--result", str(result_file)]
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        after = emulator.stats()
        if completed.returncode != 0 or not result_file.exists():
            tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-8:])
            raise RuntimeError(f"case {case} N={count} failed (exit {completed.returncode}):\n{tail}")
        result = json.loads(result_file.read_text())
    result["requests"] = after["requests"] - before["requests"]
    result["rate_limited"] = after["rate_limited"] - before["rate_limited"]
    return result


COLUMNS = ("case", "N", "seconds", "docs/s", "% of bound", "event bytes", "XCom bytes", "peak RSS MB", "CPU s", "429s")


def row(result: dict[str, Any]) -> list[str]:
    rate = result["scored"] / result["seconds"] if result["seconds"] else 0.0
    return [
        result["case"],
        str(result["n"]),
        f"{result['seconds']:.1f}",
        f"{rate:.0f}",
        f"{100 * rate / BOUND:.0f}%",
        "-" if result["event_bytes"] is None else str(result["event_bytes"]),
        str(result["xcom_bytes"]),
        f"{result['peak_rss_mb']:.0f}",
        f"{result['cpu_seconds']:.1f}",
        str(result["rate_limited"]),
    ]


def table(results: list[dict[str, Any]]) -> str:
    rows = [list(COLUMNS)] + [row(result) for result in results]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(cells, widths)) for cells in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def rss_ratios(results: list[dict[str, Any]], sizes: list[int]) -> list[str]:
    lines = []
    if len(sizes) < 2:
        return lines
    small, big = min(sizes), max(sizes)
    for case in ("worker", "deferrable"):
        peaks = {result["n"]: result["peak_rss_mb"] for result in results if result["case"] == case}
        if small in peaks and big in peaks:
            lines.append(f"peak RSS {big}/{small} {case}: {peaks[big] / peaks[small]:.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--record-size", type=int, default=200_000)
    parser.add_argument("--cases", default="worker,deferrable,jsonl.gz,sql rows")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.cache, args.result)
        return

    args.cache.mkdir(parents=True, exist_ok=True)
    cases = [case.strip() for case in args.cases.split(",")]
    plan = [(case, n) for case in ("worker", "deferrable") if case in cases for n in args.text_sizes]
    plan += [(case, args.record_size) for case in ("jsonl.gz", "sql rows") if case in cases]
    print(f"Preparing inputs in {args.cache} (written once, then reused) ...", flush=True)
    for case, n in plan:
        if case in ("worker", "deferrable"):
            text_folder(args.cache, n)
        elif case == "jsonl.gz":
            jsonl_file(args.cache, n)
        else:
            sql_table(args.cache, n)
    print(
        f"Emulator: --max-concurrency {MAX_CONCURRENCY} --latency {LATENCY} -> bound {BOUND:.0f} docs/s; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    results = []
    with EmulatorProcess(api_key=API_KEY, max_concurrency=MAX_CONCURRENCY, latency=LATENCY) as emulator:
        for case, n in plan:
            result = run_case(emulator, case, n, args.cache)
            results.append(result)
            note = (
                "" if result["rows"] == result["scored"] else f" ({result['rows']} rows for {result['scored']} scored)"
            )
            print(f"  done: {' | '.join(row(result))}{note}", flush=True)
    print()
    print(table(results))
    for line in rss_ratios(results, args.text_sizes):
        print(line)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
