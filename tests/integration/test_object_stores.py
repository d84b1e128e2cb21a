"""Every object store users run, through the connections they use: S3, GCS, Azure Blob (abfs:// and wasb://).

For each store (a real server on loopback, see tests/support/object_stores.py) the operator reads a
glob as ``source`` and writes ``results_path`` parts there, in the worker and deferred; the sensor
counts the objects not yet scored; a second run skips what is stored. Objects are put and read back
with each vendor's own client, never with the provider's storage code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
from tests.conftest import NEGATIVE, NEUTRAL, POSITIVE, SQL_CONN_ID
from tests.support.object_stores import STORES, ObjectStore, open_store
from tests.support.operator_runs import RUN_ID, make_operator, run, run_deferred, table_rows

pytestmark = pytest.mark.integration

DAG_ID = "test_sentiment_operator"
TEXTS = {"in/a.txt": POSITIVE, "in/b.txt": NEGATIVE, "in/c.txt": NEUTRAL}
#: How each store's listing versions an object in the load history (storage.sources.object_version).
VERSION_FIELDS = {"s3": "etag=", "gs": "generation=", "abfs": "etag=", "wasb": "etag="}


@pytest.fixture(params=STORES)
def store(request, monkeypatch) -> Iterator[ObjectStore]:
    """A fresh bucket on each store's server, reached by a connection named in the URIs."""
    opened = open_store(request.param, monkeypatch)
    try:
        yield opened
    finally:
        opened.remove()


def fill(store: ObjectStore) -> dict[str, str]:
    """Three texts under ``in/``, plus a hidden object and one outside the glob; return {name: text}."""
    names = {store.put(key, text): text for key, text in TEXTS.items()}
    store.put("in/.staging", "hidden objects are never documents")
    store.put("other/d.txt", "Outside the glob.")
    return names


def result_lines(store: ObjectStore, uris: list[str]) -> list[dict]:
    """The JSONL lines of the result parts, downloaded with the vendor client."""
    return [json.loads(line) for uri in uris for line in store.read(uri).splitlines()]


def test_source_and_results_path_in_the_worker_then_only_what_is_new(deepgram_conn, sqlite_db, store):
    names = fill(store)
    kwargs = {
        "source": store.uri("in/*.txt"),
        "sql_conn_id": SQL_CONN_ID,
        "results_path": store.uri("results/"),
        "xcom_output": "manifest",
    }
    before = deepgram_conn.stats()["requests"]
    first = run(make_operator(**kwargs))
    assert deepgram_conn.stats()["requests"] - before == 3
    assert (first["documents"], first["scored"], first["skipped"], first["failed"]) == (3, 3, 0, 0)
    assert [row["source"] for row in table_rows(sqlite_db, "deepgram_sentiment_averages")] == sorted(names)
    sentiments = {row["source"]: row["sentiment"] for row in table_rows(sqlite_db, "deepgram_sentiment_averages")}
    assert sentiments[store.name("in/a.txt")] == "positive"
    assert sentiments[store.name("in/b.txt")] == "negative"

    folder = f"results/dag_id={DAG_ID}/run_id={RUN_ID}/task_id=score/map_index=-1/"
    assert first["results_uri"] == [store.name(folder + "part-00000.jsonl")]
    assert store.keys("results/") == [folder + "part-00000.jsonl"]
    lines = result_lines(store, first["results_uri"])
    assert sorted(line["source"] for line in lines) == sorted(names)
    assert {line["status"] for line in lines} == {"scored"}

    added = store.put("in/e.txt", "A new arrival, and a lovely one.")
    before = deepgram_conn.stats()["requests"]
    second = run(make_operator(**kwargs))
    assert deepgram_conn.stats()["requests"] - before == 1
    # The three unchanged objects are skipped by their listed version, not read: no lines for them.
    assert (second["documents"], second["scored"], second["skipped"], second["unchanged"]) == (4, 1, 3, 3)
    assert [row["source"] for row in table_rows(sqlite_db, "deepgram_sentiment_averages")] == sorted([*names, added])
    # The same task folder: the earlier try's parts are kept and listed too, each document once.
    lines = result_lines(store, second["results_uri"])
    assert sorted(line["source"] for line in lines) == sorted([*names, added])
    assert {line["status"] for line in lines} == {"scored"}


def test_deferred_run_reads_and_writes_the_store_as_the_worker_does(deepgram_conn, sqlite_db, store):
    names = fill(store)
    kwargs = {"source": store.uri("in/"), "sql_conn_id": SQL_CONN_ID, "xcom_output": "manifest"}
    in_worker = run(make_operator(results_path=store.uri("worker/"), **kwargs))
    assert in_worker["scored"] == 3
    before = deepgram_conn.stats()["requests"]
    deferred = run_deferred(
        results_path=store.uri("deferred/"),
        averages_table="deferred_averages",
        segments_table="deferred_segments",
        **kwargs,
    )
    assert deepgram_conn.stats()["requests"] - before == 3
    assert (deferred["documents"], deferred["scored"], deferred["failed"]) == (3, 3, 0)
    assert [row["source"] for row in table_rows(sqlite_db, "deferred_averages")] == sorted(names)
    worker_lines = {
        line["source"]: line["results"]["sentiments"]["average"]
        for line in result_lines(store, in_worker["results_uri"])
    }
    deferred_lines = {
        line["source"]: line["results"]["sentiments"]["average"]
        for line in result_lines(store, deferred["results_uri"])
    }
    assert deferred_lines == worker_lines
    assert set(worker_lines) == set(names)


def test_sensor_counts_only_objects_not_yet_scored(deepgram_conn, sqlite_db, store):
    names = sorted(fill(store))
    sensor = DeepgramSentimentSensor(
        task_id="wait", source=store.uri("in/*.txt"), sql_conn_id=SQL_CONN_ID, min_objects=1
    )
    assert sensor.poke({}).xcom_value == names  # no averages table yet: every object counts

    run(make_operator(source=store.uri("in/a.txt"), sql_conn_id=SQL_CONN_ID))
    assert sensor.poke({}).xcom_value == names[1:]

    run(make_operator(source=store.uri("in/*.txt"), sql_conn_id=SQL_CONN_ID))
    assert sensor.poke({}).is_done is False  # everything is scored
    later = store.put("in/f.txt", "Later, and fine.")
    assert sensor.poke({}).xcom_value == [later]


def test_load_history_keeps_each_store_s_object_version_and_reads_a_rewritten_object_again(
    deepgram_conn, sqlite_db, store
):
    names = fill(store)
    kwargs = {"source": store.uri("in/*.txt"), "sql_conn_id": SQL_CONN_ID, "xcom_output": "summary"}
    run(make_operator(**kwargs))
    loads = {row["object"]: row["version"] for row in table_rows(sqlite_db, "deepgram_sentiment_loads", "object")}
    assert sorted(loads) == sorted(names)
    # The store's own version field: ETag on S3 and Azure, the generation on GCS.
    assert all(version.startswith(VERSION_FIELDS[store.scheme]) for version in loads.values()), loads

    rewritten = store.put("in/a.txt", NEGATIVE + " Rewritten.")
    before = deepgram_conn.stats()["requests"]
    second = run(make_operator(**kwargs))
    assert deepgram_conn.stats()["requests"] - before == 1
    assert (second["scored"], second["skipped"]) == (1, 2)  # the unchanged objects are skipped by their version
    later = {row["object"]: row["version"] for row in table_rows(sqlite_db, "deepgram_sentiment_loads", "object")}
    assert later[rewritten] != loads[rewritten]
    assert {name: version for name, version in later.items() if name != rewritten} == {
        name: version for name, version in loads.items() if name != rewritten
    }
    sentiments = {row["source"]: row["sentiment"] for row in table_rows(sqlite_db, "deepgram_sentiment_averages")}
    assert sentiments[rewritten] == "negative"
