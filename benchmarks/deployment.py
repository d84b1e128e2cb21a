"""The nightly pipeline on the loopback deployment at 10,000 documents: a figure, not a timed test.

Measures the whole pipeline, from the REST API trigger to the last row in the averages table,
against the account bound: the emulator allows 10 requests in flight at 0.05 s each, 200
documents/s, so 10,000 documents take 50 s at best. Then it shows where the rest went, from
the task instances' queued/start/end times (REST API) and the scoring tasks' own log lines
(``Scoring N document(s)`` once the source is listed, ``Stored ...`` after the last write;
the documents are read while scoring).

Runs the worker mode, then the deferrable mode (``--modes``), each on a fresh bucket and tables,
and ends with one line per mode side by side: share of the bound, listing (the sensor's run:
with ``claims=`` the run's only listing), task start (from the listing's end to the first
scoring task's first document), scoring (first document to last row) and the scoring tasks.

Needs the deployment running (``make benchmark-deployment`` starts and stops it)::

    bash scripts/deployment.sh start
    set -a; . .ci-state/deployment/deployment.env; set +a
    .venv/bin/python benchmarks/deployment.py [--documents 10000] [--modes worker,deferrable]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.deployment.pipeline import (
    ACCOUNT_LIMIT,
    NIGHTLY,
    S3_CONN_ID,
    SQL_CONN_ID,
    Deployment,
    Warehouse,
    dag_params,
    emulator_stats,
    nightly_conf,
    reset_emulator,
    run_nightly,
    score_task_id,
    set_up_airflow,
    summary,
    supports_deferrable,
    upload_documents,
)

#: The emulator's latency per request (scripts/deployment.sh starts it with --latency 0.05).
LATENCY = 0.05


def when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def log_marks(api, dag_id: str, run_id: str, ti: dict[str, Any]) -> dict[str, dt.datetime]:
    """Timestamps of the scoring task's own milestones in its log (REST API, last try)."""
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}"
    content = api.get(path, map_index=ti["map_index"])["content"]
    marks: dict[str, dt.datetime] = {}
    for line in content:
        event, stamp = str(line.get("event", "")), line.get("timestamp")
        if not stamp:
            continue
        stamp = when(stamp)
        if event.startswith("Scoring ") or event.startswith("Deferring"):
            marks.setdefault("read", stamp)
        if event.startswith("Stored "):
            marks["stored"] = stamp
    return marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--shard-size", type=int, default=5_000, help="documents per mapped scoring task")
    parser.add_argument("--modes", default="worker,deferrable", help="worker, deferrable or both (in that order)")
    parser.add_argument("--deferrable", action="store_true", help="only the deferrable mode (as --modes deferrable)")
    args = parser.parse_args(argv)
    modes = ["deferrable"] if args.deferrable else [mode.strip() for mode in args.modes.split(",") if mode.strip()]

    deployment = Deployment.from_env()
    if deployment is None:
        print("no deployment: source .ci-state/deployment/deployment.env (make benchmark-deployment)")
        return 2
    api = deployment.api()
    set_up_airflow(deployment, api)
    figures = []
    for mode in modes:
        print(f"\n=== {mode}", flush=True)
        figure = run_mode(deployment, api, args.documents, args.shard_size, deferrable=mode == "deferrable")
        if figure is None:
            return 1
        figures.append((mode, figure))
    print(
        f"\n{args.documents} documents, bound {ACCOUNT_LIMIT / LATENCY:.0f} docs/s ({args.documents * LATENCY / ACCOUNT_LIMIT:.0f} s ideal)"
    )
    print(
        f"{'mode':<11} {'total s':>8} {'% bound':>8} {'listing s':>9} {'task start s':>12} {'scoring s':>9} "
        f"{'429s':>5} {'extra requests':>14}  scoring tasks (start -> stored, s after trigger)"
    )
    for mode, figure in figures:
        print(
            f"{mode:<11} {figure['total']:>8.1f} {figure['share']:>8.0%} {figure['listing']:>9.1f} "
            f"{figure['task_start']:>12.1f} {figure['scoring']:>9.1f} {figure['rate_limited']:>5} "
            f"{figure['extra_requests']:>14}  " + ", ".join(figure["tasks"])
        )
    return 0


def run_mode(deployment: Deployment, api: Any, documents: int, shard_size: int, *, deferrable: bool) -> dict | None:
    """One run of the nightly pipeline; prints where the time went and returns the figures."""
    params = dag_params(api, NIGHTLY.dag_id)
    if deferrable and not supports_deferrable(params):
        print(f"{NIGHTLY.dag_id} has no 'deferrable' parameter in this tree")
        return None
    tag = uuid.uuid4().hex[:6]
    bucket, segments, averages = f"bench-{tag}", f"bench_{tag}_segments", f"bench_{tag}_averages"
    print(f"uploading {documents} documents to s3://{bucket}/in/ ...", flush=True)
    upload_documents(deployment, bucket, documents)
    conf = nightly_conf(
        params,
        source=f"s3://{S3_CONN_ID}@{bucket}/in/",
        source_conn_id=S3_CONN_ID,
        sql_conn_id=SQL_CONN_ID,
        segments_table=segments,
        averages_table=averages,
        deferrable=deferrable,
        shard_size=shard_size,
    )
    reset_emulator(deployment)
    triggered = dt.datetime.now(dt.timezone.utc)
    watch = run_nightly(deployment, api, conf, timeout=1800, poll_interval=5)
    print(summary(watch))
    if watch.run["state"] != "success":
        return None

    warehouse = Warehouse(deployment.results_uri)
    stored = len(warehouse.sources(averages))
    first_row, last_row = warehouse.written_span(averages)
    total = (last_row - triggered).total_seconds()
    ideal = documents * LATENCY / ACCOUNT_LIMIT
    stats = emulator_stats(deployment)
    print()
    print(f"{stored} documents, trigger -> last row {total:.1f} s ({stored / total:.0f} docs/s)")
    print(
        f"account bound {ACCOUNT_LIMIT} in flight / {LATENCY} s = {ACCOUNT_LIMIT / LATENCY:.0f} docs/s -> "
        f"{ideal:.0f} s ideal: {100 * ideal / total:.0f}% of the bound"
    )
    print(
        f"emulator: {stats.requests} requests, {stats.rate_limited} answered 429, peak in flight {stats.peak_in_flight}"
    )
    print(f"rows written from +{(first_row - triggered).total_seconds():.1f} s to +{total:.1f} s after the trigger")

    def at(value: dt.datetime | None) -> str:
        return f"+{(value - triggered).total_seconds():6.1f}s" if value else "      -"

    print("\nwhere the time goes (seconds after the trigger; queued -> start -> end):")
    score_id = score_task_id(api)
    tis = sorted(watch.task_instances, key=lambda ti: (when(ti["start_date"]) or triggered, ti["map_index"]))
    scoring: list[tuple[float, float, float, float]] = []
    listing_end: dt.datetime | None = None
    first_read: dt.datetime | None = None
    tasks: list[str] = []
    for ti in tis:
        queued, start, end = when(ti["queued_when"]), when(ti["start_date"]), when(ti["end_date"])
        name = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
        line = (
            f"  {name:<22} {at(queued)} {at(start)} {at(end)}  run {ti['duration'] or 0:6.1f}s  try {ti['try_number']}"
        )
        if ti["task_id"] == "wait_for_texts" and end:
            listing_end = end
        if ti["task_id"] == score_id and start and end:
            marks = log_marks(api, NIGHTLY.dag_id, watch.run_id, ti)
            read = marks.get("read", start)
            stored_at = marks.get("stored", end)
            parts = (
                (start - queued).total_seconds() if queued else 0.0,
                (read - start).total_seconds(),
                (stored_at - read).total_seconds(),
                (end - stored_at).total_seconds(),
            )
            scoring.append(parts)
            first_read = min(first_read or read, read)
            tasks.append(f"{(read - triggered).total_seconds():.1f}->{(stored_at - triggered).total_seconds():.1f}")
            line += (
                f"\n  {'':<22} queue {parts[0]:.1f}s, start-up + listing the source {parts[1]:.1f}s, "
                f"scoring + writes {parts[2]:.1f}s, finish {parts[3]:.1f}s"
            )
        print(line)
    if scoring:
        n = len(scoring)
        mean = [sum(p[i] for p in scoring) / n for i in range(4)]
        print(
            f"\nscoring tasks ({n}, mean): queue {mean[0]:.1f}s, start-up + listing {mean[1]:.1f}s, "
            f"scoring + writes {mean[2]:.1f}s (ideal {shard_size * LATENCY / (ACCOUNT_LIMIT / max(1, min(n, 2))):.0f}s "
            f"per shard at its share of the bound), finish {mean[3]:.1f}s"
        )
    sensor = next((ti for ti in tis if ti["task_id"] == "wait_for_texts"), None)
    return {
        "total": total,
        "share": ideal / total,
        "listing": float(sensor["duration"] or 0.0) if sensor else 0.0,
        "task_start": (first_read - listing_end).total_seconds() if first_read and listing_end else 0.0,
        "scoring": (last_row - first_read).total_seconds() if first_read else 0.0,
        "rate_limited": stats.rate_limited,
        # Requests beyond one per document and the 429s' retries: a document scored twice shows here.
        "extra_requests": stats.requests - stats.rate_limited - documents,
        "tasks": tasks,
    }


if __name__ == "__main__":
    raise SystemExit(main())
