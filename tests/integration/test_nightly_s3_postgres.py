"""The real thing: documents in an S3 bucket (moto's server), results in PostgreSQL, the emulator as Deepgram.

The nightly example DAG runs twice with ``dag.test()``: the first run scores the N objects
in the bucket, the second (after M more are uploaded) scores only the M new ones. The
sensor and the operator are also run on their own against S3 and PostgreSQL.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Bucket, PostgresTables
from tests.support.dags import load_dag, xcom_values

pytestmark = pytest.mark.integration

N_FIRST = 11
M_SECOND = 5
BATCH_SIZE = 4

OPENINGS = [
    "I absolutely love this service and the team was wonderful.",
    "The product broke after one day and support was useless and rude.",
    "The invoice number is 4471 and the order shipped on Monday.",
]
FOLLOW_UPS = [
    "Delivery was late and the box was crushed, which made me angry.",
    "Overall I am delighted and would happily recommend it to friends.",
    "The manual has twelve pages. The warranty lasts two years.",
]


def document_text(index: int) -> str:
    """A few sentences with changing sentiment, so documents have several segments."""
    sentences = [OPENINGS[index % 3], FOLLOW_UPS[(index // 3) % 3], f"Reference number {index}."]
    if index % 2:
        sentences.append(OPENINGS[(index + 1) % 3])
    return " ".join(sentences)


def upload(bucket: Bucket, first: int, count: int) -> dict[str, str]:
    """Upload documents ``first`` .. ``first + count - 1`` under ``in/``; return {name: text}."""
    uploaded = {}
    for index in range(first, first + count):
        text = document_text(index)
        uploaded[bucket.put(f"in/doc-{index:04d}.txt", text)] = text
    return uploaded


def check_rows(tables: PostgresTables, documents: dict[str, str]) -> dict[str, tuple]:
    """
    Check every document has exactly one averages row and a contiguous run of segment rows.

    :return: {source: (run_id, segment_count)} from the averages table.
    """
    averages = tables.hook.get_records(
        f"SELECT source, segment_count, run_id, fingerprint, sentiment FROM {tables.averages} ORDER BY source"
    )
    assert [row[0] for row in averages] == sorted(documents)
    assert tables.duplicate_sources() == 0
    segments: dict[str, list[tuple]] = {}
    for source, index, start, end in tables.hook.get_records(
        f"SELECT source, segment_index, start_word, end_word FROM {tables.segments} ORDER BY source, segment_index"
    ):
        segments.setdefault(source, []).append((index, start, end))
    assert sorted(segments) == sorted(documents)
    for source, segment_count, _run_id, fingerprint, sentiment in averages:
        rows = segments[source]
        assert len(rows) == segment_count >= 1, source
        assert [row[0] for row in rows] == list(range(segment_count)), source
        assert rows[0][1] == 0, source
        for previous, current in zip(rows, rows[1:]):
            assert current[1] == previous[2] + 1, f"{source}: segments are not contiguous"
        assert rows[-1][2] == len(documents[source].split()) - 1, f"{source}: segments do not cover the text"
        assert len(fingerprint) == 64 and sentiment in ("positive", "neutral", "negative")
    return {row[0]: (row[2], row[1]) for row in averages}


def test_nightly_dag_scores_s3_into_postgres_then_only_what_is_new(
    airflow_db, deepgram_conn, deepgram_pool, s3_bucket, postgres_tables, capsys
):
    dag = load_dag("deepgram_sentiment_nightly.py")
    # Should the sensor see nothing to score, fail within seconds instead of waiting for the night.
    dag.get_task("wait_for_texts").poke_interval = 1
    dag.get_task("wait_for_texts").timeout = 5
    dag.get_task("score_shard").retries = 0  # a failure fails the test now, not after the 5-minute retry delay
    conf = {
        "source": s3_bucket.uri("in/"),
        "sql_conn_id": postgres_tables.conn_id,
        "segments_table": postgres_tables.segments,
        "averages_table": postgres_tables.averages,
        "shard_size": BATCH_SIZE,
    }
    first_documents = upload(s3_bucket, 0, N_FIRST)
    s3_bucket.put("in/.staging-marker", "hidden objects never count")

    before = deepgram_conn.stats()["requests"]
    first = dag.test(run_conf=conf)
    assert first.state == "success"
    first_requests = deepgram_conn.stats()["requests"] - before
    assert first_requests == N_FIRST
    values = xcom_values(first)
    assert values["wait_for_texts"] == {
        "source": [conf["source"]],
        "matched": N_FIRST,
        "scored": 0,
        "to_score": N_FIRST,
        "records": 0,
        "unknown": N_FIRST,  # never read: the history knows nothing of them yet
        "listing": f"{dag.dag_id}/{first.run_id}",
    }
    report = values["report"]
    assert {key: report[key] for key in ("documents", "scored", "skipped", "failed")} == {
        "documents": N_FIRST,
        "scored": N_FIRST,
        "skipped": 0,
        "failed": 0,
    }
    assert report["input_tokens"] > 0
    first_rows = check_rows(postgres_tables, first_documents)
    assert {run_id for run_id, _ in first_rows.values()} == {first.run_id}
    first_counts = (postgres_tables.count(postgres_tables.averages), postgres_tables.count(postgres_tables.segments))
    assert first_counts[0] == N_FIRST

    second_documents = upload(s3_bucket, N_FIRST, M_SECOND)
    before = deepgram_conn.stats()["requests"]
    second = dag.test(run_conf=conf)
    assert second.state == "success"
    second_requests = deepgram_conn.stats()["requests"] - before
    assert second_requests == M_SECOND
    values = xcom_values(second)
    total = N_FIRST + M_SECOND
    # The sensor counts only the unscored and publishes them as the run's listing: the tasks
    # claim batches of it and never read what is stored.
    sensed = values["wait_for_texts"]
    assert sensed == {
        "source": [conf["source"]],
        "matched": total,
        "scored": N_FIRST,
        "to_score": M_SECOND,
        "records": 0,
        "unknown": M_SECOND,
        "listing": f"{dag.dag_id}/{second.run_id}",
    }
    report = values["report"]
    assert {key: report[key] for key in ("documents", "scored", "skipped", "failed")} == {
        "documents": M_SECOND,
        "scored": M_SECOND,
        "skipped": 0,
        "failed": 0,
    }
    all_rows = check_rows(postgres_tables, {**first_documents, **second_documents})
    assert {source: all_rows[source] for source in first_documents} == first_rows  # old rows untouched
    assert {all_rows[source][0] for source in second_documents} == {second.run_id}
    second_counts = (postgres_tables.count(postgres_tables.averages), postgres_tables.count(postgres_tables.segments))
    assert second_counts[0] == N_FIRST + M_SECOND

    with capsys.disabled():
        print(
            f"\n[nightly S3 -> PostgreSQL] run 1: {N_FIRST} objects, {first_requests} requests, "
            f"{first_counts[0]} averages rows, {first_counts[1]} segment rows; "
            f"run 2: +{M_SECOND} objects, {second_requests} requests, "
            f"{second_counts[0]} averages rows, {second_counts[1]} segment rows, "
            f"{postgres_tables.duplicate_sources()} duplicated sources"
        )


def test_operator_alone_reads_an_s3_glob_and_writes_postgres(deepgram_conn, s3_bucket, postgres_tables):
    from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator

    documents = {
        s3_bucket.put("batch/a.txt", "What a fantastic, friendly hotel. I loved every minute."),
        s3_bucket.put("batch/b.txt", "The room was filthy and the staff ignored us. Awful."),
        s3_bucket.put("batch/c.txt", "Check-in is at three. Breakfast is served until ten."),
    }
    s3_bucket.put("batch/notes.csv", "not,a,text,document")
    s3_bucket.put("elsewhere/d.txt", "Outside the glob.")
    texts = {
        f"s3://{s3_bucket.name}/batch/a.txt": "What a fantastic, friendly hotel. I loved every minute.",
        f"s3://{s3_bucket.name}/batch/b.txt": "The room was filthy and the staff ignored us. Awful.",
        f"s3://{s3_bucket.name}/batch/c.txt": "Check-in is at three. Breakfast is served until ten.",
    }
    assert documents == set(texts)
    operator = DeepgramSentimentOperator(
        task_id="score_s3",
        source=s3_bucket.uri("batch/*.txt"),
        sql_conn_id=postgres_tables.conn_id,
        segments_table=postgres_tables.segments,
        averages_table=postgres_tables.averages,
        xcom_output="summary",
    )
    before = deepgram_conn.stats()["requests"]
    summary = operator.execute({"run_id": "manual__s3_operator", "params": {}})
    assert deepgram_conn.stats()["requests"] - before == 3
    assert (summary["documents"], summary["scored"], summary["failed"]) == (3, 3, 0)
    assert [item["source"] for item in summary["items"]] == sorted(texts)
    check_rows(postgres_tables, texts)
    sentiments = dict(postgres_tables.hook.get_records(f"SELECT source, sentiment FROM {postgres_tables.averages}"))
    assert sentiments[f"s3://{s3_bucket.name}/batch/a.txt"] == "positive"
    assert sentiments[f"s3://{s3_bucket.name}/batch/b.txt"] == "negative"


def test_sensor_on_s3_counts_only_objects_missing_from_postgres(s3_bucket, postgres_tables):
    from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
    from tests.support.sensor_runs import store_loaded

    uploaded = sorted(upload(s3_bucket, 0, 3))
    sensor = DeepgramSentimentSensor(
        task_id="wait",
        path=f"s3://{s3_bucket.name}/in/*.txt",
        conn_id=s3_bucket.conn_id,
        sql_conn_id=postgres_tables.conn_id,
        averages_table=postgres_tables.averages,
        min_objects=2,
    )
    # No averages table yet in PostgreSQL: every object counts.
    assert sensor.poke({}).xcom_value == uploaded

    store_loaded(  # as the operator leaves them: rows, and complete reads in the load history
        postgres_tables.conn_id,
        uploaded[:2],
        postgres_tables.averages,
        segments_table=postgres_tables.segments,
        storage_conn_id=s3_bucket.conn_id,
    )
    assert sensor.poke({}).is_done is False  # one new object, two needed

    later = s3_bucket.put("in/doc-0100.txt", "A new arrival, and a lovely one.")
    assert sensor.poke({}).xcom_value == [uploaded[2], later]
