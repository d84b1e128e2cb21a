"""Score records, not files: a gzipped JSONL export and the rows of a SQL table, into the same tables.

``score_export`` reads a nightly export (one JSON object per line, gzipped) and scores the
``body`` of each record, keyed by ``ticket_id``: the rows are named
``<export URI>#<ticket_id>``. ``score_table`` scores the rows of a SQL table (``SELECT``,
streamed, never the whole result in memory), read from and written to the same database:
enrichment in place. Both write to the two tables and return a bounded manifest.

Offline by default: the sample export in ``example_dags/sample_exports`` (``file://``), SQLite
through the ``dgsentiment_sqlite`` connection, where ``seed_tickets`` creates a small
``support_tickets`` table, and the ``deepgram_default`` connection pointed at the local
emulator. An export on S3 and a PostgreSQL warehouse need run parameters alone::

    airflow dags test deepgram_sentiment_records_to_sql -c '{
        "export": "s3://aws_default@exports/2024-06-01/tickets.jsonl.gz",
        "sql_conn_id": "warehouse_postgres", "table_sql": "SELECT ticket_id, body FROM support.tickets"}'
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

DEFAULT_EXPORT = f"file://{Path(__file__).resolve().parent / 'sample_exports' / 'tickets.jsonl.gz'}"
DEFAULT_SQL_CONN_ID = os.environ.get("DGSENTIMENT_EXAMPLE_SQL_CONN_ID", "dgsentiment_sqlite")
#: Rows of the sample table ``seed_tickets`` creates when it is missing (SQLite, offline runs).
SAMPLE_TICKETS = [
    ("S-1", "The new dashboard is wonderful and much faster."),
    ("S-2", "My order arrived broken and the replacement never came."),
    ("S-3", "Please update the billing address on my account."),
]

with DAG(
    dag_id="deepgram_sentiment_records_to_sql",
    schedule=None,
    catchup=False,
    tags=["deepgram", "sentiment", "example"],
    doc_md=__doc__,
    params={
        "export": Param(DEFAULT_EXPORT, type="string", description="URI of a JSONL/CSV/Parquet export (.gz too)"),
        "sql_conn_id": Param(DEFAULT_SQL_CONN_ID, type="string", description="SQL connection for the tables"),
        "table_sql": Param(
            "SELECT ticket_id, body FROM support_tickets", type="string", description="the rows to score"
        ),
        "seed_sample_table": Param(True, type="boolean", description="create support_tickets when missing"),
    },
) as dag:

    @task
    def seed_tickets(**context) -> int:
        """Create the sample ``support_tickets`` table when it is missing (offline runs only)."""
        from airflow_provider_dgsentiment.storage.warehouse import sql_hook

        params = context["params"]
        if not params["seed_sample_table"]:
            return 0
        hook = sql_hook(params["sql_conn_id"], "sql_conn_id")
        hook.run("CREATE TABLE IF NOT EXISTS support_tickets (ticket_id TEXT PRIMARY KEY, body TEXT)")
        if hook.get_first("SELECT COUNT(*) FROM support_tickets")[0] == 0:
            hook.insert_rows("support_tickets", SAMPLE_TICKETS, target_fields=["ticket_id", "body"])
        return len(SAMPLE_TICKETS)

    score_export = DeepgramSentimentOperator(
        task_id="score_export",
        source="{{ params.export }}",
        text_field="body",
        id_field="ticket_id",
        sql_conn_id="{{ params.sql_conn_id }}",
        xcom_output="manifest",
    )

    score_table = DeepgramSentimentOperator(
        task_id="score_table",
        sql="{{ params.table_sql }}",
        text_field="body",
        id_field="ticket_id",
        sql_conn_id="{{ params.sql_conn_id }}",  # read from and written to the same database
        xcom_output="manifest",
    )

    seed_tickets() >> score_table
