"""The sensor publishes what it found as the run's listing (``claims=``), so the run lists the source once."""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
from airflow_provider_dgsentiment.storage.warehouse import sql_hook
from airflow_provider_dgsentiment.storage.work_claims import WorkClaims
from tests.conftest import SQL_CONN_ID

LISTING = "{{ dag.dag_id }}/{{ run_id }}"


def poke_with_claims(inbox, **kwargs):
    with DAG(dag_id="nightly", schedule=None) as dag:
        sensor = DeepgramSentimentSensor(
            task_id="wait", source=f"file://{inbox}/", xcom_output="counts", claims=LISTING, **kwargs
        )
    context = {"params": {}, "run_id": "manual__1", "dag": dag}
    sensor.render_template_fields(context)
    return sensor.poke(context)


def test_the_objects_to_read_are_published_once_with_their_versions(inbox, sqlite_db):
    found = poke_with_claims(inbox, sql_conn_id=SQL_CONN_ID)
    assert found.is_done and found.xcom_value["to_score"] == 3
    assert found.xcom_value["listing"] == "nightly/manual__1"
    claims = WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), "nightly/manual__1")
    batch = claims.claim("task/0") or {}
    assert [name.rsplit("/", 1)[1] for name in batch] == ["a.txt", "b.txt", "c.txt"]
    assert all(batch.values())  # the versions the load history will record once they are read
    (inbox / "d.txt").write_text("New, but the listing of this run is already published.")
    poke_with_claims(inbox, sql_conn_id=SQL_CONN_ID)  # a retried sensor keeps the first listing
    assert WorkClaims(claims.hook, claims.listing).progress() == {"done": 0, "claimed": 1, "free": 0}


def test_claims_needs_the_results_database(inbox):
    with pytest.raises(DeepgramConfigurationError, match="claims needs sql_conn_id"):
        poke_with_claims(inbox)
