"""The nightly pipeline end to end on a real distributed Airflow 3 (SPEC section 14).

Driven only through the REST API: connections, pool, unpause, trigger, poll. 5,000 small
text objects per run, once in worker mode with one Celery worker SIGKILLed mid-run, once in
deferrable mode with the triggerer killed and started again mid-run. Each run must store every
document exactly once, keep the emulator's peak in-flight within the account limit of 10,
schedule the report DAG through the asset event, and carry nothing above 64 KB through the
metadata DB (XCom values, trigger kwargs, trigger events).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deployment.api import AirflowAPI
from tests.deployment.pipeline import (
    ACCOUNT_LIMIT,
    NIGHTLY,
    PAYLOAD_LIMIT,
    S3_CONN_ID,
    SQL_CONN_ID,
    Deployment,
    MetadataDB,
    RunWatch,
    Warehouse,
    dag_params,
    emulator_stats,
    moves_uri_lists_through_xcom,
    nightly_conf,
    reset_emulator,
    run_nightly,
    score_task_id,
    summary,
    supports_deferrable,
    upload_documents,
)

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(1800)]

DOCUMENTS = 5000
#: Requests the run has sent before a fault is injected (of 5,000): the fault lands mid-scoring,
#: not before it or while the results are stored (rows may appear only at the end).
FAULT_AFTER_REQUESTS = 1000
RUN_TIMEOUT = 900
WORKERS = ("worker1", "worker2")

#: Each scenario's run, for the payload test at the end.
WATCHES: dict[str, RunWatch] = {}


def tables(scenario: str) -> tuple[str, str]:
    return f"dgs_{scenario}_segments", f"dgs_{scenario}_averages"


def run_scenario(
    deployment: Deployment, airflow: AirflowAPI, scenario: str, *, deferrable: bool, fault
) -> tuple[RunWatch, set[str]]:
    params = dag_params(airflow, NIGHTLY.dag_id)
    bucket = f"nightly-{scenario}"
    expected = upload_documents(deployment, bucket, DOCUMENTS)
    segments, averages = tables(scenario)
    conf = nightly_conf(
        params,
        source=f"s3://{S3_CONN_ID}@{bucket}/in/",
        source_conn_id=S3_CONN_ID,
        sql_conn_id=SQL_CONN_ID,
        segments_table=segments,
        averages_table=averages,
        deferrable=deferrable,
    )
    reset_emulator(deployment)
    watch = run_nightly(deployment, airflow, conf, timeout=RUN_TIMEOUT, on_poll=fault)
    WATCHES[scenario] = watch
    return watch, expected


def sizes(watch: RunWatch) -> str:
    return ", ".join(f"{what} {size} B at {where}" for what, (size, where) in sorted(watch.largest.items()))


def assert_exactly_once(deployment: Deployment, scenario: str, expected: set[str], say) -> None:
    warehouse = Warehouse(deployment.results_uri)
    segments, averages = tables(scenario)
    sources = warehouse.sources(averages)
    say(
        f"{scenario}: {len(sources)} averages rows, {len(set(sources))} distinct sources, "
        f"{warehouse.count(segments)} segment rows"
    )
    assert len(sources) == len(expected), f"{len(sources)} averages rows for {len(expected)} documents"
    assert set(sources) == expected
    assert warehouse.duplicate_segments(segments) == 0, "a (source, segment_index) stored twice"
    assert warehouse.segment_sources(segments) == len(expected)


def assert_within_account_limit(deployment: Deployment, scenario: str, say) -> None:
    stats = emulator_stats(deployment)
    say(
        f"{scenario}: emulator {stats.requests} requests, {stats.rate_limited} answered 429, "
        f"peak in flight {stats.peak_in_flight} (from {stats.source})"
    )
    if stats.peak_in_flight >= 0:
        assert stats.peak_in_flight <= ACCOUNT_LIMIT
    assert stats.requests >= DOCUMENTS


def assert_report_ran(deployment: Deployment, airflow: AirflowAPI, watch: RunWatch, say) -> None:
    """A report run consumed an asset event of this nightly run and succeeded."""
    with MetadataDB(deployment.metadata_uri) as metadata:
        events = metadata.asset_events(NIGHTLY.dag_id, watch.run_id)
    assert events, "the nightly run emitted no asset event"
    event_ids = {event["id"] for event in events}
    deadline = time.monotonic() + 180
    found: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        for run in airflow.dag_runs(NIGHTLY.report_dag_id, run_type="asset_triggered"):
            consumed = {
                event["id"] for event in airflow.upstream_asset_events(NIGHTLY.report_dag_id, run["dag_run_id"])
            }
            if consumed & event_ids:
                found = run
        if found and found["state"] in ("success", "failed"):
            break
        time.sleep(3)
    assert found is not None, f"no {NIGHTLY.report_dag_id} run consumed asset events {sorted(event_ids)}"
    say(f"report run {found['dag_run_id']} ({found['run_type']}) {found['state']}; extras {events[0]['extra']}")
    assert found["state"] == "success"
    # Each scoring task attached its run statistics to its asset event (SPEC 13).
    statistics = ("documents", "scored", "skipped", "failed", "input_tokens", "output_tokens", "sentiment_counts")
    for event in events:
        assert set(event["extra"]) >= set(statistics), event["extra"]
    assert sum(event["extra"]["scored"] for event in events) >= 1
    # The asset is the averages table as OpenLineage names the operator's output table.
    results = urlsplit(deployment.results_uri)
    expected = f"postgres://{results.hostname}:{results.port}{results.path}/public/deepgram_sentiment_averages"
    assert {event["uri"] for event in events} == {expected}


def test_worker_mode_survives_a_killed_celery_worker(deployment, airflow, say):
    task_id = score_task_id(airflow)
    killed: dict[str, Any] = {}

    def kill_a_scoring_worker(watch: RunWatch) -> None:
        if killed:
            return
        running = [ti for ti in watch.task_instances if ti["task_id"] == task_id and ti["state"] == "running"]
        if not running or emulator_stats(deployment).requests < FAULT_AFTER_REQUESTS:
            return
        for ti in running:
            worker = ti.get("pid") and deployment.component_of(ti["pid"], WORKERS)
            if worker:
                deployment.control("kill", worker, "KILL")
                killed.update(worker=worker, map_index=ti["map_index"], at=round(watch.elapsed()))
                return

    try:
        watch, expected = run_scenario(deployment, airflow, "worker", deferrable=False, fault=kill_a_scoring_worker)
    finally:
        if killed:
            deployment.control("restart", killed["worker"])
    say(f"worker: {summary(watch)}; killed {killed or 'nothing'}; largest {sizes(watch)}")
    assert killed, "no scoring task was seen running on a worker with rows stored: no fault injected"
    assert watch.run["state"] == "success", summary(watch)
    tries = airflow.task_tries(NIGHTLY.dag_id, watch.run_id, task_id, killed["map_index"])
    say(f"worker: killed task {task_id}[{killed['map_index']}] tries {[(t['try_number'], t['state']) for t in tries]}")
    assert max(t["try_number"] for t in tries) >= 2, "the killed task was not retried"
    assert_exactly_once(deployment, "worker", expected, say)
    assert_within_account_limit(deployment, "worker", say)
    assert_report_ran(deployment, airflow, watch, say)


def test_deferrable_mode_survives_a_triggerer_restart(deployment, airflow, say):
    assert supports_deferrable(dag_params(airflow, NIGHTLY.dag_id)), f"{NIGHTLY.dag_id} has no 'deferrable' parameter"
    task_id = score_task_id(airflow)
    restarted: dict[str, Any] = {}
    deferred_since: list[float] = []

    def restart_the_triggerer(watch: RunWatch) -> None:
        if restarted:
            return
        deferred = [ti for ti in watch.task_instances if ti["task_id"] == task_id and ti["state"] == "deferred"]
        if not deferred:
            return
        if not deferred_since:
            deferred_since.append(watch.elapsed())
        # Mid-scoring: the triggers have sent a good share of the requests (they may store rows
        # only when the task resumes, so rows are no signal here); at the latest after 60 s.
        sent = emulator_stats(deployment).requests
        if sent < FAULT_AFTER_REQUESTS and watch.elapsed() - deferred_since[0] < 60:
            return
        deployment.control("kill", "triggerer", "KILL")
        time.sleep(2)
        deployment.control("restart", "triggerer")
        restarted.update(at=round(watch.elapsed()), requests_sent=sent, deferred=len(deferred))

    watch, expected = run_scenario(deployment, airflow, "deferred", deferrable=True, fault=restart_the_triggerer)
    say(f"deferred: {summary(watch)}; triggerer restarted {restarted or 'never'}; largest {sizes(watch)}")
    assert "deferred" in watch.states_seen.get(task_id, set()), "no scoring task deferred"
    assert restarted, "the triggerer was not restarted while a scoring task was deferred"
    assert watch.run["state"] == "success", summary(watch)
    assert_exactly_once(deployment, "deferred", expected, say)
    assert_within_account_limit(deployment, "deferred", say)
    assert_report_ran(deployment, airflow, watch, say)


def test_nothing_above_64_kb_through_the_metadata_db(airflow, say):
    if not WATCHES:
        pytest.skip("no scenario ran")
    for scenario, watch in WATCHES.items():
        say(f"{scenario}: largest {sizes(watch)}")
    assert not moves_uri_lists_through_xcom(dag_params(airflow, NIGHTLY.dag_id)), "the nightly DAG moves URI lists"
    for scenario, watch in WATCHES.items():
        for what, (size, where) in watch.largest.items():
            assert size <= PAYLOAD_LIMIT, f"{scenario}: {what} of {size} bytes at {where}"
