"""The operator with ``claims=``: objects taken from a listing published once, in the worker and deferred."""

from __future__ import annotations

import os

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.storage.sources import publish_listing
from airflow_provider_dgsentiment.storage.warehouse import sql_hook
from airflow_provider_dgsentiment.storage.work_claims import WorkClaims
from tests.conftest import SQL_CONN_ID, require_service
from tests.integration.conftest import s3_bucket  # noqa: F401  (fixture)
from tests.support.operator_runs import RUN_ID, make_operator, requests_during, run, run_deferred, table_rows
from tests.support.s3_requests import S3Requests

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


def test_a_retry_does_not_read_again_the_objects_its_first_try_stored(deepgram_conn, sqlite_db, inbox):
    publish_listing(f"file://{inbox}/", sql_conn_id=SQL_CONN_ID, listing=LISTING, batch_size=3)
    holder = f"test_sentiment_operator/{RUN_ID}/score/1"
    # The first try claimed the one batch, stored a.txt and b.txt, then died.
    assert len(WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), LISTING).claim(holder) or ()) == 3
    run(make_operator(source=[f"file://{inbox}/a.txt", f"file://{inbox}/b.txt"], sql_conn_id=SQL_CONN_ID))
    # a.txt now holds other words of the same size and time: read again, it would be sent.
    stat = (inbox / "a.txt").stat()
    (inbox / "a.txt").write_text("x" * stat.st_size)
    os.utime(inbox / "a.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    retry, sent = requests_during(deepgram_conn, lambda: run(make_operator(**claims_kwargs(inbox)), map_index=1))
    assert sent == 1  # c.txt only: a.txt and b.txt are unchanged since their complete read
    assert (retry["documents"], retry["scored"]) == (3, 1)
    assert len(table_rows(sqlite_db, "deepgram_sentiment_averages")) == 3
    assert WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), LISTING).progress()["done"] == 1


def test_deferred_task_takes_its_batches_in_the_triggerer(deepgram_conn, sqlite_db, inbox):
    publish_listing(f"file://{inbox}/", sql_conn_id=SQL_CONN_ID, listing=LISTING, batch_size=2)
    manifest = run_deferred(**claims_kwargs(inbox))
    assert (manifest["documents"], manifest["scored"]) == (3, 3)
    assert len(table_rows(sqlite_db, "deepgram_sentiment_averages")) == 3
    assert WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), LISTING).progress()["done"] == 2


def test_a_task_with_claims_on_s3_never_lists_and_reads_each_object_once(deepgram_conn, sqlite_db, s3_bucket):  # noqa: F811
    endpoint = require_service("DGS_TEST_S3_ENDPOINT", "S3-compatible server")
    for index in range(12):
        s3_bucket.put(f"in/text-{index:02d}.txt", f"Text {index} is lovely.")
    publish_listing(s3_bucket.uri("in/"), sql_conn_id=SQL_CONN_ID, listing=LISTING, batch_size=5)
    kwargs = {"source": s3_bucket.uri("in/"), "claims": LISTING, "sql_conn_id": SQL_CONN_ID, "xcom_output": "manifest"}
    with S3Requests(endpoint, s3_bucket.name) as reads:
        manifest = run(make_operator(**kwargs))
    counts = reads.counts()
    assert manifest["scored"] == 12
    # The task never lists the source: it reads each claimed object once.
    assert (counts["get_object"], counts["list"]) == (12, 0), dict(counts)


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
