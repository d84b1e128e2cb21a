"""Throughput benchmark: the provider against the local emulator, side by side with plain clients.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python benchmarks/throughput.py
    .venv/bin/python benchmarks/throughput.py --n 200 1000 --paths hook,requests --json out.json

Every request goes to an emulator (``python -m airflow_provider_dgsentiment.emulator``)
started in its own process on 127.0.0.1, so its CPU is not counted as client CPU and
the client does not share its GIL. One run does two things:

1. **Emulator ceiling.** An emulator with no latency and a concurrency limit of 1000 is
   hammered by an asyncio client with 50 requests in flight; the answered requests per
   second show that the emulator is not what limits the measurements below.
2. **Paths.** An emulator with ``--latency L`` (±20% jitter) and ``--max-concurrency C``
   scores N distinct short documents, for each N, through:

   - ``operator``: N ``.txt`` files -> ``DeepgramSentimentOperator`` -> SQLite tables;
   - ``hook``: ``DeepgramSentimentHook.analyze_many`` with C in flight;
   - ``requests``: a plain sequential ``requests.Session`` loop;
   - ``sdk``: the official ``deepgram-sdk`` in a sequential loop.

   The sequential paths take L seconds a document, so they score at most
   ``--sequential-cap`` documents (1000 by default; the table says so): throughput is
   what is compared. Right before each hook and operator measurement, a minimal
   asyncio client (aiohttp) with C in flight sends up to 1000 requests to the same
   emulator: the reference for what any client gets once the emulator's and the
   loopback's own time per request is added to L, on the machine as loaded right then
   (column "x ref"; the 1-minute load average is in the JSON).

The best any client can do is the bound ``C / L`` documents per second (10 / 0.05 s =
200 docs/s). For each path and N the table gives seconds, docs/s, the ratio to that
bound, failed documents, the 429 answers the emulator gave (its stats delta), the
client's CPU seconds per 1000 documents (``time.process_time`` of the client process,
all threads) and its peak RSS (``ru_maxrss``; "RSS +MB" is its growth during the
scoring). Each measurement runs in a fresh child process (this script in worker mode),
so one path's memory does not hide another's. The clock and the CPU counter cover what
the path's own code does (connection lookup, listing files, creating tables, opening
TCP connections, scoring, writing rows) but not interpreter start-up, library imports
(including the filesystem modules Airflow loads on the first ``ObjectStoragePath``) or
writing the input files; the JSON gives that preparation time as ``prepare_seconds``.

The table is followed by the same data as JSON (also written to ``--json FILE``) and a
verdict against the project's targets: hook and operator at >= 90% of the bound with no
failed document and no repeated 429s; client CPU per document and peak RSS flat (within
20%) from the smallest to the largest N; an emulator ceiling several times the bound.
This is a measurement script, not a test: it asserts nothing and always exits 0 unless
it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PATHS = ("operator", "hook", "requests", "sdk")
SEQUENTIAL_PATHS = frozenset({"requests", "sdk"})
CONCURRENT_PATHS = ("hook", "operator")

DEFAULT_NS = (1000, 10000)
DEFAULT_LATENCY = 0.05
DEFAULT_JITTER = 0.2
DEFAULT_MAX_CONCURRENCY = 10
#: Documents a sequential path scores at most (at 50 ms each, 1000 take about 50 s).
DEFAULT_SEQUENTIAL_CAP = 1000

#: The emulator-ceiling run: requests sent, requests in flight, and the emulator's own limit.
CEILING_REQUESTS = 6000
CEILING_WARMUP_REQUESTS = 300
CEILING_IN_FLIGHT = 50
CEILING_MAX_CONCURRENCY = 1000
#: The reference run: requests a minimal asyncio client sends with C in flight to the latency emulator.
REFERENCE_REQUESTS = 1000

#: Targets the verdict checks.
TARGET_SHARE_OF_BOUND = 0.90
TARGET_FLAT_GROWTH = 0.20
TARGET_CEILING_MULTIPLE = 3.0

API_KEY = "benchmark-key"
EMULATOR_SEED = 20240601
WORKER_TIMEOUT = 3600.0
REQUEST_TIMEOUT = 30.0
READ_PARAMS = {"sentiment": "true", "language": "en"}
SQLITE_CONN_ID = "bench_sqlite"
AVERAGES_TABLE = "deepgram_sentiment_averages"


# ---------------------------------------------------------------------------- documents

_SUBJECTS = (
    "The delivery",
    "Our support agent",
    "The new dashboard",
    "This invoice",
    "The checkout page",
    "The onboarding call",
    "Your mobile app",
    "The replacement part",
    "The billing team",
    "The hotel room",
)
_PREDICATES = (
    "was absolutely wonderful and fast",
    "made me really happy",
    "worked exactly as promised",
    "was fine, nothing special",
    "arrived on Tuesday",
    "is described in the attached note",
    "was late and the box was damaged",
    "crashed twice and lost my data",
    "was rude and unhelpful",
    "left me frustrated and angry",
)
_FOLLOW_UPS = (
    "I would gladly recommend it to a friend.",
    "Thanks a lot for the quick help!",
    "Please call me back about order {ref}.",
    "The reference number is {ref}.",
    "I expect a refund for order {ref}.",
    "Honestly, this is the worst service I have had.",
    "Everything else was okay.",
    "We will review it at the next meeting.",
)


def make_document(index: int) -> str:
    """Return document ``index``: 1-3 varied sentences, the same on every run, distinct per index."""
    rng = random.Random(index)
    ref = f"{index:06d}"
    sentences = [f"{rng.choice(_SUBJECTS)} {rng.choice(_PREDICATES)} (ticket {ref})."]
    for _ in range(rng.randint(0, 2)):
        sentences.append(rng.choice(_FOLLOW_UPS).format(ref=ref))
    return " ".join(sentences)


def iter_documents(count: int) -> Iterator[str]:
    """Yield the first ``count`` documents lazily (so no path holds them all)."""
    return (make_document(index) for index in range(count))


# ---------------------------------------------------------------------------- emulator process


class EmulatorProcess:
    """
    The emulator CLI in a child process on a free loopback port.

    :param latency: seconds added to each request.
    :param jitter: the latency varies uniformly by this fraction.
    :param max_concurrency: requests in flight before the emulator answers 429.
    """

    def __init__(self, *, latency: float, jitter: float, max_concurrency: int) -> None:
        self.command = [
            sys.executable,
            "-m",
            "airflow_provider_dgsentiment.emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--latency",
            str(latency),
            "--latency-jitter",
            str(jitter),
            "--max-concurrency",
            str(max_concurrency),
            "--seed",
            str(EMULATOR_SEED),
        ]
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        try:
            self.url = self._read_url()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _read_url(self) -> str:
        """Return the URL from the ``... listening on http://host:port`` line the CLI prints once bound."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if "listening on " in line:
                return line.rsplit("listening on ", 1)[1].strip()
        raise RuntimeError(f"The emulator exited with status {self.process.wait()} before listening")

    def stats(self) -> dict[str, Any]:
        """Return the emulator's counters (``GET /_emulator/stats``)."""
        with urllib.request.urlopen(f"{self.url}/_emulator/stats", timeout=10) as response:
            return json.load(response)

    def reset_stats(self) -> None:
        """Zero the emulator's counters (``POST /_emulator/reset``)."""
        request = urllib.request.Request(f"{self.url}/_emulator/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


# ---------------------------------------------------------------------------- load runs (ceiling, reference)


@dataclass
class LoadRun:
    """What a minimal asyncio client (aiohttp) got answered with a fixed number of requests in flight."""

    requests: int
    in_flight: int
    seconds: float
    failed: int
    rate_limited: int

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_second": round(self.requests_per_second, 1)}


async def _hammer(url: str, total: int, in_flight: int) -> tuple[float, int]:
    """Send ``total`` requests with ``in_flight`` at a time; return (seconds, failed)."""
    import aiohttp

    remaining = iter(range(total))
    failed = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        for index in remaining:
            async with session.post(
                f"{url}/v1/read", params=READ_PARAMS, json={"text": make_document(index)}
            ) as response:
                await response.read()
                failed += response.status != 200

    connector = aiohttp.TCPConnector(limit=in_flight)
    headers = {"Authorization": f"Token {API_KEY}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(in_flight)))
        return time.perf_counter() - started, failed


def run_load(emulator: EmulatorProcess, total: int, in_flight: int) -> LoadRun:
    """Send ``total`` requests to ``emulator`` with ``in_flight`` at a time."""
    emulator.reset_stats()
    seconds, failed = asyncio.run(_hammer(emulator.url, total, in_flight))
    return LoadRun(total, in_flight, seconds, failed, emulator.stats()["rate_limited"])


def measure_emulator_ceiling() -> LoadRun:
    """Start a latency-free emulator with a high concurrency limit; measure the requests a second it answers."""
    with EmulatorProcess(latency=0.0, jitter=0.0, max_concurrency=CEILING_MAX_CONCURRENCY) as emulator:
        run_load(emulator, CEILING_WARMUP_REQUESTS, CEILING_IN_FLIGHT)
        return run_load(emulator, CEILING_REQUESTS, CEILING_IN_FLIGHT)


# ---------------------------------------------------------------------------- paths (worker side)


@dataclass
class Outcome:
    """What one path reported after scoring its documents."""

    scored: int
    failed: int
    client_retries: int | None = None
    client_429s: int | None = None
    note: str = ""


def score_with_hook(count: int, url: str, max_concurrency: int, workdir: Path) -> Callable[[], Outcome]:
    """Prepare the hook path; the returned callable scores ``count`` documents with ``analyze_many``."""
    import requests  # noqa: F401  (imported before the clock, as in the other paths; the hook imports it lazily)

    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

    hook = DeepgramSentimentHook(max_concurrency=max_concurrency)

    def run() -> Outcome:
        scored = failed = 0
        with hook:
            for _index, outcome in hook.analyze_many(iter_documents(count)):
                if isinstance(outcome, Exception):
                    failed += 1
                else:
                    scored += 1
        return Outcome(scored, failed, client_retries=hook.retry_count, client_429s=hook.rate_limited_count)

    return run


def score_with_operator(count: int, url: str, max_concurrency: int, workdir: Path) -> Callable[[], Outcome]:
    """Prepare the operator path: write ``count`` files and a SQLite connection; return the timed run."""
    from airflow.providers.common.compat.sdk import DAG

    try:
        from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator
    except ImportError as exc:
        note = f"operator not available ({type(exc).__name__}: {exc})"
        return lambda: Outcome(0, 0, note=note)

    source_dir = workdir / "documents"
    source_dir.mkdir()
    for index, text in enumerate(iter_documents(count)):
        (source_dir / f"doc-{index:06d}.txt").write_text(text, encoding="utf-8")
    import_operator_libraries(source_dir)
    database = workdir / "bench.db"
    os.environ[f"AIRFLOW_CONN_{SQLITE_CONN_ID.upper()}"] = json.dumps({"conn_type": "sqlite", "host": str(database)})
    with DAG(dag_id="benchmark_throughput", schedule=None):
        operator = DeepgramSentimentOperator(
            task_id="bench",
            source=f"file://{source_dir}/*.txt",
            xcom_output="summary",
            sql_conn_id=SQLITE_CONN_ID,
            max_concurrency=max_concurrency,
            on_error="skip",
        )
    context = minimal_task_context()
    operator.render_template_fields(context)

    def run() -> Outcome:
        summary = operator.execute(context)
        rows = count_rows(database, AVERAGES_TABLE)
        note = "" if rows == summary["scored"] else f"{rows} rows in {AVERAGES_TABLE} for {summary['scored']} scored"
        return Outcome(summary["scored"], summary["failed"], note=note)

    return run


def import_operator_libraries(source_dir: Path) -> None:
    """
    Import what the operator imports lazily, before the clock starts (as the other paths do).

    That is ``requests``, the SQLite provider, and the filesystem modules Airflow's providers
    manager imports on the first use of ``ObjectStoragePath`` (about 0.1 s once per process,
    loading every installed provider's filesystem, e.g. s3fs and botocore).
    """
    import requests  # noqa: F401
    from airflow.providers.common.compat.sdk import ObjectStoragePath
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook  # noqa: F401

    ObjectStoragePath(f"file://{source_dir}").fs  # noqa: B018 - touching .fs loads the filesystem registry


def minimal_task_context() -> dict[str, Any]:
    """Return the few context keys the operator reads outside a DAG run (as its unit tests build them)."""
    from types import SimpleNamespace

    return {"run_id": "manual__benchmark", "ti": SimpleNamespace(map_index=-1), "params": {}}


def count_rows(database: Path, table: str) -> int:
    """Return the rows in ``table`` of a SQLite file (0 when it does not exist)."""
    with sqlite3.connect(database) as connection:
        try:
            return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def score_with_requests(count: int, url: str, max_concurrency: int, workdir: Path) -> Callable[[], Outcome]:
    """Prepare a plain ``requests.Session``; the returned callable posts the documents one by one."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {API_KEY}"

    def run() -> Outcome:
        scored = failed = 0
        with session:
            for text in iter_documents(count):
                try:
                    response = session.post(
                        f"{url}/v1/read", params=READ_PARAMS, json={"text": text}, timeout=REQUEST_TIMEOUT
                    )
                    response.json()
                    ok = response.status_code == 200
                except (requests.RequestException, ValueError):
                    ok = False
                scored += ok
                failed += not ok
        return Outcome(scored, failed)

    return run


def score_with_sdk(count: int, url: str, max_concurrency: int, workdir: Path) -> Callable[[], Outcome]:
    """Prepare the official ``deepgram-sdk`` client at the emulator's URL; the callable scores one by one."""
    from deepgram import DeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

    websocket_url = url.replace("http://", "ws://", 1)
    environment = DeepgramClientEnvironment(base=url, production=websocket_url, agent=websocket_url, agent_rest=url)
    client = DeepgramClient(api_key=API_KEY, environment=environment)

    def run() -> Outcome:
        scored = failed = 0
        for text in iter_documents(count):
            try:
                client.read.v1.text.analyze(request={"text": text}, sentiment=True, language="en")
                scored += 1
            except Exception:  # the SDK raises its own ApiError family and httpx errors
                failed += 1
        return Outcome(scored, failed)

    return run


PREPARERS: dict[str, Callable[[int, str, int, Path], Callable[[], Outcome]]] = {
    "operator": score_with_operator,
    "hook": score_with_hook,
    "requests": score_with_requests,
    "sdk": score_with_sdk,
}


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_worker(path: str, count: int, url: str, max_concurrency: int, result_file: Path) -> None:
    """Measure one path scoring ``count`` documents in this (fresh) process; write the result as JSON."""
    with tempfile.TemporaryDirectory(prefix=f"dgbench-{path}-") as workdir:
        prepare_started = time.perf_counter()
        run = PREPARERS[path](count, url, max_concurrency, Path(workdir))
        prepare_seconds = time.perf_counter() - prepare_started
        rss_before = peak_rss_mb()
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        outcome = run()
        seconds = time.perf_counter() - wall_started
        cpu_seconds = time.process_time() - cpu_started
        result = {
            **asdict(outcome),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "peak_rss_mb": peak_rss_mb(),
            "rss_growth_mb": peak_rss_mb() - rss_before,
            "prepare_seconds": prepare_seconds,
        }
    result_file.write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------------------- measurements (parent side)


@dataclass
class Measurement:
    """One path x N row of the table."""

    path: str
    n: int
    docs: int
    seconds: float
    failed: int
    cpu_seconds: float
    peak_rss_mb: float
    rss_growth_mb: float
    prepare_seconds: float
    rate_limited: int
    max_in_flight: int
    bound: float
    load_average: float
    reference_per_second: float | None = None
    client_retries: int | None = None
    client_429s: int | None = None
    note: str = ""

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.seconds if self.seconds else 0.0

    @property
    def share_of_bound(self) -> float:
        return self.docs_per_second / self.bound

    @property
    def share_of_reference(self) -> float | None:
        return self.docs_per_second / self.reference_per_second if self.reference_per_second else None

    @property
    def cpu_seconds_per_1k(self) -> float:
        return 1000 * self.cpu_seconds / self.docs if self.docs else 0.0

    @property
    def available(self) -> bool:
        return self.docs > 0 or self.failed > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "docs_per_second": round(self.docs_per_second, 2),
            "share_of_bound": round(self.share_of_bound, 4),
            "share_of_reference": None if self.share_of_reference is None else round(self.share_of_reference, 4),
            "cpu_seconds_per_1k_docs": round(self.cpu_seconds_per_1k, 4),
        }


def worker_environment(url: str, max_concurrency: int, airflow_home: Path) -> dict[str, str]:
    """Return the environment of a worker: a private AIRFLOW_HOME and the emulator as ``deepgram_default``."""
    connection = {
        "conn_type": "deepgram",
        "host": url,
        "password": API_KEY,
        "extra": {"max_concurrency": max_concurrency},
    }
    return {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT": json.dumps(connection),
    }


def measure_path(
    path: str, n: int, docs: int, emulator: EmulatorProcess, args: argparse.Namespace, airflow_home: Path
) -> Measurement:
    """Run one path x N in a fresh worker process and combine its report with the emulator's counters."""
    with tempfile.TemporaryDirectory(prefix="dgbench-result-") as scratch:
        result_file = Path(scratch) / "result.json"
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            path,
            "--worker-docs",
            str(docs),
            "--worker-url",
            emulator.url,
            "--max-concurrency",
            str(args.max_concurrency),
            "--worker-result",
            str(result_file),
        ]
        emulator.reset_stats()
        completed = subprocess.run(
            command,
            env=worker_environment(emulator.url, args.max_concurrency, airflow_home),
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT,
        )
        stats = emulator.stats()
        if completed.returncode != 0 or not result_file.exists():
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"Worker {path} N={n} failed (exit {completed.returncode}):\n" + "\n".join(tail))
        report = json.loads(result_file.read_text(encoding="utf-8"))
    return Measurement(
        path=path,
        n=n,
        docs=report["scored"] + report["failed"],
        seconds=report["seconds"],
        failed=report["failed"],
        cpu_seconds=report["cpu_seconds"],
        peak_rss_mb=report["peak_rss_mb"],
        rss_growth_mb=report["rss_growth_mb"],
        prepare_seconds=report["prepare_seconds"],
        rate_limited=stats["rate_limited"],
        max_in_flight=stats["max_in_flight"],
        bound=args.max_concurrency / args.latency,
        load_average=round(os.getloadavg()[0], 2),
        client_retries=report["client_retries"],
        client_429s=report["client_429s"],
        note=report["note"],
    )


def documents_for(path: str, n: int, sequential_cap: int) -> int:
    """Return how many of the N documents ``path`` scores (sequential paths are capped)."""
    return min(n, sequential_cap) if path in SEQUENTIAL_PATHS else n


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def measure_with_latency(args: argparse.Namespace) -> list[Measurement]:
    """Start the emulator with the configured latency and limit; measure every path x N (and its reference)."""
    measurements = []
    with (
        tempfile.TemporaryDirectory(prefix="dgbench-airflow-") as airflow_home,
        EmulatorProcess(latency=args.latency, jitter=args.jitter, max_concurrency=args.max_concurrency) as emulator,
    ):
        for n in args.n:
            for path in args.paths:
                docs = documents_for(path, n, args.sequential_cap)
                reference = None
                if path in CONCURRENT_PATHS:
                    reference_requests = min(docs, REFERENCE_REQUESTS)
                    progress(
                        f"reference N={n:<6} aiohttp, {args.max_concurrency} in flight, {reference_requests} requests"
                    )
                    reference = run_load(emulator, reference_requests, args.max_concurrency)
                progress(f"{path:<9} N={n:<6} scoring {docs} documents")
                measurement = measure_path(path, n, docs, emulator, args, Path(airflow_home))
                if reference is not None:
                    measurement.reference_per_second = reference.requests_per_second
                if docs < n:
                    cap_note = f"capped at {docs} of {n} (sequential)"
                    measurement.note = f"{cap_note}; {measurement.note}" if measurement.note else cap_note
                measurements.append(measurement)
    return measurements


# ---------------------------------------------------------------------------- report


TABLE_COLUMNS = (
    ("path", "{:<9}"),
    ("N", "{:>6}"),
    ("docs", "{:>6}"),
    ("seconds", "{:>8}"),
    ("docs/s", "{:>7}"),
    ("x bound", "{:>7}"),
    ("x ref", "{:>6}"),
    ("failed", "{:>6}"),
    ("429s", "{:>5}"),
    ("CPU s/1k", "{:>8}"),
    ("peak RSS MB", "{:>11}"),
    ("RSS +MB", "{:>7}"),
    ("note", "{}"),
)


def format_row(measurement: Measurement) -> list[str]:
    if not measurement.available:
        return [measurement.path, str(measurement.n), *["-"] * (len(TABLE_COLUMNS) - 3), measurement.note]
    return [
        measurement.path,
        str(measurement.n),
        str(measurement.docs),
        f"{measurement.seconds:.2f}",
        f"{measurement.docs_per_second:.1f}",
        f"{measurement.share_of_bound:.1%}",
        "-" if measurement.share_of_reference is None else f"{measurement.share_of_reference:.1%}",
        str(measurement.failed),
        str(measurement.rate_limited),
        f"{measurement.cpu_seconds_per_1k:.2f}",
        f"{measurement.peak_rss_mb:.1f}",
        f"{measurement.rss_growth_mb:.1f}",
        measurement.note,
    ]


def format_table(measurements: Sequence[Measurement]) -> str:
    """Return the measurements as a fixed-width text table."""
    header = "  ".join(fmt.format(name) for name, fmt in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    for measurement in measurements:
        cells = format_row(measurement)
        lines.append("  ".join(fmt.format(cell) for (_, fmt), cell in zip(TABLE_COLUMNS, cells)).rstrip())
    return "\n".join(lines)


def format_header(bound: float, args: argparse.Namespace, ceiling: LoadRun | None) -> str:
    """Return the lines above the table: the bound and the emulator ceiling."""
    lines = [
        f"Bound: max_concurrency / latency = {args.max_concurrency} / {args.latency} s = {bound:.0f} docs/s "
        f"(a sequential client's is 1 / latency = {1 / args.latency:.0f} docs/s = {1 / args.max_concurrency:.0%} of it)"
    ]
    if ceiling is not None:
        lines.append(
            f"Emulator ceiling (latency 0, {ceiling.in_flight} in flight, {ceiling.requests} requests): "
            f"{ceiling.requests_per_second:.0f} req/s = {ceiling.requests_per_second / bound:.1f} x bound, "
            f"{ceiling.failed} failed"
        )
    lines.append(
        f"x ref: docs/s over a minimal aiohttp client's req/s with {args.max_concurrency} in flight on the same "
        "emulator, measured just before"
    )
    return "\n".join(lines)


def growth(first: float, last: float) -> float:
    """Return the relative change from ``first`` to ``last``."""
    return (last - first) / first if first else 0.0


def build_verdict(measurements: Sequence[Measurement], ceiling: LoadRun | None, bound: float) -> dict[str, Any]:
    """Check the measurements against the project's targets."""
    available = [m for m in measurements if m.available]
    verdict: dict[str, Any] = {}
    for path in CONCURRENT_PATHS:
        rows = [m for m in available if m.path == path]
        if rows:
            verdict[f"{path}_share_of_bound"] = {str(m.n): round(m.share_of_bound, 4) for m in rows}
            verdict[f"{path}_reference_share_of_bound"] = {
                str(m.n): round((m.reference_per_second or 0.0) / bound, 4) for m in rows
            }
            verdict[f"{path}_at_least_90pct"] = all(m.share_of_bound >= TARGET_SHARE_OF_BOUND for m in rows)
            verdict[f"{path}_429s"] = {str(m.n): m.rate_limited for m in rows}
    verdict["zero_failed"] = all(m.failed == 0 for m in available)
    verdict["flat"] = {}
    for path in dict.fromkeys(m.path for m in available):
        rows = sorted((m for m in available if m.path == path), key=lambda m: m.n)
        if len(rows) < 2 or rows[0].docs == rows[-1].docs:
            continue  # a capped sequential path scored the same documents at every N
        cpu_growth = growth(rows[0].cpu_seconds_per_1k, rows[-1].cpu_seconds_per_1k)
        rss_growth = growth(rows[0].peak_rss_mb, rows[-1].peak_rss_mb)
        verdict["flat"][path] = {
            "cpu_per_doc_growth": round(cpu_growth, 4),
            "peak_rss_growth": round(rss_growth, 4),
            "within_20pct": abs(cpu_growth) <= TARGET_FLAT_GROWTH and abs(rss_growth) <= TARGET_FLAT_GROWTH,
        }
    if ceiling is not None:
        verdict["emulator_ceiling_req_per_s"] = round(ceiling.requests_per_second, 1)
        verdict["emulator_ceiling_x_bound"] = round(ceiling.requests_per_second / bound, 2)
        verdict["emulator_not_bottleneck"] = ceiling.requests_per_second >= TARGET_CEILING_MULTIPLE * bound
    busiest = max((m.load_average for m in measurements), default=0.0)
    verdict["max_load_average"] = busiest
    verdict["machine_was_busy"] = busiest > (os.cpu_count() or 1)
    return verdict


def format_verdict(verdict: dict[str, Any], bound: float) -> str:
    """Return the verdict as a few human-readable lines."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "NO"

    def per_n(values: dict[str, Any], fmt: str) -> str:
        return ", ".join(f"N={n}: {value:{fmt}}" for n, value in values.items())

    lines = ["Verdict", "-------"]
    for path in CONCURRENT_PATHS:
        if f"{path}_at_least_90pct" in verdict:
            lines.append(
                f"{path:<8} >= 90% of bound ({bound:.0f} docs/s): {yes(verdict[f'{path}_at_least_90pct'])}"
                f"  [{per_n(verdict[f'{path}_share_of_bound'], '.1%')}]"
                f"  (reference client: [{per_n(verdict[f'{path}_reference_share_of_bound'], '.1%')}])"
                f"  429s [{per_n(verdict[f'{path}_429s'], 'd')}]"
            )
    lines.append(f"zero failed documents (all paths): {yes(verdict['zero_failed'])}")
    for path, flat in verdict["flat"].items():
        lines.append(
            f"{path:<8} CPU/doc and peak RSS flat from smallest to largest N (within 20%): "
            f"{yes(flat['within_20pct'])}  [CPU/doc {flat['cpu_per_doc_growth']:+.1%}, "
            f"peak RSS {flat['peak_rss_growth']:+.1%}]"
        )
    if "emulator_ceiling_req_per_s" in verdict:
        lines.append(
            f"emulator ceiling / bound: {verdict['emulator_ceiling_req_per_s']:.0f} / {bound:.0f} = "
            f"{verdict['emulator_ceiling_x_bound']:.1f} x; not the bottleneck "
            f"(>= {TARGET_CEILING_MULTIPLE:.0f} x): {yes(verdict['emulator_not_bottleneck'])}"
        )
    if verdict["machine_was_busy"]:
        lines.append(
            f"WARNING: other work shared the machine (1-minute load average up to {verdict['max_load_average']:.1f} "
            f"on {os.cpu_count()} CPUs): throughput is lower and noisier than on an idle machine; compare with x ref"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line


def parse_paths(value: str) -> list[str]:
    paths = [path.strip() for path in value.split(",") if path.strip()]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown or not paths:
        raise argparse.ArgumentTypeError(f"paths must be a comma-separated subset of {','.join(PATHS)}")
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark the Deepgram sentiment provider against the local emulator.",
    )
    parser.add_argument(
        "--n", type=int, nargs="+", default=list(DEFAULT_NS), help="document counts (default: 1000 10000)"
    )
    parser.add_argument(
        "--latency", type=float, default=DEFAULT_LATENCY, help="emulator latency in seconds (default: 0.05)"
    )
    parser.add_argument("--jitter", type=float, default=DEFAULT_JITTER, help="latency jitter fraction (default: 0.2)")
    parser.add_argument(
        "--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY, help="requests in flight (default: 10)"
    )
    parser.add_argument("--paths", type=parse_paths, default=list(PATHS), help=f"default: {','.join(PATHS)}")
    parser.add_argument(
        "--sequential-cap", type=int, default=DEFAULT_SEQUENTIAL_CAP, help="documents a sequential path scores at most"
    )
    parser.add_argument("--skip-ceiling", action="store_true", help="do not measure the emulator ceiling")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    # Worker mode: one measurement in a fresh process (used by this script itself).
    parser.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-docs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-url", help=argparse.SUPPRESS)
    parser.add_argument("--worker-result", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.worker_docs, args.worker_url, args.max_concurrency, args.worker_result)
        return 0

    bound = args.max_concurrency / args.latency
    load_at_start = os.getloadavg()
    ceiling = None
    if not args.skip_ceiling:
        progress(f"emulator ceiling: aiohttp with {CEILING_IN_FLIGHT} in flight, {CEILING_REQUESTS} requests")
        ceiling = measure_emulator_ceiling()
    measurements = measure_with_latency(args)
    verdict = build_verdict(measurements, ceiling, bound)
    report = {
        "config": {
            "n": args.n,
            "latency": args.latency,
            "jitter": args.jitter,
            "max_concurrency": args.max_concurrency,
            "bound_docs_per_second": bound,
            "sequential_cap": args.sequential_cap,
            "cpus": os.cpu_count(),
            "load_average_start": [round(load, 2) for load in load_at_start],
            "load_average_end": [round(load, 2) for load in os.getloadavg()],
            "python": sys.version.split()[0],
        },
        "emulator_ceiling": None if ceiling is None else ceiling.to_dict(),
        "results": [m.to_dict() for m in measurements],
        "verdict": verdict,
    }
    print(format_header(bound, args, ceiling))
    print()
    print(format_table(measurements))
    print()
    print(json.dumps(report, indent=2))
    print()
    print(format_verdict(verdict, bound))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
