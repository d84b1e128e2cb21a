"""Report on the averages table whenever the nightly DAG has written to it.

Scheduled on the averages table's asset that the ``score_shard`` tasks of
``deepgram_sentiment_nightly`` update (named as OpenLineage names the table; see that DAG):
after each nightly run that scored something, this DAG adds up the run statistics the
scoring tasks attached to their asset events (documents, scored, skipped, failed, tokens,
sentiment counts), counts the stored documents by sentiment and logs the most negative ones
(names and scores only, never document text).

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

from airflow_provider_dgsentiment.storage.lineage import table_asset

DEFAULT_SQL_CONN_ID = os.environ.get("DGSENTIMENT_EXAMPLE_SQL_CONN_ID", "dgsentiment_sqlite")
AVERAGES_TABLE = "deepgram_sentiment_averages"
#: The same Asset the nightly DAG's scoring tasks update.
AVERAGES_ASSET = table_asset(
    AVERAGES_TABLE,
    namespace=os.environ.get("DGSENTIMENT_EXAMPLE_TABLES_NAMESPACE", "sqlite:///tmp/dgsentiment.db"),
    database=os.environ.get("DGSENTIMENT_EXAMPLE_TABLES_DATABASE") or None,
    schema=os.environ.get("DGSENTIMENT_EXAMPLE_TABLES_SCHEMA") or None,
)
#: The statistics each scoring task attaches to its asset event.
RUN_STATISTICS = ("documents", "scored", "skipped", "failed", "input_tokens", "output_tokens")
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
    def run_statistics(**context) -> dict:
        """Add up the statistics of the asset events that triggered this run."""
        events_by_asset = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        events = [event for asset_events in events_by_asset.values() for event in asset_events]
        totals = dict.fromkeys(RUN_STATISTICS, 0)
        sentiments = {"positive": 0, "neutral": 0, "negative": 0}
        for event in events:
            extra = event.extra or {}
            for key in RUN_STATISTICS:
                totals[key] += int(extra.get(key, 0))
            for label, count in (extra.get("sentiment_counts") or {}).items():
                sentiments[label] = sentiments.get(label, 0) + int(count)
        print(
            f"{len(events)} asset event(s): {totals['documents']} document(s), {totals['scored']} scored, "
            f"{totals['skipped']} skipped, {totals['failed']} failed; sentiments {sentiments}"
        )
        return {"events": len(events), **totals, "sentiment_counts": sentiments}

    @task
    def summarize(**context) -> dict:
        """Count the stored documents by sentiment and log the most negative ones."""
        from airflow.providers.common.compat.sdk import BaseHook
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        from airflow_provider_dgsentiment.storage.warehouse import validate_table_name

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

    run_statistics() >> summarize()
