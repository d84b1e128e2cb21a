"""Score new text objects as they land: a DAG scheduled on an asset that an event trigger watches.

No sensor holds a slot and no DAG polls on a schedule: ``DeepgramNewObjectsTrigger`` runs in the
triggerer, looks at ``SOURCE`` every ``POLL_INTERVAL`` seconds, and fires once per batch of objects
the operator's load history calls new or changed (objects already scored, or already announced,
never fire again, also after a triggerer restart). Each event is an asset event of ``NEW_TEXTS``,
which schedules this DAG; its one task scores what is new (the load history skips the rest) into
the SQLite tables of the ``dgsentiment_sqlite`` connection.

Needs Airflow 3 (``AssetWatcher``) and a running triggerer and scheduler. On Airflow 2.11 the DAG
imports but has no schedule (trigger it by hand, or use the nightly example's sensor)::

    export DGSENTIMENT_INBOX_SOURCE='file:///data/inbox/*.txt'   # for the triggerer and the workers
    airflow triggerer &
    airflow dags unpause deepgram_sentiment_on_new_objects

``DGSENTIMENT_INBOX_POLL_INTERVAL`` sets the seconds between two looks (default 30).
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum

try:
    from airflow.sdk import DAG, Asset, AssetWatcher
except ImportError:  # Airflow 2: no event-driven scheduling
    from airflow import DAG

    Asset = AssetWatcher = None

from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator
from airflow_provider_dgsentiment.triggers.new_objects import DeepgramNewObjectsTrigger

SOURCE = os.environ.get("DGSENTIMENT_INBOX_SOURCE", f"file://{Path(__file__).resolve().parent / 'sample_texts'}/*.txt")
SQL_CONN_ID = os.environ.get("DGSENTIMENT_EXAMPLE_SQL_CONN_ID", "dgsentiment_sqlite")
POLL_INTERVAL = float(os.environ.get("DGSENTIMENT_INBOX_POLL_INTERVAL", "30"))

if AssetWatcher is not None:
    NEW_TEXTS = Asset(
        "dgsentiment_new_texts",
        watchers=[
            AssetWatcher(
                name="dgsentiment_new_texts_watcher",
                trigger=DeepgramNewObjectsTrigger(source=SOURCE, sql_conn_id=SQL_CONN_ID, poll_interval=POLL_INTERVAL),
            )
        ],
    )
    SCHEDULE: list | None = [NEW_TEXTS]
else:
    SCHEDULE = None

with DAG(
    dag_id="deepgram_sentiment_on_new_objects",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["deepgram", "sentiment", "example"],
    doc_md=__doc__,
) as dag:
    DeepgramSentimentOperator(
        task_id="score_new_texts",
        source=SOURCE,
        sql_conn_id=SQL_CONN_ID,
        xcom_output="manifest",
        max_concurrency=5,
        fail_on_empty_source=False,
    )
