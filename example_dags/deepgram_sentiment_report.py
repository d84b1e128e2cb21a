"""Report on the averages table whenever the nightly DAG has written to it.

Scheduled on the asset ``dgsentiment://warehouse/deepgram_sentiment_averages`` that the
``score_batch`` tasks of ``deepgram_sentiment_nightly`` update: after each nightly run that
scored something, this DAG counts the stored documents by sentiment and logs the most
negative ones (names and scores only, never document text).

Uses the same ``dgsentiment_sqlite`` connection as the nightly DAG by default; point it at
PostgreSQL with the ``sql_conn_id`` parameter (or ``DGSENTIMENT_EXAMPLE_SQL_CONN_ID``).
"""

from __future__ import annotations

import os

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_dgsentiment.warehouse import table_asset

DEFAULT_SQL_CONN_ID = os.environ.get("DGSENTIMENT_EXAMPLE_SQL_CONN_ID", "dgsentiment_sqlite")
AVERAGES_TABLE = "deepgram_sentiment_averages"
#: The same Asset the nightly DAG's scoring tasks update (table_asset names it by table).
AVERAGES_ASSET = table_asset(AVERAGES_TABLE)
#: Most negative documents listed in the report.
WORST_LISTED = 5

with DAG(
    dag_id="deepgram_sentiment_report",
    schedule=[AVERAGES_ASSET],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["deepgram", "sentiment", "example"],
    doc_md=__doc__,
    params={
        "sql_conn_id": Param(DEFAULT_SQL_CONN_ID, type="string", description="SQL connection with the table"),
        "averages_table": Param(AVERAGES_TABLE, type="string"),
    },
) as dag:

    @task
    def summarize(**context) -> dict:
        """Count the stored documents by sentiment and log the most negative ones."""
        from airflow.providers.common.compat.sdk import BaseHook
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        from airflow_provider_dgsentiment.warehouse import validate_table_name

        params = context["params"]
        table = validate_table_name(params["averages_table"], "averages_table")
        hook = BaseHook.get_connection(params["sql_conn_id"]).get_hook()
        if not isinstance(hook, DbApiHook):
            raise TypeError(f"sql_conn_id {params['sql_conn_id']!r} is not a SQL connection")

        by_sentiment = hook.get_records(
            f"SELECT sentiment, COUNT(*), AVG(sentiment_score) FROM {table} GROUP BY sentiment ORDER BY sentiment"
        )
        worst = hook.get_records(
            f"SELECT source, sentiment_score FROM {table} ORDER BY sentiment_score ASC, source LIMIT {WORST_LISTED}"
        )
        total = sum(int(row[1]) for row in by_sentiment)
        print(f"{total} document(s) in {table}")
        for sentiment, count, average in by_sentiment:
            print(f"  {sentiment}: {count} document(s), mean score {float(average):+.3f}")
        if worst:
            print("Most negative:")
            for source, score in worst:
                print(f"  {float(score):+.3f}  {source}")
        return {
            "documents": total,
            "by_sentiment": {row[0]: int(row[1]) for row in by_sentiment},
            "most_negative": [row[0] for row in worst],
        }

    summarize()
