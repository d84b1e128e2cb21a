"""Nightly enrichment: wait for new or changed objects, score them in mapped shards, store them in SQL.

``source`` holds text objects (one document each) and record exports (``.jsonl.gz`` of tickets,
one document per record, keyed by ``ticket_id`` in the ``tickets`` key namespace, so a ticket in
tomorrow's export is the same document as today's and costs nothing unless its text changed).
``wait_for_texts`` (a sensor) waits until objects under ``source`` exist that the operator would
read (new or changed since a complete read, by the load history both share; it is given the
operator's reading options) and returns their count (never the list: 100k URIs would not fit in
XCom) with the records the history knows in them, and publishes those objects, listed once, into
the results database (``claims=``: batches of names in the ``dgsentiment_work_claims`` table; with
``results_path`` alone there is no listing and each shard lists ``source`` for its hash shard);
``plan_shards`` turns the count into about one mapped task per ``shard_size`` documents;
``score_shard`` is mapped over them, each mapped task taking batches of that listing as it reads
(``claims=``: it never lists ``source`` itself, and a fast task takes more batches, so they finish
together), with ``max_concurrency`` requests in flight, writing the per-segment and per-document
rows, and returning a bounded manifest. Every XCom value stays a few hundred bytes at any size.

Rate limit: the Deepgram account limit (10 concurrent requests on pay-as-you-go) is shared by
every mapped task: each is allowed the whole limit (``MAX_CONCURRENCY`` = the connection's
``max_concurrency``), and tasks on one host split it through the hook's account budget (a lease
per task, so a task finishing early hands its slots to the others); tasks on other hosts converge
through the adaptive window. The tasks run in the Airflow pool ``deepgram``, which counts deferred
tasks, so that deferrable runs keep their slots while they score in the triggerer::

    airflow pools set deepgram 2 "Deepgram: scoring tasks sharing the 10-request account" \\
        --include-deferred

A task whose pool does not exist is never scheduled, so create the pool before the first run.
One run at a time (``max_active_runs=1``): two runs over the same new objects would both pay.

Offline by default: ``file://`` storage (``example_dags/sample_texts`` and ``sample_exports``), SQLite tables through
the ``dgsentiment_sqlite`` connection, the ``deepgram_default`` connection pointed at the local
emulator. S3, PostgreSQL and the triggerer need run parameters (or the defaults below) alone::

    airflow dags test deepgram_sentiment_nightly -c '{"source": "s3://aws_default@my-bucket/in/",
        "sql_conn_id": "warehouse_postgres", "deferrable": true}'

Without a SQL database, give ``results_path`` and an empty ``sql_conn_id``: the per-document results
go to JSONL parts there and the load history lives beside them (``<results_path>/_load_history/``),
so the sensor and the shards still agree on what is new and each night pays for new text only::

    airflow dags test deepgram_sentiment_nightly -c '{"source": "s3://aws_default@my-bucket/in/",
        "sql_conn_id": "", "results_path": "s3://aws_default@my-bucket/sentiment/"}'

A successful ``score_shard`` updates the averages table's asset, named as OpenLineage names
the operator's output table (``DGSENTIMENT_EXAMPLE_TABLES_NAMESPACE``, ``..._DATABASE`` and
``..._SCHEMA`` say where the tables are, e.g. ``postgres://db:5432``, ``warehouse``, ``public``),
with the run's statistics in the asset event; that schedules ``deepgram_sentiment_report``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlsplit

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param


from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator
from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
from airflow_provider_dgsentiment.storage.lineage import table_asset

#: The pool every scoring task runs in (create it: ``airflow pools set deepgram 2 "..." --include-deferred``).
POOL = "deepgram"
#: Requests in flight per mapped task: the account limit; tasks sharing it split it (account budget).
MAX_CONCURRENCY = 10
#: Documents per mapped task: at 5 in flight and 50 ms a request that is ~50 s of scoring,
#: so a task's start-up (a few seconds) stays a small share of its run.
DEFAULT_SHARD_SIZE = 5000
#: The sample texts and the sample ticket export, side by side (``sample_texts/*.txt``, ``sample_exports/*.jsonl.gz``).
DEFAULT_SOURCE = os.environ.get("DGSENTIMENT_EXAMPLE_SOURCE", f"file://{Path(__file__).resolve().parent}/sample_*/*")
#: How the record exports are read; text objects are whole documents whatever these say.
TEXT_FIELD = "body"
ID_FIELD = "ticket_id"
KEY_NAMESPACE = "tickets"
#: The run's listing: the sensor publishes it in the SQL database, the scoring tasks claim batches of it.
#: Without a SQL database (``results_path`` only) there is none: each shard lists ``source`` itself.
LISTING = "{{ (dag.dag_id ~ '/' ~ run_id) if params.sql_conn_id else '' }}"
DEFAULT_SQL_CONN_ID = os.environ.get("DGSENTIMENT_EXAMPLE_SQL_CONN_ID", "dgsentiment_sqlite")
SEGMENTS_TABLE = "deepgram_sentiment_segments"
AVERAGES_TABLE = "deepgram_sentiment_averages"
#: The averages table as an Asset: the nightly DAG's outlet, the report DAG's schedule.
AVERAGES_ASSET = table_asset(
    AVERAGES_TABLE,
    namespace=os.environ.get("DGSENTIMENT_EXAMPLE_TABLES_NAMESPACE", "sqlite:///tmp/dgsentiment.db"),
    database=os.environ.get("DGSENTIMENT_EXAMPLE_TABLES_DATABASE") or None,
    schema=os.environ.get("DGSENTIMENT_EXAMPLE_TABLES_SCHEMA") or None,
)


def storage_conn_id(source: str, source_conn_id: str | None = None) -> str:
    """Return the storage connection: ``source_conn_id``, else the one in ``s3://conn@bucket/...``, else ''."""
    if source_conn_id:
        return source_conn_id
    return urlsplit(source).username or ""


with DAG(
    dag_id="deepgram_sentiment_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["deepgram", "sentiment", "example"],
    doc_md=__doc__,
    user_defined_macros={"storage_conn_id": storage_conn_id},
    params={
        "source": Param(DEFAULT_SOURCE, type="string", description="URI glob or prefix of the texts and exports"),
        "source_conn_id": Param(
            None, type=["null", "string"], description="storage connection; default the one in the URI"
        ),
        "sql_conn_id": Param(DEFAULT_SQL_CONN_ID, type="string", description="SQL connection for the tables"),
        "results_path": Param(
            "", type="string", description="prefix for JSONL results (with sql_conn_id '': the load history too)"
        ),
        "text_field": Param(TEXT_FIELD, type="string", description="field of an exported record to score"),
        "id_field": Param(ID_FIELD, type="string", description="field that keys an exported record"),
        "key_namespace": Param(KEY_NAMESPACE, type="string", description="the entities the keys name"),
        "shard_size": Param(DEFAULT_SHARD_SIZE, type="integer", minimum=1, description="documents per mapped task"),
        "deferrable": Param(False, type="boolean", description="score in the triggerer instead of the workers"),
        "segments_table": Param(SEGMENTS_TABLE, type="string"),
        "averages_table": Param(AVERAGES_TABLE, type="string"),
    },
) as dag:
    wait_for_texts = DeepgramSentimentSensor(
        task_id="wait_for_texts",
        source="{{ params.source }}",
        source_conn_id="{{ storage_conn_id(params.source, params.source_conn_id) }}",
        sql_conn_id="{{ params.sql_conn_id }}",
        averages_table="{{ params.averages_table }}",
        results_path="{{ params.results_path }}",
        # The operator's reading options: "new" means what the operator would read.
        text_field="{{ params.text_field }}",
        id_field="{{ params.id_field }}",
        key_namespace="{{ params.key_namespace }}",
        xcom_output="counts",
        claims=LISTING,
        min_objects=1,
        mode="reschedule",
        poke_interval=10 * 60,
        timeout=6 * 60 * 60,
        # No new documents tonight is not a failure: the run ends skipped.
        soft_fail=True,
    )

    @task
    def plan_shards(sensed: dict, **context) -> list[dict]:
        """
        One mapped scoring task per ``shard_size`` documents to read.

        Over the sensor's listing (``[{"claims": listing, ...}]``) when it published one, else over
        hash shards of the source (``[{"shard": "i/n", ...}]``, each task listing it). Documents are
        the records the load history knows in the changed objects (their last read) plus one per
        object never read (a text, or a new export whose size is not known yet).
        """
        params = context["params"]
        documents = int(sensed["records"]) + int(sensed["unknown"])
        count = max(1, math.ceil(documents / int(params["shard_size"])))
        listing = sensed.get("listing")
        print(
            f"{sensed['to_score']} new or changed object(s) of {sensed['matched']}, about {documents} "
            f"document(s): {count} shard(s), listing {listing}"
        )
        deferrable = bool(params["deferrable"])
        if listing:
            return [{"claims": listing, "deferrable": deferrable} for _ in range(count)]
        return [{"shard": f"{index}/{count}", "deferrable": deferrable} for index in range(count)]

    score_shard = DeepgramSentimentOperator.partial(
        task_id="score_shard",
        source="{{ params.source }}",
        source_conn_id="{{ storage_conn_id(params.source, params.source_conn_id) }}",
        sql_conn_id="{{ params.sql_conn_id }}",
        segments_table="{{ params.segments_table }}",
        averages_table="{{ params.averages_table }}",
        results_path="{{ params.results_path }}",
        text_field="{{ params.text_field }}",
        id_field="{{ params.id_field }}",
        key_namespace="{{ params.key_namespace }}",
        deepgram_conn_id="deepgram_default",
        max_concurrency=MAX_CONCURRENCY,
        xcom_output="manifest",
        on_error="fail",
        pool=POOL,
        retries=2,
        retry_delay=pendulum.duration(seconds=30),
        outlets=[AVERAGES_ASSET],
    ).expand_kwargs(plan_shards(wait_for_texts.output))

    @task
    def report(manifests: list[dict]) -> dict:
        """Add up what the mapped tasks did (counts only, never document text)."""
        manifests = list(manifests[:])  # one read of every mapped task's XCom
        keys = ("documents", "scored", "skipped", "failed", "input_tokens", "output_tokens")
        totals = {key: sum(manifest[key] for manifest in manifests) for key in keys}
        print(
            f"{len(manifests)} shard(s): {totals['documents']} document(s), {totals['scored']} scored, "
            f"{totals['skipped']} skipped, {totals['failed']} failed, {totals['input_tokens']} input tokens"
        )
        return totals

    report(score_shard.output)
