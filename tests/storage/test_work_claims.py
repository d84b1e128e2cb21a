"""Claims on a listing: published once, each batch to one task, a retry takes its own back, dead claims expire."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from airflow_provider_dgsentiment.storage.sources import publish_listing
from airflow_provider_dgsentiment.storage.warehouse import sql_hook
from airflow_provider_dgsentiment.storage.work_claims import CLAIMS_TABLE, ClaimedNames, WorkClaims
from tests.conftest import SQL_CONN_ID, require_service

NAMES = [f"file:///in/doc-{index:03d}.txt" for index in range(10)]


@pytest.fixture
def claims(sqlite_db):
    claims = WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), "nightly/run-1")
    assert claims.publish(NAMES, batch_size=3) == 4
    yield claims
    claims.close()


def test_versions_travel_with_the_claims(sqlite_db):
    claims = WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), "nightly/versions")
    claims.publish({"s3://b/in/a.txt": '"etag-a"', "s3://b/in/b.txt": None}, batch_size=5)
    batches: list[dict] = []
    names = ClaimedNames(claims, "task/0")
    names.on_batch = batches.append
    assert list(names) == ["s3://b/in/a.txt", "s3://b/in/b.txt"]
    assert batches == [{"s3://b/in/a.txt": '"etag-a"', "s3://b/in/b.txt": None}]


def test_publishing_again_keeps_the_first_listing(claims):
    assert claims.publish(["other"], batch_size=1) == 4
    assert claims.progress() == {"done": 0, "claimed": 0, "free": 4}


def test_every_batch_goes_to_one_holder_and_done_batches_never_come_back(claims):
    first = ClaimedNames(claims, "task/0")
    names = iter(first)
    taken_by_first = [next(names) for _ in range(3)]  # one batch read
    second = WorkClaims(claims.hook, claims.listing)
    taken_by_second = list(ClaimedNames(second, "task/1"))  # takes every batch still free
    taken_by_first += list(names)
    assert taken_by_first == NAMES[:3]
    assert taken_by_second == NAMES[3:]
    assert claims.progress() == {"done": 0, "claimed": 4, "free": 0}
    assert first.finish() == 1
    assert ClaimedNames(WorkClaims(claims.hook, claims.listing), "task/1").finish() == 3
    assert claims.progress() == {"done": 4, "claimed": 0, "free": 0}
    assert list(ClaimedNames(WorkClaims(claims.hook, claims.listing), "task/2")) == []


def test_a_retried_task_takes_its_own_batches_back_first(claims):
    crashed = iter(ClaimedNames(claims, "task/0"))
    [next(crashed) for _ in range(4)]  # two batches claimed, then the worker died
    other = WorkClaims(claims.hook, claims.listing)
    assert list(other.claim("task/1") or ()) == NAMES[6:9]
    retry = WorkClaims(claims.hook, claims.listing)
    assert list(retry.claim("task/0") or ()) == NAMES[0:3]
    assert list(retry.claim("task/0") or ()) == NAMES[3:6]
    assert list(retry.claim("task/0") or ()) == NAMES[9:]
    assert retry.claim("task/0") is None


def test_claims_of_a_dead_task_expire_back_into_the_pool(sqlite_db):
    hook = sql_hook(SQL_CONN_ID, "sql_conn_id")
    dead = WorkClaims(hook, "nightly/run-2", ttl=0.2)
    dead.publish(NAMES, batch_size=5)
    assert list(dead.claim("task/0") or ()) == NAMES[:5]
    survivor = WorkClaims(hook, "nightly/run-2", ttl=0.2)
    assert list(survivor.claim("task/1") or ()) == NAMES[5:]
    assert survivor.claim("task/1") is None  # task/0's claim is still alive
    time.sleep(0.3)
    assert list(survivor.claim("task/1") or ()) == NAMES[:5]


def test_publish_listing_lists_the_source_once(sqlite_db, inbox):
    published = publish_listing(f"file://{inbox}/", sql_conn_id=SQL_CONN_ID, listing="nightly/run-3", batch_size=2)
    assert published == {"listing": "nightly/run-3", "objects": 3, "batches": 2}
    (inbox / "d.txt").write_text("Arrived after the listing.")
    again = publish_listing(f"file://{inbox}/", sql_conn_id=SQL_CONN_ID, listing="nightly/run-3", batch_size=2)
    assert again["batches"] == 2
    claims = WorkClaims(sql_hook(SQL_CONN_ID, "sql_conn_id"), "nightly/run-3")
    assert [name.rsplit("/", 1)[1] for name in ClaimedNames(claims, "t")] == ["a.txt", "b.txt", "c.txt"]


@pytest.mark.integration
def test_postgres_tasks_claiming_at_once_take_each_batch_once(monkeypatch):
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    monkeypatch.setenv("AIRFLOW_CONN_DGS_TEST_CLAIMS_PG", uri)
    hook = sql_hook("dgs_test_claims_pg", "sql_conn_id")
    listing = f"race/{uuid.uuid4().hex}"
    names = [f"s3://bucket/in/{index:05d}.txt" for index in range(2000)]
    WorkClaims(hook, listing).publish(names, batch_size=7)
    taken: list[list[str]] = [[] for _ in range(6)]

    def work(slot: int) -> None:
        claimed = ClaimedNames(WorkClaims(hook, listing), f"task/{slot}")
        taken[slot] = list(claimed)
        claimed.finish()

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    everything = [name for names_of_one in taken for name in names_of_one]
    assert sorted(everything) == names  # each name once, none lost
    assert sum(1 for names_of_one in taken if names_of_one) > 1  # the work was shared
    cleanup = WorkClaims(hook, listing)
    assert cleanup.progress() == {"done": 286, "claimed": 0, "free": 0}
    cleanup._run(f"DELETE FROM {CLAIMS_TABLE} WHERE listing = ?", (listing,))
    cleanup.close()
