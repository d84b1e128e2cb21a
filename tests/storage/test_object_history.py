"""The load history beside the results (storage/object_history.py): merging, two writers, compaction.

Against real storage: file:// folders and the S3-compatible server (moto via scripts/services.sh),
through the same ObjectStoragePath the operator uses. The end-to-end runs are in
tests/operators/test_results_path_history.py.
"""

from __future__ import annotations

import json
import threading

import pytest

from airflow_provider_dgsentiment.client.results import SentimentResult
from airflow_provider_dgsentiment.storage.load_history import EMPTY, FAILED, Load, Unscored, plan_reads
from airflow_provider_dgsentiment.storage.object_history import (
    COMPACT_AFTER,
    HISTORY_FOLDER,
    JsonLinesLog,
    ObjectLoadHistory,
)
from airflow_provider_dgsentiment.storage.sources import results_root
from airflow_provider_dgsentiment.storage.warehouse import RunIdentity, ScoredDocument
from tests.integration.conftest import s3_bucket  # noqa: F401  (fixture)

RESPONSE = {
    "metadata": {"request_id": "r", "created": "2024-05-01T00:00:00Z", "language": "en", "sentiment_info": {}},
    "results": {
        "sentiments": {
            "segments": [
                {"text": "Good.", "start_word": 0, "end_word": 0, "sentiment": "positive", "sentiment_score": 0.8}
            ],
            "average": {"sentiment": "positive", "sentiment_score": 0.8},
        }
    },
}


def scored(source: str, fingerprint: str) -> ScoredDocument:
    return ScoredDocument(source, fingerprint, SentimentResult.from_response(RESPONSE))


def history(root: str, run_id: str = "night-1", task_id: str = "score") -> ObjectLoadHistory:
    opened = ObjectLoadHistory(results_root(root, None), run=RunIdentity("dag", task_id, run_id))
    opened.prepare()
    return opened


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path) -> str:
    """A results_path on file:// or on the S3-compatible server."""
    if request.param == "file":
        return f"file://{tmp_path}/results"
    bucket = request.getfixturevalue("s3_bucket")
    return bucket.uri("results/")


def test_what_one_run_records_the_next_run_reads_with_the_same_decisions(root):
    first = history(root)
    first.record(
        [Load("s3://in/a.jsonl", "jsonl text_field=body", "tickets", "etag-1", records=3, scored=1, failed=1, empty=1)],
        [
            Unscored("tickets#2", FAILED, "fp-bad", "field 'body' is an object, not text", "2"),
            Unscored("tickets#3", EMPTY, "fp-empty"),
        ],
        [scored("tickets#1", "fp-1")],
    )
    later = history(root, run_id="night-2")
    assert later.stored_documents(["tickets#1", "tickets#9"]) == {
        "tickets#1": later.stored_documents(["tickets#1"])["tickets#1"]
    }
    assert later.stored_documents(["tickets#1"])["tickets#1"].fingerprint == "fp-1"
    assert later.stored_documents(["tickets#1"])["tickets#1"].sentiment == "positive"
    unscored = later.unscored(["tickets#2", "tickets#3", "tickets#1"])
    assert {source: (row.status, row.fingerprint, row.run_id) for source, row in unscored.items()} == {
        "tickets#2": (FAILED, "fp-bad", "night-1"),
        "tickets#3": (EMPTY, "fp-empty", "night-1"),
    }
    # plan_reads, the one decision: unchanged at the same version and reading; read again when changed.
    readings = {"s3://in/a.jsonl": ("jsonl text_field=body", "tickets")}
    plan = plan_reads({"s3://in/a.jsonl": "etag-1"}, readings, later)
    assert (list(plan.to_read), list(plan.unchanged)) == ([], ["s3://in/a.jsonl"])
    plan = plan_reads({"s3://in/a.jsonl": "etag-2"}, readings, later)
    assert (plan.to_read, plan.known_records) == ({"s3://in/a.jsonl": "etag-2"}, 3)
    # The load had a failure: a retry of the run that recorded it reads it again (as in SQL mode).
    plan = plan_reads({"s3://in/a.jsonl": "etag-1"}, readings, history(root, run_id="night-1"))
    assert list(plan.to_read) == ["s3://in/a.jsonl"]

    # Scoring the failed one later removes its unscored record; a repeated failure keeps its first_seen.
    first_seen = later._unscored["tickets#3"]["first_seen"]
    later.record([], [Unscored("tickets#3", EMPTY, "fp-empty")], [scored("tickets#2", "fp-fixed")])
    again = history(root, run_id="night-3")
    assert set(again.unscored(["tickets#2", "tickets#3"])) == {"tickets#3"}
    assert again._unscored["tickets#3"]["first_seen"] == first_seen
    assert again.unscored(["tickets#3"])["tickets#3"].run_id == "night-1"
    assert again.stored_documents(["tickets#2"])["tickets#2"].fingerprint == "fp-fixed"


def test_two_writers_at_once_lose_nothing(root):
    """Eight task tries record 25 documents each at the same time: every record is there after."""
    writers = [history(root, run_id="night-1", task_id=f"score_{index}") for index in range(8)]
    barrier = threading.Barrier(len(writers))

    def write(index: int, writer: ObjectLoadHistory) -> None:
        barrier.wait()
        for batch in range(5):
            names = [f"doc-{index}-{batch}-{item}" for item in range(5)]
            load = Load(f"s3://in/{index}-{batch}.txt", "text", "", "v1", records=5, scored=5)
            writer.record([load], [], [scored(name, f"fp-{name}") for name in names])

    threads = [threading.Thread(target=write, args=(index, writer)) for index, writer in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = history(root, run_id="night-2")  # compacts: 8 x 5 objects per folder is more than COMPACT_AFTER
    names = [f"doc-{index}-{batch}-{item}" for index in range(8) for batch in range(5) for item in range(5)]
    assert len(merged.stored_documents(names)) == 200
    assert len(merged.loads([f"s3://in/{index}-{batch}.txt" for index in range(8) for batch in range(5)])) == 40
    folder = results_root(root, None) / HISTORY_FOLDER
    for name in ("loads", "documents"):
        assert len(JsonLinesLog(folder / name).objects()) == 1, f"{name} was not folded into one snapshot"
    assert len(history(root, run_id="night-3").stored_documents(names)) == 200  # the snapshot reads the same


def test_a_compaction_racing_a_writer_and_another_compaction_loses_nothing(tmp_path):
    root = f"file://{tmp_path}/results"
    writer = history(root)
    for index in range(COMPACT_AFTER + 1):
        writer.record([], [], [scored(f"old-{index}", "fp")])
    log = JsonLinesLog(results_root(root, None) / HISTORY_FOLDER / "documents")
    lines: list[dict] = []
    objects = log.read(lines.append)
    # Another task writes after the compactor listed; a second compactor folds the same objects at once.
    writer.record([], [], [scored("new", "fp-new")])
    other_lines: list[dict] = []
    other_objects = log.read(other_lines.append)
    log.compact(lines, objects)
    log.compact(other_lines, other_objects)  # some of its objects are gone already: nothing fails
    merged = history(root, run_id="night-2")
    assert len(merged.stored_documents([f"old-{index}" for index in range(COMPACT_AFTER + 1)])) == COMPACT_AFTER + 1
    assert merged.stored_documents(["new"])["new"].fingerprint == "fp-new"


def test_a_line_cut_by_a_crash_is_skipped_and_the_latest_record_wins(tmp_path):
    root = f"file://{tmp_path}/results"
    writer = history(root)
    writer.record([Load("file:///in/a.txt", "text", "", "v1", records=1, scored=1)], [], [scored("a", "fp-1")])
    writer.record([Load("file:///in/a.txt", "text", "", "v2", records=1, scored=1)], [], [scored("a", "fp-2")])
    folder = tmp_path / "results" / HISTORY_FOLDER / "documents"
    (folder / "log-99999999T999999Z-cut.ndjson").write_bytes(b'{"kind":"scored","source":"a","finger')
    later = history(root, run_id="night-2")
    assert later.stored_documents(["a"])["a"].fingerprint == "fp-2"
    assert [load.version for load in later.loads(["file:///in/a.txt"])["file:///in/a.txt"]] == ["v2"]


def test_a_long_lived_process_sees_what_other_processes_wrote_on_s3(s3_bucket):  # noqa: F811
    """A triggerer polls for hours in one process: s3fs's cached listing must not hide other tasks' objects."""
    root = s3_bucket.uri("results/")
    history(root).record([Load("s3://in/b.txt", "text", "", "v1", records=1, scored=1)], [], [])
    assert list(history(root).loads(["s3://in/b.txt"])) == ["s3://in/b.txt"]  # listed: s3fs caches the listing
    line = {"kind": "load", "object": "s3://in/a.txt", "reading": "text", "key_namespace": "", "version": "v1"}
    line |= {"records": 1, "scored": 1, "loaded_at": "2026-12-06T00:00:00+00:00", "at": "2026-12-06T00:00:00+00:00"}
    # Another process (here: boto3, not this process's filesystem) writes a history object.
    s3_bucket.client.put_object(
        Bucket=s3_bucket.name,
        Key=f"results/{HISTORY_FOLDER}/loads/log-20261206T000000Z-other.ndjson",
        Body=(json.dumps(line) + "\n").encode(),
    )
    assert [load.version for load in history(root).loads(["s3://in/a.txt"])["s3://in/a.txt"]] == ["v1"]
