"""The nightly pipeline on the loopback deployment: set-up, one run, and what it left behind.

Shared by ``tests/deployment`` and ``benchmarks/deployment.py``. Everything Airflow does is
driven through the REST API (:class:`~tests.deployment.api.AirflowAPI`); the results DB, the
metadata DB and the emulator's counters are only read, to check what the run did.

The example DAG's ids and parameters live here, in :data:`NIGHTLY` and :func:`nightly_conf`:
switching to a rewritten DAG is an edit of this block alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.deployment.api import AirflowAPI

# --- The example DAGs under test (the one place to edit when they change) --------------------


@dataclass(frozen=True)
class NightlyDag:
    """Ids of the nightly DAG, its mapped scoring task and the asset-scheduled report DAG."""

    dag_id: str = "deepgram_sentiment_nightly"
    report_dag_id: str = "deepgram_sentiment_report"
    #: The mapped DeepgramSentimentOperator; the rewrite calls it "score_shard".
    score_task_ids: tuple[str, ...] = ("score_shard", "score_batch")
    #: Documents per mapped scoring task: 2 shards for the pool's 2 slots at 5,000 documents.
    shard_size: int = 2500


NIGHTLY = NightlyDag()


def nightly_conf(
    dag_params: Iterable[str],
    *,
    source: str,
    source_conn_id: str,
    sql_conn_id: str,
    segments_table: str,
    averages_table: str,
    deferrable: bool,
    shard_size: int = NIGHTLY.shard_size,
) -> dict[str, Any]:
    """
    Return the run ``conf`` for the parameters the DAG declares (``dag_params``).

    The rewrite takes ``shard_size`` and ``deferrable``; the DAG before it ``batch_size``
    and no ``deferrable``. Keys the DAG does not declare are left out, so a run never carries
    a parameter that silently does nothing; :func:`supports_deferrable` tells the caller.
    """
    wanted = {
        "source": source,
        "source_conn_id": source_conn_id,
        "sql_conn_id": sql_conn_id,
        "segments_table": segments_table,
        "averages_table": averages_table,
        "deferrable": deferrable,
        "shard_size": shard_size,
        "batch_size": shard_size,
    }
    declared = set(dag_params)
    return {key: value for key, value in wanted.items() if key in declared}


def supports_deferrable(dag_params: Iterable[str]) -> bool:
    return "deferrable" in set(dag_params)


def moves_uri_lists_through_xcom(dag_params: Iterable[str]) -> bool:
    """The DAG before the rewrite: the sensor returns every URI and ``make_batches`` lists of them."""
    return "shard_size" not in set(dag_params)


# --- The deployment's addresses ---------------------------------------------------------------

DEEPGRAM_CONN_ID = "deepgram_default"
S3_CONN_ID = "dgs_deploy_s3"
#: Also the report DAG's default (scripts/deployment.sh sets DGSENTIMENT_EXAMPLE_SQL_CONN_ID).
SQL_CONN_ID = "dgs_warehouse"
POOL = "deepgram"
POOL_SLOTS = 2
#: The emulator's concurrency limit, the account bound of SPEC section 13.
ACCOUNT_LIMIT = 10
#: A limit of SPEC section 12 on anything carried through the metadata DB.
PAYLOAD_LIMIT = 64 * 1024
TERMINAL_RUN_STATES = {"success", "failed"}


@dataclass(frozen=True)
class Deployment:
    """What ``scripts/deployment.sh start`` wrote to ``deployment.env``."""

    api_url: str
    username: str
    password: str
    emulator_url: str
    emulator_key: str
    emulator_log: str
    metadata_uri: str
    results_uri: str
    s3_endpoint: str
    script: str
    state: str
    inbox: str

    ENV = {
        "api_url": "DGS_DEPLOY_API_URL",
        "username": "DGS_DEPLOY_USERNAME",
        "password": "DGS_DEPLOY_PASSWORD",
        "emulator_url": "DGS_DEPLOY_EMULATOR_URL",
        "emulator_key": "DGS_DEPLOY_EMULATOR_KEY",
        "emulator_log": "DGS_DEPLOY_EMULATOR_LOG",
        "metadata_uri": "DGS_DEPLOY_METADATA_URI",
        "results_uri": "DGS_DEPLOY_RESULTS_URI",
        "s3_endpoint": "DGS_DEPLOY_S3_ENDPOINT",
        "script": "DGS_DEPLOY_SCRIPT",
        "state": "DGS_DEPLOY_STATE",
        "inbox": "DGS_DEPLOY_INBOX",
    }

    @classmethod
    def from_env(cls) -> Deployment | None:
        """The running deployment, or None when ``DGS_DEPLOY_API_URL`` is not set."""
        if not os.environ.get("DGS_DEPLOY_API_URL"):
            return None
        missing = [var for var in cls.ENV.values() if not os.environ.get(var)]
        if missing:
            raise RuntimeError(
                f"deployment env incomplete, missing {missing}: source .ci-state/deployment/deployment.env"
            )
        return cls(**{name: os.environ[var] for name, var in cls.ENV.items()})

    def api(self) -> AirflowAPI:
        return AirflowAPI(self.api_url, self.username, self.password)

    def control(self, *args: str) -> None:
        """Run ``scripts/deployment.sh ARGS`` (kill or restart one component)."""
        subprocess.run(["bash", self.script, *args], check=True, timeout=120)

    def component_pid(self, name: str) -> int:
        return int(Path(self.state, "pids", f"{name}.pid").read_text())

    def component_of(self, pid: int, names: Iterable[str]) -> str | None:
        """Which component's process tree ``pid`` is in (a task process is a worker's grandchild)."""
        import psutil

        roots = {self.component_pid(name): name for name in names}
        try:
            process = psutil.Process(pid)
            for candidate in [process, *process.parents()]:
                if candidate.pid in roots:
                    return roots[candidate.pid]
        except psutil.NoSuchProcess:
            return None
        return None


# --- Set-up through the REST API --------------------------------------------------------------


def set_up_airflow(deployment: Deployment, api: AirflowAPI) -> None:
    """Create the three connections and the pool; unpause both DAGs and let any scheduled run end."""
    pg = requests.utils.urlparse(deployment.results_uri)
    api.put_connection(
        {
            "connection_id": DEEPGRAM_CONN_ID,
            "conn_type": "deepgram",
            "host": deployment.emulator_url,
            "password": deployment.emulator_key,
        }
    )
    api.put_connection(
        {
            "connection_id": S3_CONN_ID,
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": json.dumps({"endpoint_url": deployment.s3_endpoint, "region_name": "us-east-1"}),
        }
    )
    api.put_connection(
        {
            "connection_id": SQL_CONN_ID,
            "conn_type": "postgres",
            "host": pg.hostname,
            "port": pg.port,
            "login": pg.username,
            "password": pg.password,
            "schema": pg.path.lstrip("/"),
        }
    )
    api.put_pool(
        POOL,
        POOL_SLOTS,
        include_deferred=True,
        description=f"Deepgram: {POOL_SLOTS} slots x 5 requests = the {ACCOUNT_LIMIT}-request account limit",
    )
    for dag_id in (NIGHTLY.dag_id, NIGHTLY.report_dag_id):
        api.unpause(dag_id)
    # Unpausing a cron DAG creates its latest scheduled run (default parameters: the sample
    # texts); max_active_runs=1 queues a triggered run behind it, so let it end first.
    wait_for_idle(api, NIGHTLY.dag_id, timeout=300)


def wait_for_idle(api: AirflowAPI, dag_id: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    time.sleep(5)  # the scheduler creates the scheduled run within a loop or two of the unpause
    while time.monotonic() < deadline:
        active = [run for run in api.dag_runs(dag_id) if run["state"] not in TERMINAL_RUN_STATES]
        if not active:
            return
        time.sleep(3)
    raise TimeoutError(f"{dag_id} still has active runs after {timeout:.0f}s")


def dag_params(api: AirflowAPI, dag_id: str) -> dict[str, Any]:
    return api.get(f"/dags/{dag_id}/details")["params"]


def score_task_id(api: AirflowAPI) -> str:
    task_ids = {task["task_id"] for task in api.get(f"/dags/{NIGHTLY.dag_id}/tasks")["tasks"]}
    for candidate in NIGHTLY.score_task_ids:
        if candidate in task_ids:
            return candidate
    raise AssertionError(f"{NIGHTLY.dag_id} has none of {NIGHTLY.score_task_ids}: {sorted(task_ids)}")


# --- Documents in the S3-compatible server ----------------------------------------------------

_OPENINGS = ("The agent", "Support", "The delivery", "Our new plan", "The app", "Billing", "The technician")
_VERDICTS = (
    "was wonderful and solved everything quickly",
    "was slow, rude and I am very disappointed",
    "arrived on Tuesday as scheduled",
    "is okay, nothing special",
    "crashed twice and lost my work, terrible",
    "exceeded my expectations, thank you so much",
    "needs a second look next week",
)


def document_text(index: int) -> str:
    """A small, varied, deterministic text for document ``index``."""
    first = f"{_OPENINGS[index % 7]} {_VERDICTS[(index // 7) % 7]}."
    second = f"{_OPENINGS[(index // 49) % 7]} {_VERDICTS[(index * 3 + 1) % 7]}."
    return f"Ticket {index}. {first} {second}"


def upload_documents(deployment: Deployment, bucket: str, count: int, prefix: str = "in/") -> set[str]:
    """Put ``count`` text objects in a new bucket; return their names as the provider stores them."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=deployment.s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    keys = [f"{prefix}doc-{index:06d}.txt" for index in range(count)]

    def put(index_key: tuple[int, str]) -> None:
        index, key = index_key
        client.put_object(Bucket=bucket, Key=key, Body=document_text(index).encode("utf-8"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, enumerate(keys)))
    return {f"s3://{bucket}/{key}" for key in keys}


# --- One run ----------------------------------------------------------------------------------


@dataclass
class RunWatch:
    """What polling a run saw: task states over time and the largest payloads in the metadata DB."""

    dag_id: str
    run_id: str
    started: float
    run: dict[str, Any] = field(default_factory=dict)
    task_instances: list[dict[str, Any]] = field(default_factory=list)
    states_seen: dict[str, set[str]] = field(default_factory=dict)
    largest: dict[str, tuple[int, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def see_size(self, what: str, size: int | None, where: str) -> None:
        if size is not None and size > self.largest.get(what, (-1, ""))[0]:
            self.largest[what] = (int(size), where)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def run_nightly(
    deployment: Deployment,
    api: AirflowAPI,
    conf: dict[str, Any],
    *,
    timeout: float,
    on_poll: Callable[[RunWatch], None] | None = None,
    poll_interval: float = 2.0,
) -> RunWatch:
    """Trigger the nightly DAG with ``conf`` and poll it to the end (``on_poll`` injects faults)."""
    run_id = f"deploy__{uuid.uuid4().hex[:10]}"
    api.trigger(NIGHTLY.dag_id, conf, run_id)
    watch = RunWatch(NIGHTLY.dag_id, run_id, time.monotonic())
    deadline = time.monotonic() + timeout
    with MetadataDB(deployment.metadata_uri) as metadata:
        while True:
            watch.run = api.dag_run(NIGHTLY.dag_id, run_id)
            watch.task_instances = api.task_instances(NIGHTLY.dag_id, run_id)
            for ti in watch.task_instances:
                watch.states_seen.setdefault(ti["task_id"], set()).add(ti["state"] or "none")
            metadata.probe(watch)
            if watch.run["state"] in TERMINAL_RUN_STATES:
                break
            if on_poll is not None:
                on_poll(watch)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{NIGHTLY.dag_id} run {run_id} not done after {timeout:.0f}s: {summary(watch)}")
            time.sleep(poll_interval)
        metadata.probe(watch)
    return watch


def summary(watch: RunWatch) -> str:
    states: dict[str, int] = {}
    for ti in watch.task_instances:
        key = f"{ti['task_id']}:{ti['state']}"
        states[key] = states.get(key, 0) + 1
    return f"run {watch.run.get('state')} after {watch.elapsed():.0f}s, tasks {states}"


class MetadataDB:
    """Read-only probes of the metadata DB: how big are the XComs, trigger kwargs and events."""

    def __init__(self, uri: str) -> None:
        self._uri = uri

    def __enter__(self) -> MetadataDB:
        import psycopg

        self._conn = psycopg.connect(self._uri, autocommit=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    def _largest(self, sql: str, *args: Any) -> tuple[int | None, str]:
        row = self._conn.execute(sql, args).fetchone()
        return (row[0], str(row[1:])) if row else (None, "")

    def probe(self, watch: RunWatch) -> None:
        """Record the largest XCom value, trigger kwargs and event (next_kwargs) seen so far."""
        size, where = self._largest(
            "SELECT octet_length(value::text), task_id, map_index, key FROM xcom "
            "WHERE dag_id = %s AND run_id = %s ORDER BY 1 DESC NULLS LAST LIMIT 1",
            watch.dag_id,
            watch.run_id,
        )
        watch.see_size("xcom", size, where)
        # Triggers are deleted when their task resumes: only polling during the run sees them.
        # The column holds the Fernet-encrypted kwargs, a third bigger than the JSON: conservative.
        size, where = self._largest(
            "SELECT octet_length(t.kwargs), ti.task_id, ti.map_index FROM trigger t "
            "JOIN task_instance ti ON ti.trigger_id = t.id WHERE ti.dag_id = %s AND ti.run_id = %s "
            "ORDER BY 1 DESC LIMIT 1",
            watch.dag_id,
            watch.run_id,
        )
        watch.see_size("trigger_kwargs", size, where)
        for table in ("task_instance", "task_instance_history"):
            size, where = self._largest(
                f"SELECT octet_length(next_kwargs::text), task_id, map_index FROM {table} "
                "WHERE dag_id = %s AND run_id = %s ORDER BY 1 DESC NULLS LAST LIMIT 1",
                watch.dag_id,
                watch.run_id,
            )
            watch.see_size("trigger_event", size, where)

    def asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT e.id, e.source_task_id, e.source_map_index, e.extra, a.uri FROM asset_event e "
            "JOIN asset a ON a.id = e.asset_id WHERE e.source_dag_id = %s AND e.source_run_id = %s ORDER BY e.id",
            (dag_id, run_id),
        ).fetchall()
        return [{"id": r[0], "task_id": r[1], "map_index": r[2], "extra": r[3], "uri": r[4]} for r in rows]

    def watcher_trigger(self, asset_name: str) -> tuple[int, int | None] | None:
        """The (trigger id, triggerer job id) of the asset's watcher, or None while it has none."""
        row = self._conn.execute(
            "SELECT t.id, t.triggerer_id FROM trigger t JOIN asset_watcher w ON w.trigger_id = t.id "
            "JOIN asset a ON a.id = w.asset_id WHERE a.name = %s ORDER BY t.id DESC LIMIT 1",
            (asset_name,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def watched_asset_events(self, asset_name: str) -> list[dict[str, Any]]:
        """The asset's events that no task emitted (its watcher's), oldest first."""
        rows = self._conn.execute(
            "SELECT e.id, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = %s AND e.source_task_id IS NULL ORDER BY e.id",
            (asset_name,),
        ).fetchall()
        return [{"id": r[0], "extra": r[1]} for r in rows]


# --- The warehouse and the emulator -----------------------------------------------------------


class Warehouse:
    """The results DB the nightly DAG writes to (``dgs_warehouse``)."""

    def __init__(self, uri: str) -> None:
        self._uri = uri

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self._uri) as conn:
            return conn.execute(sql).fetchall()

    def sources(self, averages_table: str) -> list[str]:
        return [row[0] for row in self._query(f"SELECT source FROM {averages_table}")]

    def duplicate_segments(self, segments_table: str) -> int:
        return self._query(
            f"SELECT COUNT(*) FROM (SELECT source, segment_index FROM {segments_table} "
            "GROUP BY source, segment_index HAVING COUNT(*) > 1) d"
        )[0][0]

    def segment_sources(self, segments_table: str) -> int:
        return self._query(f"SELECT COUNT(DISTINCT source) FROM {segments_table}")[0][0]

    def count(self, table: str) -> int:
        """Rows in ``table``, 0 while the run has not created it."""
        exists = self._query(f"SELECT to_regclass('{table}') IS NOT NULL")[0][0]
        return self._query(f"SELECT COUNT(*) FROM {table}")[0][0] if exists else 0

    def written_span(self, averages_table: str) -> tuple[Any, Any]:
        """First and last ``scored_at`` of the averages rows."""
        return tuple(self._query(f"SELECT MIN(scored_at), MAX(scored_at) FROM {averages_table}")[0])


@dataclass
class EmulatorStats:
    requests: int
    rate_limited: int
    peak_in_flight: int
    source: str


def reset_emulator(deployment: Deployment) -> None:
    requests.post(f"{deployment.emulator_url}/_emulator/reset", timeout=10)


def emulator_stats(deployment: Deployment) -> EmulatorStats:
    """``GET /_emulator/stats`` (``peak_in_flight``, or ``max_in_flight`` before it was renamed)."""
    response = requests.get(f"{deployment.emulator_url}/_emulator/stats", timeout=10)
    if response.status_code == 404:
        # An emulator without the stats endpoint: count the 429s in its log; no peak known.
        log = Path(deployment.emulator_log).read_text(errors="replace")
        return EmulatorStats(
            requests=len(re.findall(r"POST /v1/read", log)),
            rate_limited=len(re.findall(r"\b429\b", log)),
            peak_in_flight=-1,
            source="emulator log (no /_emulator/stats)",
        )
    response.raise_for_status()
    stats = response.json()
    peak = stats.get("peak_in_flight", stats.get("max_in_flight"))
    return EmulatorStats(
        requests=int(stats["requests"]),
        rate_limited=int(stats["rate_limited"]),
        peak_in_flight=int(peak),
        source="/_emulator/stats",
    )
