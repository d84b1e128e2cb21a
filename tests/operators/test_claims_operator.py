"""The operator with ``claims=``: objects taken from a listing published once, in the worker and deferred."""

from __future__ import annotations

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.storage.sources import publish_listing
from airflow_provider_dgsentiment.storage.warehouse import sql_hook
from airflow_provider_dgsentiment.storage.work_claims import WorkClaims
from tests.conftest import SQL_CONN_ID
from tests.support.operator_runs import RUN_ID, make_operator, run, run_deferred, table_rows

LISTING = "nightly/run-1"


def claims_kwargs(inbox) -> dict:
    return {
        "source": f"file://{inbox}/",
        "claims": LISTING,
        "sql_conn_id": SQL_CONN_ID,
        "xcom_output": "manifest",
    }


def test_tasks_of_one_listing_score_each_object_once_without_listing(deepgram_conn, sqlite_db, inbox):
    publish_listing(f"file://{inbox}/", sql_conn_id=SQL_CONN_ID, listing=LISTING, batch_size=1)
    (inbox / "late.txt").write_text("Arrived after the listing, so not in this run.")
    hook = sql_hook(SQL_CONN_ID, "sql_conn_id")
    # Task 1 crashed holding the first batch; task 0 runs, then task 1's retry takes its batch back.
    assert list(WorkClaims(hook, LISTING).claim(f"test_sentiment_operator/{RUN_ID}/score/1") or ()) == [
        f"file://{inbox}/a.txt"
    ]
    first = run(make_operator(**claims_kwargs(inbox)), map_index=0)
    retry = run(make_operator(**claims_kwargs(inbox)), map_index=1)
    assert (first["documents"], first["scored"]) == (2, 2)
    assert (retry["documents"], retry["scored"]) == (1, 1)
    rows = table_rows(sqlite_db, "deepgram_sentiment_averages")
    assert [row["source"].rsplit("/", 1)[1] for row in rows] == ["a.txt", "b.txt", "c.txt"]
    assert WorkClaims(hook, LISTING).progress() == {"done": 3, "claimed": 0, "free": 0}
    # A task started after everything is done scores nothing and does not fail.
    late = run(make_operator(**claims_kwargs(inbox)), map_index=2)
    assert late["documents"] == 0


def test_deferred_task_takes_its_batches_in_the_triggerer(deepgram_conn, sqlite_db, inbox):
    publish_listing(f"file://{inbox}/", sql_conn_id=SQL_CONN_ID, listing=LISTING, batch_size=2)
    manifest = run_deferred(**claims_kwargs(inbox))
    assert (manifest["documents"], manifest["scored"]) == (3, 3)
    assert len(table_rows(sqlite_db, "deepgram_sentiment_averages")) == 3
    assert WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), LISTING).progress()["done"] == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "file:///in/", "claims": LISTING}, "claims needs sql_conn_id"),
        (
            {"source": "file:///in/", "claims": LISTING, "shard": "0/2", "sql_conn_id": SQL_CONN_ID},
            "not text, sql or shard",
        ),
        ({"text": "hi", "claims": LISTING, "sql_conn_id": SQL_CONN_ID}, "not text, sql or shard"),
    ],
)
def test_claims_arguments_are_checked(kwargs, message):
    with pytest.raises(DeepgramConfigurationError, match=message):
        run(make_operator(**kwargs))
