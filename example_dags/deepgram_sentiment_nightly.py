"""Nightly enrichment: wait for new text objects, score them in mapped batches, store them in SQL.

``wait_for_texts`` (a sensor) waits until objects under ``source`` exist that are not yet in
the averages table and returns their URIs; ``make_batches`` splits them into lists of
``batch_size``; ``score_batch`` is mapped over those lists, each mapped task scoring its batch
with ``max_concurrency`` requests in flight and writing the per-segment and per-document rows.
Every mapped task runs in the Airflow pool ``deepgram``: the Deepgram account limit (10
concurrent requests on pay-as-you-go) is shared by all of them, so size the pool so that
``pool slots x MAX_CONCURRENCY <= account limit``::

    airflow pools set deepgram 2 "Deepgram: 2 slots x 5 requests = the 10-request account limit"

A task whose pool does not exist is never scheduled, so create the pool before the first run.

Offline by default: ``file://`` storage (``example_dags/sample_texts``), SQLite tables through
the ``dgsentiment_sqlite`` connection, the ``deepgram_default`` connection pointed at the local
emulator. S3 and PostgreSQL need run parameters (or the defaults below) alone::

    airflow dags test deepgram_sentiment_nightly -c '{"source": "s3://aws_default@my-bucket/in/",
        "sql_conn_id": "warehouse_postgres"}'

A successful ``score_batch`` updates the asset ``dgsentiment://warehouse/deepgram_sentiment_averages``,
which schedules the ``deepgram_sentiment_report`` DAG.
"""

from __future__ import annotations

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
from airflow_provider_dgsentiment.warehouse import table_asset

#: The pool every scoring task runs in (create it: ``airflow pools set deepgram 2 "..."``).
POOL = "deepgram"
#: Requests in flight per mapped task; pool slots x this must stay within the account limit.
MAX_CONCURRENCY = 5
DEFAULT_SOURCE = os.environ.get(
    "DGSENTIMENT_EXAMPLE_SOURCE", f"file://{Path(__file__).resolve().parent / 'sample_texts'}/*.txt"
)
DEFAULT_SQL_CONN_ID = os.environ.get("DGSENTIMENT_EXAMPLE_SQL_CONN_ID", "dgsentiment_sqlite")
SEGMENTS_TABLE = "deepgram_sentiment_segments"
AVERAGES_TABLE = "deepgram_sentiment_averages"
#: The averages table as an Asset: the nightly DAG's outlet, the report DAG's schedule.
AVERAGES_ASSET = table_asset(AVERAGES_TABLE)


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
        "source": Param(DEFAULT_SOURCE, type="string", description="URI glob or prefix of the text objects"),
        "source_conn_id": Param(
            None, type=["null", "string"], description="storage connection; default the one in the URI"
        ),
        "sql_conn_id": Param(DEFAULT_SQL_CONN_ID, type="string", description="SQL connection for the tables"),
        "batch_size": Param(100, type="integer", minimum=1, description="documents per mapped scoring task"),
        "segments_table": Param(SEGMENTS_TABLE, type="string"),
        "averages_table": Param(AVERAGES_TABLE, type="string"),
    },
) as dag:
    wait_for_texts = DeepgramSentimentSensor(
        task_id="wait_for_texts",
        path="{{ params.source }}",
        conn_id="{{ storage_conn_id(params.source, params.source_conn_id) }}",
        sql_conn_id="{{ params.sql_conn_id }}",
        averages_table="{{ params.averages_table }}",
        min_objects=1,
        mode="reschedule",
        poke_interval=10 * 60,
        timeout=6 * 60 * 60,
        # No new documents tonight is not a failure: the run ends skipped.
        soft_fail=True,
    )

    @task
    def make_batches(uris: list[str], **context) -> list[list[str]]:
        """Split the sensed URIs into lists of ``batch_size`` (one mapped scoring task each)."""
        size = int(context["params"]["batch_size"])
        batches = [uris[start : start + size] for start in range(0, len(uris), size)]
        print(f"{len(uris)} new document(s) in {len(batches)} batch(es) of at most {size}")
        return batches

    score_batch = DeepgramSentimentOperator.partial(
        task_id="score_batch",
        source_conn_id="{{ storage_conn_id(params.source, params.source_conn_id) }}",
        sql_conn_id="{{ params.sql_conn_id }}",
        segments_table="{{ params.segments_table }}",
        averages_table="{{ params.averages_table }}",
        deepgram_conn_id="deepgram_default",
        max_concurrency=MAX_CONCURRENCY,
        xcom_output="summary",
        on_error="fail",
        pool=POOL,
        retries=2,
        retry_delay=pendulum.duration(minutes=5),
        outlets=[AVERAGES_ASSET],
    ).expand(source=make_batches(wait_for_texts.output))

    @task
    def report(summaries: list[dict]) -> dict:
        """Add up what the mapped tasks did (counts only, never document text)."""
        summaries = list(summaries[:])  # one read of every mapped task's XCom
        keys = ("documents", "scored", "skipped", "failed")
        totals = {key: sum(summary[key] for summary in summaries) for key in keys}
        print(
            f"{len(summaries)} batch(es): {totals['documents']} document(s), {totals['scored']} scored, "
            f"{totals['skipped']} skipped, {totals['failed']} failed"
        )
        return totals

    report(score_batch.output)
