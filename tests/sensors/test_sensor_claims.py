"""The sensor publishes what it found as the run's listing (``claims=``), so the run lists the source once."""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
from airflow_provider_dgsentiment.storage.warehouse import WarehouseWriter, sql_hook
from airflow_provider_dgsentiment.storage.work_claims import ClaimedNames, WorkClaims
from tests.conftest import SQL_CONN_ID
from tests.support.sensor_runs import scored_document

LISTING = "{{ dag.dag_id }}/{{ run_id }}"


def poke_with_claims(inbox, **kwargs):
    with DAG(dag_id="nightly", schedule=None) as dag:
        sensor = DeepgramSentimentSensor(
            task_id="wait", source=f"file://{inbox}/", xcom_output="counts", claims=LISTING, **kwargs
        )
    context = {"params": {}, "run_id": "manual__1", "dag": dag}
    sensor.render_template_fields(context)
    return sensor.poke(context)


def test_the_unscored_objects_found_are_published_once(inbox, sqlite_db):
    with WarehouseWriter(SQL_CONN_ID) as writer:
        writer.ensure_tables()
        writer.write([scored_document(f"file://{inbox}/a.txt")])
    found = poke_with_claims(inbox, sql_conn_id=SQL_CONN_ID)
    assert found.is_done and found.xcom_value["to_score"] == 2
    claims = WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), "nightly/manual__1")
    assert [name.rsplit("/", 1)[1] for name in ClaimedNames(claims, "task/0")] == ["b.txt", "c.txt"]
    (inbox / "d.txt").write_text("New, but the listing of this run is already published.")
    poke_with_claims(inbox, sql_conn_id=SQL_CONN_ID)  # a retried sensor keeps the first listing
    assert WorkClaims(claims.hook, claims.listing).progress() == {"done": 0, "claimed": 1, "free": 0}


def test_claims_needs_the_results_database(inbox):
    with pytest.raises(DeepgramConfigurationError, match="claims needs sql_conn_id"):
        poke_with_claims(inbox)
