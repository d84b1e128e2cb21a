"""Throughput benchmark: the provider's engine against the local emulator, side by side with a plain loop.

Run it from the repository root with the project's virtualenv (``make benchmark``)::

    .venv/bin/python benchmarks/throughput.py
    .venv/bin/python benchmarks/throughput.py --in-flight 10 50 --seconds 4 --json out.json

It prints figures and ratios side by side in one run; it grades nothing (no pass/fail).

Part 1, one client. For each ``in flight`` value C (10, 50, 100), an emulator is started
in its own process with ``--max-concurrency C --latency 0.05`` (±20% jitter), so the bound
is ``C / 0.05`` documents per second. Each path runs in a fresh child process (this script
in worker mode), so imports, memory and CPU of one path do not leak into another:

- ``plain``: a plain aiohttp loop (C coroutines, one session, no retries, no provider
  code): the floor any client pays for the same HTTP;
- ``hook``: ``DeepgramSentimentHook.analyze_many`` with the hook's defaults (the sync driver:
  the engine on the hook's private loop thread, texts read in the calling thread; the host's
  account budget leased, the run's ``max_concurrency`` of C above the connection's 10);
- ``trigger``: ``DeepgramSentimentHook.aanalyze_many`` on a running loop, as the triggerer
  runs it;
- ``requests`` (extra row, first C only): a sequential ``requests.Session`` loop.

Columns: docs/s, share of the bound, ratio to the plain loop's docs/s, client CPU ms per
document (``time.process_time()`` of the child, all threads, over the scoring only),
CPU/doc ratio to the plain loop, peak RSS of the child, 429s.

Part 2, several tasks on one account. One emulator with ``--max-concurrency 10`` (bound
200 docs/s) and 4 worker processes, each running ``analyze_many(max_concurrency=10)`` at
once. Reported: the docs/s of all four together, the share of the bound, the share of
requests answered 429 (from the emulator's ``GET /_emulator/stats`` when it has the
``rate_limited`` counter, else the hooks' own counters), failed documents. Variants:
``split`` (each worker given a fixed share by hand, 3+3+2+2: the pool arithmetic users
would otherwise do; no 429 is possible, so it is the reference for the machine as loaded),
``aimd`` (each worker's adaptive window alone, with slow start; ``aimd@DECREASE/INCREASE/slow|noslow``
passes another :class:`EngineTuning`) and ``budget`` (the hook's default: the workers lease
their share of the account from the host's budget, :mod:`client.account_budget`).
``--repeat N`` runs every variant N times (rows side by side, to see the spread).

The figures depend on the machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulator_process import EmulatorProcess  # benchmarks/ is on sys.path when a benchmark runs as a script

API_KEY = "benchmark-key"
LATENCY = 0.05
JITTER = 0.2
DEFAULT_IN_FLIGHT = (10, 50, 100)
#: Seconds of scoring each measurement aims at (documents = bound * seconds).
DEFAULT_SECONDS = 5.0
SHARED_WORKERS = 4
SHARED_LIMIT = 10
SHARED_DOCS_PER_WORKER = 500
#: Seconds the shared-account workers get for their imports before they all start scoring.
SHARED_START_DELAY = 15.0
REQUESTS_DOCS = 100
EMULATOR_SEED = 1234
REPO_ROOT = Path(__file__).resolve().parent.parent


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


def iter_documents(count: int, offset: int = 0) -> Iterator[str]:
    """Yield documents ``offset .. offset+count-1`` lazily (so no path holds them all)."""
    return (make_document(offset + index) for index in range(count))


# ---------------------------------------------------------------------------- emulator process


# ---------------------------------------------------------------------------- worker mode (one child)


def _connection_env(url: str) -> None:
    os.environ["AIRFLOW_CONN_DEEPGRAM_DEFAULT"] = json.dumps(
        {"conn_type": "deepgram", "host": url, "password": API_KEY, "extra": {"max_retries": 20}}
    )


async def _plain_loop(url: str, count: int, in_flight: int, offset: int) -> dict[str, Any]:
    import aiohttp

    documents = iter_documents(count, offset)
    failed = rate_limited = 0
    headers = {"Authorization": f"Token {API_KEY}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failed, rate_limited
        for text in documents:
            async with session.post(
                f"{url}/v1/read?sentiment=true&language=en", data=json.dumps({"text": text}).encode()
            ) as response:
                body = await response.read()
                if response.status != 200:
                    failed += 1
                    rate_limited += response.status == 429
                else:
                    json.loads(body)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(in_flight)))
    return {"failed": failed, "rate_limited": rate_limited}


def _hook_counts(hook: Any, outcomes: Iterator[Any]) -> dict[str, Any]:
    failed = sum(isinstance(outcome, Exception) for _, outcome in outcomes)
    return {"failed": failed, "rate_limited": hook.rate_limited_count, "requests": hook.request_count}


def run_worker(
    path: str,
    url: str,
    count: int,
    in_flight: int,
    offset: int,
    aimd: str | None,
    start_at: float,
    budget: str = "off",
) -> dict[str, Any]:
    """Score ``count`` documents through ``path``; return the measurement (imports not counted)."""
    _connection_env(url)
    import aiohttp  # noqa: F401  (imported before the clock starts, like the provider's own imports)

    from airflow_provider_dgsentiment.client.tuning import EngineTuning
    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

    tuning = EngineTuning()
    if aimd:
        decrease, increase, slow_start = aimd.split("/")
        tuning = EngineTuning(
            decrease_factor=float(decrease), additive_increase=float(increase), slow_start=slow_start == "slow"
        )
    hook = DeepgramSentimentHook(tuning=tuning, account_budget=budget)
    _ = hook.settings  # the connection is read before the clock starts
    if start_at:  # several workers start scoring together, after their imports
        time.sleep(max(0.0, start_at - time.time()))
    started_at = time.time()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    if path == "plain":
        counts = asyncio.run(_plain_loop(url, count, in_flight, offset))
    elif path == "hook":
        counts = _hook_counts(hook, hook.analyze_many(iter_documents(count, offset), max_concurrency=in_flight))
    elif path == "trigger":

        async def drive() -> list[Any]:
            return [item async for item in hook.aanalyze_many(iter_documents(count, offset), max_concurrency=in_flight)]

        counts = _hook_counts(hook, iter(asyncio.run(drive())))
    elif path == "requests":
        import requests

        failed = 0
        with requests.Session() as session:
            session.headers.update({"Authorization": f"Token {API_KEY}"})
            for text in iter_documents(count, offset):
                response = session.post(
                    f"{url}/v1/read", params={"sentiment": "true", "language": "en"}, json={"text": text}, timeout=30
                )
                failed += response.status_code != 200
                response.json()
        counts = {"failed": failed, "rate_limited": 0}
    else:
        raise SystemExit(f"unknown path {path!r}")
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    hook.close()
    return {
        "path": path,
        "documents": count,
        "started_at": started_at,
        "ended_at": started_at + wall,
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **counts,
    }


def spawn_worker(
    path: str,
    url: str,
    count: int,
    in_flight: int,
    offset: int = 0,
    aimd: str | None = None,
    start_at: float = 0.0,
    budget: str = "host",
):
    command = [sys.executable, __file__, "--worker", path, "--url", url, "--count", str(count)]
    command += ["--worker-in-flight", str(in_flight), "--offset", str(offset), "--start-at", str(start_at)]
    command += ["--budget", budget]
    if aimd:
        command += ["--aimd", aimd]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def collect(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"worker failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- the two parts


def part_one(in_flights: list[int], seconds: float, with_requests: bool) -> list[dict[str, Any]]:
    rows = []
    for in_flight in in_flights:
        bound = in_flight / LATENCY
        count = int(bound * seconds)
        with EmulatorProcess(
            api_key=API_KEY, max_concurrency=in_flight, latency=LATENCY, jitter=JITTER, seed=EMULATOR_SEED
        ) as emulator:
            # Warm the emulator (its first requests load the lexicon) before measuring.
            collect(spawn_worker("plain", emulator.url, min(200, count), min(in_flight, 10), offset=10**6))
            paths = ["plain", "hook", "trigger"] + (
                ["requests"] if with_requests and in_flight == in_flights[0] else []
            )
            for path in paths:
                docs = REQUESTS_DOCS if path == "requests" else count
                row = collect(spawn_worker(path, emulator.url, docs, in_flight))
                row.update(in_flight=in_flight, bound=bound)
                rows.append(row)
    return rows


def _split_share(worker: int) -> int:
    """Worker ``worker``'s fixed share of the account's limit when it is split by hand."""
    base, extra = divmod(SHARED_LIMIT, SHARED_WORKERS)
    return base + (1 if worker < extra else 0)


def part_two(variants: list[str], repeat: int = 1) -> list[dict[str, Any]]:
    rows = []
    # Rounds interleave the variants, so a change of the machine's load touches them alike.
    for variant in [variant for _ in range(repeat) for variant in variants]:
        with EmulatorProcess(
            api_key=API_KEY, max_concurrency=SHARED_LIMIT, latency=LATENCY, jitter=JITTER, seed=EMULATOR_SEED
        ) as emulator:
            collect(spawn_worker("plain", emulator.url, 100, 5, offset=10**6))
            before = emulator.stats()
            name, _, aimd = variant.partition("@")
            start_at = time.time() + SHARED_START_DELAY
            workers = [
                spawn_worker(
                    "hook",
                    emulator.url,
                    SHARED_DOCS_PER_WORKER,
                    # "split": the hand-computed share (3+3+2+2 = 10), no 429s possible: the reference.
                    _split_share(i) if name == "split" else SHARED_LIMIT,
                    offset=i * SHARED_DOCS_PER_WORKER,
                    aimd=aimd or None,
                    start_at=start_at,
                    budget="host" if name == "budget" else "off",
                )
                for i in range(SHARED_WORKERS)
            ]
            results = [collect(worker) for worker in workers]
            after = emulator.stats()
        docs = SHARED_DOCS_PER_WORKER * SHARED_WORKERS
        # The emulator's counters, when it has them; else what the hooks counted.
        if "rate_limited" in after and "requests" in after:
            requests_seen = after["requests"] - before["requests"]
            rate_limited = after["rate_limited"] - before["rate_limited"]
            source = "emulator"
        else:
            requests_seen = sum(r.get("requests", 0) for r in results)
            rate_limited = sum(r["rate_limited"] for r in results)
            source = "hooks"
        # From the first worker's start to the last one's end (they start together, after imports).
        scoring = max(r["ended_at"] for r in results) - min(r["started_at"] for r in results)
        first_start = min(r["started_at"] for r in results)
        late = max(r["started_at"] for r in results) - first_start
        rows.append(
            {
                "variant": variant,
                "workers": SHARED_WORKERS,
                "documents": docs,
                "seconds": scoring,
                "start_spread_seconds": late,
                "docs_per_s": docs / scoring,
                "share_of_bound": docs / scoring / (SHARED_LIMIT / LATENCY),
                "requests": requests_seen,
                "rate_limited": rate_limited,
                "rate_limited_share": rate_limited / requests_seen if requests_seen else 0.0,
                "counted_by": source,
                "failed": sum(r["failed"] for r in results),
                "peak_in_flight": after.get("peak_in_flight", after.get("max_in_flight")),
                "cpu_ms_per_doc": 1000 * sum(r["cpu_seconds"] for r in results) / docs,
                "worker_ends": sorted(r["ended_at"] - first_start for r in results),
            }
        )
    return rows


def print_part_one(rows: list[dict[str, Any]]) -> None:
    print(f"\nOne client, emulator latency {LATENCY * 1000:.0f} ms ±{JITTER:.0%}; bound = in flight / latency")
    header = (
        f"{'in flight':>9} {'path':<9} {'docs':>6} {'docs/s':>8} {'% bound':>8} {'x plain':>8} "
        f"{'CPU ms/doc':>10} {'CPU x plain':>11} {'peak RSS MB':>11} {'429s':>5} {'failed':>6}"
    )
    print(header)
    print("-" * len(header))
    plain = {row["in_flight"]: row for row in rows if row["path"] == "plain"}
    for row in rows:
        rate = row["documents"] / row["seconds"]
        cpu = 1000 * row["cpu_seconds"] / row["documents"]
        floor = plain[row["in_flight"]]
        floor_rate = floor["documents"] / floor["seconds"]
        floor_cpu = 1000 * floor["cpu_seconds"] / floor["documents"]
        in_flight = 1 if row["path"] == "requests" else row["in_flight"]
        print(
            f"{in_flight:>9} {row['path']:<9} {row['documents']:>6} {rate:>8.1f} "
            f"{rate / (in_flight / LATENCY):>8.1%} {rate / floor_rate:>8.2f} {cpu:>10.3f} "
            f"{cpu / floor_cpu:>11.2f} {row['peak_rss_mb']:>11.1f} {row['rate_limited']:>5} {row['failed']:>6}"
        )


def print_part_two(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{SHARED_WORKERS} worker processes x analyze_many(max_concurrency={SHARED_LIMIT}) on one account "
        f"(emulator --max-concurrency {SHARED_LIMIT}, bound {SHARED_LIMIT / LATENCY:.0f} docs/s)"
    )
    header = (
        f"{'variant':<14} {'docs':>6} {'docs/s':>8} {'% bound':>8} {'requests':>8} {'429s':>6} {'429 %':>6} "
        f"{'failed':>6} {'peak in flight':>14} {'CPU ms/doc':>10} {'429s from':>9}  workers done at (s)"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['variant']:<14} {row['documents']:>6} {row['docs_per_s']:>8.1f} {row['share_of_bound']:>8.1%} "
            f"{row['requests']:>8} {row['rate_limited']:>6} {row['rate_limited_share']:>6.1%} {row['failed']:>6} "
            f"{row['peak_in_flight'] if row['peak_in_flight'] is not None else '-':>14} "
            f"{row['cpu_ms_per_doc']:>10.3f} {row['counted_by']:>9}  "
            + " ".join(f"{end:.1f}" for end in row["worker_ends"])
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, nargs="+", default=list(DEFAULT_IN_FLIGHT))
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="scoring time each measurement aims at")
    parser.add_argument("--parts", default="1,2", help="1 (one client), 2 (shared account), or 1,2")
    parser.add_argument(
        "--variants",
        default="split,aimd,budget",
        help="part 2 variants: split (fixed shares), aimd (each worker's window alone; optionally "
        "@DECREASE/INCREASE/slow|noslow), budget (the host's shared account budget, the default)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="part 2: run every variant this many times")
    parser.add_argument("--no-requests", action="store_true", help="skip the sequential requests row")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    # Worker mode (internal).
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-in-flight", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--aimd", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--budget", default="host", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_worker(
            args.worker,
            args.url,
            args.count,
            args.worker_in_flight,
            args.offset,
            args.aimd,
            args.start_at,
            args.budget,
        )
        print(json.dumps(result))
        return 0

    parts = set(args.parts.split(","))
    load = os.getloadavg()
    print(f"Load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPU(s)")
    report: dict[str, Any] = {"load_before": load}
    if "1" in parts:
        report["one_client"] = rows = part_one(args.in_flight, args.seconds, not args.no_requests)
        print_part_one(rows)
    if "2" in parts:
        report["shared_account"] = rows = part_two(args.variants.split(","), args.repeat)
        print_part_two(rows)
    report["load_after"] = load = os.getloadavg()
    print(f"\nLoad average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
