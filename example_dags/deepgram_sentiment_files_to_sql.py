"""Score text files from object storage and store the results in SQL tables.

Offline by default: ``file://`` storage (``example_dags/sample_texts``), SQLite tables
through the ``dgsentiment_sqlite`` connection, and the ``deepgram_default`` connection
pointed at the local emulator. Switch to S3 and PostgreSQL by parameters alone, e.g.
``{"source": "s3://aws_default@my-bucket/in/*.txt", "sql_conn_id": "warehouse"}``.

Run it twice: the second run finds every document's fingerprint in the averages table
and scores nothing, and the tables keep exactly one set of rows per document::

    export AIRFLOW_CONN_DGSENTIMENT_SQLITE='{"conn_type": "sqlite", "host": "/tmp/dgsentiment.db"}'
    airflow dags test deepgram_sentiment_files_to_sql -c '{"source": "file:///data/in/*.txt"}'
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator

#: Where the documents are, unless the run's ``source`` param says otherwise.
DEFAULT_SOURCE = os.environ.get(
    "DGSENTIMENT_EXAMPLE_SOURCE", f"file://{Path(__file__).resolve().parent / 'sample_texts'}/*.txt"
)
DEFAULT_SQL_CONN_ID = os.environ.get("DGSENTIMENT_EXAMPLE_SQL_CONN_ID", "dgsentiment_sqlite")

with DAG(
    dag_id="deepgram_sentiment_files_to_sql",
    schedule=None,
    catchup=False,
    tags=["deepgram", "sentiment", "example"],
    doc_md=__doc__,
    params={
        "source": Param(DEFAULT_SOURCE, type="string", description="URI, glob or prefix of the text objects"),
        "sql_conn_id": Param(DEFAULT_SQL_CONN_ID, type="string", description="SQL connection for the tables"),
        "segments_table": Param("deepgram_sentiment_segments", type="string"),
        "averages_table": Param("deepgram_sentiment_averages", type="string"),
    },
) as dag:
    score = DeepgramSentimentOperator(
        task_id="score_files",
        source="{{ params.source }}",
        sql_conn_id="{{ params.sql_conn_id }}",
        segments_table="{{ params.segments_table }}",
        averages_table="{{ params.averages_table }}",
        xcom_output="summary",
        on_error="fail",
    )

    @task
    def report(summary: dict) -> dict:
        """Print what the run did, one line per document (names and scores, never the text)."""
        print(
            f"{summary['documents']} document(s): {summary['scored']} scored, "
            f"{summary['skipped']} skipped, {summary['failed']} failed"
        )
        for item in summary["items"]:
            if item["status"] == "scored":
                print(f"  {item['source']}: {item['sentiment']} ({item['sentiment_score']:+.3f})")
            else:
                print(f"  {item['source']}: {item['status']} ({item.get('reason') or item.get('error')})")
        return {key: summary[key] for key in ("documents", "scored", "skipped", "failed")}

    report(score.output)
