"""Round three of the hostile review (issue 23): real exporters' files, a misbehaving API, storage mistakes.

Each case reproduced the failure on 0.2 first: a wrong 200 stored as scored, JSON exports paid
for whole, Spark markers read as documents, a missing storage connection replaced by ambient
credentials, misleading messages for UTF-16 / compressed files / a read-only results_path,
results folders that query engines could not read as one set of hive partitions.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import importlib.util
import io
import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
from tests.conftest import NEGATIVE, NEUTRAL, POSITIVE, SQL_CONN_ID
from tests.support.operator_runs import RUN_ID, make_operator, requests_during, run

AVERAGES = "deepgram_sentiment_averages"
REVIEWS = [("r-1", POSITIVE), ("r-2", NEGATIVE), ("r-3", NEUTRAL)]
#: Records keyed by id_field are named ``<key_namespace>#<key>`` (default ``<dag_id>.<task_id>``).
NAMESPACE = "test_sentiment_operator.score"


def stored_sources(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute(f"SELECT source FROM {AVERAGES} ORDER BY source")]


# ---------------------------------------------------------------------- 1: a wrong 200 is not stored as scored


def test_an_answer_without_segments_is_a_failed_document_not_a_stored_score(mock_deepgram, sqlite_db, tmp_path):
    def answer(text):
        if text == NEGATIVE:  # 200, well-formed, but no segments for a text of 12 words
            body = {
                "metadata": {"request_id": "req-empty", "sentiment_info": {"input_tokens": 12, "output_tokens": 0}},
                "results": {
                    "sentiments": {"segments": [], "average": {"sentiment": "neutral", "sentiment_score": 0.0}}
                },
            }
            return 200, body
        return None

    mock_deepgram.answer = answer
    with pytest.raises(DeepgramError) as raised:
        run(make_operator(text=[POSITIVE, NEGATIVE, NEUTRAL], sql_conn_id=SQL_CONN_ID))
    message = str(raised.value)
    assert "1 of 3 document(s) failed" in message
    assert "the answer has no segments for a text of 11 words" in message and "req-empty" in message
    # 0.2 stored it as scored with segment_count=0; now only the two good answers are stored.
    assert len(stored_sources(sqlite_db)) == 2 and all(not s.endswith("[1]") for s in stored_sources(sqlite_db))


# ---------------------------------------------------------------------- 3: JSON exports are records


def test_bigquery_export_named_json_is_read_as_records(deepgram_conn, sqlite_db, tmp_path):
    # EXPORT DATA (format=JSON) writes newline-delimited JSON in files named *.json.
    folder = tmp_path / "bq"
    folder.mkdir()
    lines = [json.dumps({"review_id": key, "body": text, "stars": 3}) for key, text in REVIEWS]
    (folder / "000000000000.json").write_text("\n".join(lines) + "\n")
    result, sent = requests_during(
        deepgram_conn,
        lambda: run(
            make_operator(source=f"file://{folder}/", text_field="body", id_field="review_id", sql_conn_id=SQL_CONN_ID)
        ),
    )
    assert not isinstance(result, Exception), result
    assert sent == 3  # 0.2 sent the whole file as one document (JSON syntax and all)
    assert stored_sources(sqlite_db) == [f"{NAMESPACE}#{key}" for key, _ in REVIEWS]


def test_mongoexport_json_array_is_streamed_as_records(deepgram_conn, sqlite_db, tmp_path, monkeypatch):
    from airflow_provider_dgsentiment.storage import json_stream

    monkeypatch.setattr(json_stream, "READ_CHARS", 64)  # elements cut across reads, as in a big file
    documents = [
        {"_id": {"$oid": f"65a1{i:020x}"}, "sku": f"sku-{i}", "review": text} for i, (_, text) in enumerate(REVIEWS)
    ]
    path = tmp_path / "reviews.json"
    path.write_text(json.dumps(documents, indent=2))  # mongoexport --jsonArray --pretty
    result, sent = requests_during(
        deepgram_conn,
        lambda: run(
            make_operator(source=f"file://{path}", text_field="review", id_field="sku", sql_conn_id=SQL_CONN_ID)
        ),
    )
    assert not isinstance(result, Exception), result
    assert sent == 3
    assert stored_sources(sqlite_db) == [f"{NAMESPACE}#sku-{i}" for i in range(3)]


def test_a_text_object_holding_json_fails_unsent_when_a_field_is_named(deepgram_conn, tmp_path, log_text):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "reviews.txt").write_text(json.dumps([{"body": POSITIVE}]))  # records, but named .txt
    (folder / "more.dat").write_text(" " + json.dumps({"body": NEGATIVE}))
    (folder / "note.txt").write_text(NEUTRAL)  # a text document beside them is still scored whole
    (folder / "a.jsonl").write_text(json.dumps({"body": NEUTRAL}) + "\n")
    error, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{folder}/", text_field="body"))
    )
    assert isinstance(error, DeepgramError), error
    assert sent == 2  # 0.2 sent each JSON file whole, JSON syntax and all, and ignored text_field
    message = str(error)
    assert message.startswith("2 of 4 document(s) failed")
    assert f"file://{folder}/more.dat: holds JSON but is read as one plain-text document" in message
    assert f"file://{folder}/reviews.txt: holds JSON" in message and "give format='json'" in message
    assert "3 object(s) of source" in log_text() and "are read whole as plain text" in log_text()


# ---------------------------------------------------------------------- 7: Spark / Hadoop markers


def test_spark_output_folder_is_read_without_its_markers(deepgram_conn, sqlite_db, tmp_path, log_text):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "spark-out"
    for day, (key, text) in zip(("2024-05-01", "2024-05-02", "2024-05-03"), REVIEWS):
        part = root / f"dt={day}" / "part-00000-7c1e-c000.snappy.parquet"
        part.parent.mkdir(parents=True)
        pq.write_table(pa.table({"id": [key], "text": [text]}), part, compression="snappy")
        (part.parent / f".{part.name}.crc").write_bytes(b"crc\x00\x01")
    (root / "_SUCCESS").write_bytes(b"")  # the classic committer: empty
    (root / "_committed_4432").write_text('{"added": ["part-00000-7c1e-c000.snappy.parquet"]}')
    (root / "_started_4432").write_bytes(b"")
    result, sent = requests_during(
        deepgram_conn,
        lambda: run(
            make_operator(
                source=f"file://{root}/",
                format="parquet",
                id_field="id",
                sql_conn_id=SQL_CONN_ID,
                xcom_output="summary",
            )
        ),
    )
    # 0.2: "Parquet file size is 0 bytes" for _SUCCESS failed the whole run.
    assert not isinstance(result, Exception), result
    assert (result["scored"], result["failed"], sent) == (3, 0, 3)
    assert "Skipped 6 name(s) under" in log_text() and "_SUCCESS" in log_text()


# ---------------------------------------------------------------------- 9: clear messages


def test_utf16_csv_is_read(deepgram_conn, sqlite_db, tmp_path):
    # pandas' to_csv(encoding="utf-16") and Excel's Unicode export: UTF-16 with a byte-order mark.
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "text"])
    writer.writerows([(key, text + " Größe über alles.") for key, text in REVIEWS])
    path = tmp_path / "export.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + out.getvalue().encode("utf-16-le"))
    result, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{path}", id_field="id", sql_conn_id=SQL_CONN_ID))
    )
    assert not isinstance(result, Exception), (
        result
    )  # 0.2: "id_field 'id' is not a column; the columns are '\xff\xfei\x00..."
    assert sent == 3 and stored_sources(sqlite_db) == [f"{NAMESPACE}#{key}" for key, _ in REVIEWS]


def test_bz2_jsonl_is_read_and_zst_is_refused_naming_the_compression(deepgram_conn, sqlite_db, tmp_path):
    lines = "".join(json.dumps({"id": key, "text": text}) + "\n" for key, text in REVIEWS).encode()
    bzipped = tmp_path / "a.jsonl.bz2"
    bzipped.write_bytes(bz2.compress(lines))
    result, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{bzipped}", id_field="id", sql_conn_id=SQL_CONN_ID))
    )
    assert not isinstance(result, Exception), result
    assert sent == 3 and stored_sources(sqlite_db) == [f"{NAMESPACE}#{key}" for key, _ in REVIEWS]

    if importlib.util.find_spec("zstandard") is not None:
        return  # installed: .zst is read like .bz2 (not in the test extra; the refusal is what users see)
    zstd = tmp_path / "b.jsonl.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd\x00\x58\x00\x00")  # a zstd frame header
    error, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{zstd}", id_field="id", sql_conn_id=SQL_CONN_ID))
    )
    assert isinstance(error, DeepgramError) and sent == 0
    # The file is one failed document, named by the object (the rest of a run goes on).
    assert f"1 of 1 document(s) failed:\n  file://{zstd}: is zstd-compressed (.zst), a compression" in str(error)
    assert "not valid UTF-8" not in str(error)  # 0.2's message


def test_read_only_results_path_names_the_path(deepgram_conn, tmp_path):
    # /sys is read-only even for root: creating a folder there is refused with EPERM.
    error, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(text=POSITIVE, results_path="file:///sys/dgs-results/"))
    )
    assert isinstance(error, DeepgramConfigurationError), error  # 0.2: a raw PermissionError
    assert sent == 0
    assert str(error).startswith("results_path cannot be written: could not create file:///sys/dgs-results/")
    assert "Operation not permitted" in str(error)


# ---------------------------------------------------------------------- 4: storage connections must exist


def test_a_storage_connection_named_in_a_uri_must_exist(deepgram_conn, tmp_path, log_text):
    error, sent = requests_during(deepgram_conn, lambda: run(make_operator(source="s3://aws_prdo@reviews/in/")))
    assert isinstance(error, DeepgramConfigurationError), error
    assert sent == 0
    assert str(error) == (
        "The storage connection 'aws_prdo' (for source s3://aws_prdo@reviews/in/) does not exist: create it or "
        "correct its name; the worker's own credentials are never used in its place"
    )
    assert "switching to empty" not in log_text()


def test_source_and_results_conn_ids_must_exist(deepgram_conn, tmp_path):
    (tmp_path / "a.txt").write_text(POSITIVE)
    error, _ = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{tmp_path}/a.txt", source_conn_id="no_such_fs"))
    )
    assert isinstance(error, DeepgramConfigurationError) and "'no_such_fs'" in str(error)
    error, sent = requests_during(
        deepgram_conn,
        lambda: run(make_operator(text=POSITIVE, results_path=f"file://{tmp_path}/out/", results_conn_id="aws_prdo")),
    )
    assert isinstance(error, DeepgramConfigurationError) and sent == 0
    assert "'aws_prdo' (for results_path file://" in str(error)


def test_the_sensor_fails_naming_a_missing_storage_connection():
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id="test_round_three_sensor", schedule=None):
        sensor = DeepgramSentimentSensor(task_id="wait", source="s3://aws_prdo@reviews/in/*.jsonl")
    with pytest.raises(DeepgramConfigurationError, match=r"The storage connection 'aws_prdo' \(for source s3://"):
        sensor.poke({"params": {}, "run_id": "manual__test"})


# ---------------------------------------------------------------------- 10: results read as hive partitions


def test_mapped_and_unmapped_results_read_as_one_set_of_hive_partitions(deepgram_conn, tmp_path):
    duckdb = pytest.importorskip("duckdb")  # in the test extra; skipped only where it is not installed
    results = tmp_path / "results"
    run(make_operator(task_id="single", text=[POSITIVE], results_path=f"file://{results}/"))
    for index, text in enumerate((NEGATIVE, NEUTRAL)):
        run(make_operator(task_id="mapped", text=[text], results_path=f"file://{results}/"), map_index=index)
    rows = duckdb.sql(
        f"SELECT task_id, map_index, status, count(*) FROM read_json_auto('{results}/**/*.jsonl', "
        "hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    # 0.2: "Hive partition mismatch" (map_index= only in the mapped task's folders).
    assert rows == [("mapped", 0, "scored", 1), ("mapped", 1, "scored", 1), ("single", -1, "scored", 1)]
    # The load history beside the results (no sql_conn_id) is JSON lines too, but not "*.jsonl": not in the query.
    assert list((results / "_load_history").glob("*/*.ndjson"))
    assert (
        results / "dag_id=test_sentiment_operator" / f"run_id={RUN_ID}" / "task_id=single" / "map_index=-1"
    ).is_dir()
