"""results_path (issue 13): per-document JSONL parts on file:// and S3, retries, worker = deferrable, the manifest.

The parts live under ``<results_path>/dag_id=/run_id=/task_id=/map_index=/part-NNNNN.jsonl`` (-1 unmapped);
these tests read them back and check their lines, one per document of the run.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramError
from airflow_provider_dgsentiment.run.scoring import WRITE_BATCH_SIZE
from airflow_provider_dgsentiment.storage.object_history import HISTORY_FOLDER
from airflow_provider_dgsentiment.storage.result_files import ResultFiles
from tests.conftest import SQL_CONN_ID
from tests.integration.conftest import s3_bucket  # noqa: F401  (a fixture)
from tests.support.operator_runs import RUN_ID, make_operator, run, run_deferred, without_run_specifics

DAG_ID = "test_sentiment_operator"
SCORED_KEYS = {"source", "record_key", "location", "status", "fingerprint", "metadata", "results"}
#: Upper bound of the manifest's JSON, as SPEC section 12 states it.
MANIFEST_BOUND = 64 * 1024


# ---------------------------------------------------------------------- helpers


def task_folder(root: Path, task_id: str = "score", map_index: int = -1) -> Path:
    folder = root / f"dag_id={DAG_ID}" / f"run_id={RUN_ID}" / f"task_id={task_id}"
    return folder / f"map_index={map_index}"


def local_lines(uris: list[str]) -> list[dict]:
    lines = []
    for uri in uris:
        assert uri.startswith("file://")
        lines += [json.loads(line) for line in Path(uri[len("file://") :]).read_text().splitlines()]
    return lines


def by_source(lines: list[dict]) -> list[dict]:
    return sorted(lines, key=lambda line: line["source"])


def check_line_shapes(lines: list[dict]) -> dict[str, str]:
    """Assert each line's shape for its status; return ``{source: status}``."""
    statuses = {}
    for line in lines:
        if line["status"] == "scored":
            assert set(line) == SCORED_KEYS
            assert set(line["metadata"]) >= {"request_id", "created", "language", "sentiment_info"}
            assert set(line["results"]["sentiments"]) == {"segments", "average"}
            assert len(line["fingerprint"]) == 64
        elif line["status"] == "failed":
            assert set(line) == {"source", "record_key", "location", "status", "error"} and line["error"]
        else:
            assert line["status"] == "skipped"
            assert set(line) == {"source", "record_key", "location", "status", "reason"} and line["reason"]
        statuses[line["source"]] = line["status"]
    return statuses


@pytest.fixture
def mixed_inbox(inbox: Path) -> Path:
    """Three good texts, one blank (skipped), one not UTF-8 (fails)."""
    (inbox / "blank.txt").write_text("  \n")
    (inbox / "latin1.txt").write_bytes("Café crème, très bon".encode("latin-1"))
    return inbox


def expected_statuses(inbox: Path) -> dict[str, str]:
    names = {"a.txt": "scored", "b.txt": "scored", "c.txt": "scored", "blank.txt": "skipped", "latin1.txt": "failed"}
    return {f"file://{inbox}/{name}": status for name, status in names.items()}


# ---------------------------------------------------------------------- file://


def test_parts_hold_one_line_per_document_in_the_api_shape(deepgram_conn, mixed_inbox, tmp_path):
    results = tmp_path / "results"
    manifest = run(
        make_operator(
            source=f"file://{mixed_inbox}/*.txt",
            results_path=f"file://{results}/",
            on_error="skip",
            xcom_output="manifest",
        )
    )
    folder = task_folder(results)
    assert manifest["results_uri"] == [f"file://{folder}/part-00000.jsonl"]
    lines = local_lines(manifest["results_uri"])
    assert len(lines) == 5
    assert check_line_shapes(lines) == expected_statuses(mixed_inbox)
    failed = next(line for line in lines if line["status"] == "failed")
    assert "not valid UTF-8" in failed["error"]
    assert next(line for line in lines if line["status"] == "skipped")["reason"] == "empty document"
    scored = {line["source"]: line for line in lines if line["status"] == "scored"}
    assert scored[f"file://{mixed_inbox}/a.txt"]["results"]["sentiments"]["average"]["sentiment"] == "positive"
    assert (manifest["documents"], manifest["scored"], manifest["skipped"], manifest["failed"]) == (5, 3, 1, 1)


def test_failing_run_writes_its_parts_before_failing(deepgram_conn, mixed_inbox, tmp_path):
    results = tmp_path / "results"
    with pytest.raises(DeepgramError, match="1 of 5 document"):
        run(make_operator(source=f"file://{mixed_inbox}/*.txt", results_path=f"file://{results}"))
    lines = local_lines([f"file://{part}" for part in sorted(task_folder(results).glob("part-*.jsonl"))])
    assert check_line_shapes(lines) == expected_statuses(mixed_inbox)


def test_mapped_task_writes_under_its_map_index(deepgram_conn, inbox, tmp_path):
    results = tmp_path / "results"
    operator = make_operator(source=f"file://{inbox}/a.txt", results_path=f"file://{results}", xcom_output="manifest")
    manifest = run(operator, map_index=3)
    assert manifest["results_uri"] == [f"file://{task_folder(results, map_index=3)}/part-00000.jsonl"]


def test_record_file_gives_one_line_per_record(deepgram_conn, tmp_path):
    path = tmp_path / "export.jsonl.gz"
    rows = [{"id": "x", "text": "Great!"}, {"id": "y", "text": None}, {"id": "z", "text": ""}]
    path.write_bytes(gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode()))
    manifest = run(
        make_operator(
            source=f"file://{path}",
            id_field="id",
            results_path=f"file://{tmp_path}/results",
            on_error="skip",
            xcom_output="manifest",
        )
    )
    lines = local_lines(manifest["results_uri"])
    namespace = "test_sentiment_operator.score"
    assert check_line_shapes(lines) == {
        f"{namespace}#x": "scored",
        f"{namespace}#y": "failed",
        f"{namespace}#z": "skipped",
    }
    # Each line says which record it is and where it was read (the object and its data row).
    assert [(line["record_key"], line["location"]) for line in by_source(lines)] == [
        (key, f"file://{path}#{number}") for number, key in enumerate("xyz", start=1)
    ]


# ---------------------------------------------------------------------- retries keep the parts


def folder_lines(folder: Path) -> list[dict]:
    return local_lines([f"file://{part}" for part in sorted(folder.glob("part-*.jsonl"))])


def test_a_retry_keeps_earlier_parts_and_pays_only_for_what_they_lack(deepgram_conn, inbox, tmp_path, monkeypatch):
    monkeypatch.setattr(ResultFiles.__init__, "__kwdefaults__", {"lines_per_part": 2})
    for i in range(3):
        (inbox / f"more-{i}.txt").write_text(f"Extra document {i} is nice.")
    results = tmp_path / "results"
    kwargs = {"results_path": f"file://{results}", "xcom_output": "manifest"}
    first = run(make_operator(source=f"file://{inbox}/*.txt", **kwargs))
    folder = task_folder(results)
    assert [uri.rsplit("/", 1)[1] for uri in first["results_uri"]] == [
        "part-00000.jsonl",
        "part-00001.jsonl",
        "part-00002.jsonl",
    ]
    assert len(folder_lines(folder)) == 6

    # The same task of the same run again (a retry, or a clear), now over fewer documents, one of them changed:
    # the lines of the documents gone stay (they were paid for), each document once.
    (inbox / "more-0.txt").unlink()
    (inbox / "more-1.txt").unlink()
    (inbox / "b.txt").write_text("This changed text is terrible.")
    before = deepgram_conn.stats()["requests"]
    second = run(make_operator(source=f"file://{inbox}/*.txt", **kwargs))
    assert deepgram_conn.stats()["requests"] - before == 1  # b.txt only: the others are in the earlier parts
    assert (second["scored"], second["skipped"]) == (1, 3)
    lines = folder_lines(folder)
    sources = [line["source"] for line in lines]
    assert len(sources) == len(set(sources)) == 6
    assert set(sources) == {f"file://{inbox}/{name}" for name in ("a.txt", "b.txt", "c.txt")} | {
        f"file://{inbox}/more-{i}.txt" for i in range(3)
    }
    changed = next(line for line in lines if line["source"].endswith("/b.txt"))
    assert changed["results"]["sentiments"]["average"]["sentiment"] == "negative"
    # Parts are numbered on (never overwritten); the manifest lists every part of every try.
    assert second["results_uri"] == [f"file://{part}" for part in sorted(folder.glob("part-*.jsonl"))]
    assert all(uri.rsplit("/", 1)[1] >= "part-00000.jsonl" for uri in second["results_uri"])

    # Another task of the same run keeps its own folder: nothing of "score" is touched (skip_scored=False:
    # the load history beside the results would otherwise skip a.txt, read already into this results_path).
    other = run(make_operator(task_id="score_again", source=f"file://{inbox}/a.txt", skip_scored=False, **kwargs))
    assert other["results_uri"] == [f"file://{task_folder(results, 'score_again')}/part-00000.jsonl"]
    assert len(folder_lines(folder)) == 6


def test_failed_lines_and_cut_lines_of_an_earlier_try_are_scored_again(deepgram_conn, mixed_inbox, tmp_path):
    results = tmp_path / "results"
    kwargs = {"results_path": f"file://{results}", "xcom_output": "manifest", "on_error": "skip"}
    run(make_operator(source=f"file://{mixed_inbox}/*.txt", **kwargs))
    folder = task_folder(results)
    # A crash cut the last line of a part in half: the load history beside the results, written after
    # the part, never recorded that batch (this run's one batch).
    (part,) = folder.glob("part-*.jsonl")
    raw = part.read_bytes().splitlines(keepends=True)
    cut = json.loads(raw[-1])["source"] if json.loads(raw[-1])["status"] == "scored" else None
    part.write_bytes(b"".join(raw[:-1]) + raw[-1][:20])
    shutil.rmtree(results / HISTORY_FOLDER)
    (mixed_inbox / "latin1.txt").write_text("Fixed: now it reads well.")
    before = deepgram_conn.stats()["requests"]
    second = run(make_operator(source=f"file://{mixed_inbox}/*.txt", **kwargs))
    # The fixed document and the cut one are scored; the empty one is skipped again, for free.
    assert deepgram_conn.stats()["requests"] - before == 1 + (cut is not None)
    assert check_line_shapes(folder_lines(folder)) == {
        **expected_statuses(mixed_inbox),
        f"file://{mixed_inbox}/latin1.txt": "scored",
    }
    assert second["failed"] == 0


def test_already_scored_documents_are_lines_too(deepgram_conn, inbox, sqlite_db, tmp_path):
    kwargs = {
        "source": f"file://{inbox}/*.txt",
        "sql_conn_id": SQL_CONN_ID,
        "results_path": f"file://{tmp_path}/results",
        "xcom_output": "manifest",
    }
    first = run(make_operator(**kwargs))
    # The same task again (a retry, a clear): objects not read again, the earlier try's parts kept.
    unchanged = run(make_operator(**kwargs))
    assert (unchanged["skipped"], unchanged["unchanged"]) == (3, 3)
    assert unchanged["results_uri"] == first["results_uri"]
    for path in inbox.glob("*.txt"):  # re-delivered with the same content: a new version, read again
        path.write_text(path.read_text())
    retry = run(make_operator(**kwargs))
    assert retry["results_uri"] == first["results_uri"]  # the parts hold them: no new line
    assert {line["status"] for line in local_lines(retry["results_uri"])} == {"scored"}
    # Another task over the same objects, changed since: stored in the same tables, its own parts say so.
    for path in inbox.glob("*.txt"):
        path.write_text(path.read_text())
    again = run(make_operator(task_id="score_again", **kwargs))
    lines = local_lines(again["results_uri"])
    assert len(lines) == 3
    assert {line["status"] for line in lines} == {"skipped"}
    assert all(line["reason"].startswith("already scored") for line in lines)


# ---------------------------------------------------------------------- worker = deferrable


def test_worker_and_deferrable_write_the_same_lines(deepgram_conn, mixed_inbox, tmp_path):
    kwargs = {"source": f"file://{mixed_inbox}/*.txt", "on_error": "skip", "xcom_output": "manifest"}
    in_worker = run(make_operator(results_path=f"file://{tmp_path}/worker", **kwargs))
    deferred = run_deferred(results_path=f"file://{tmp_path}/deferred", **kwargs)
    worker_lines = by_source(local_lines(in_worker["results_uri"]))
    deferred_lines = by_source(local_lines(deferred["results_uri"]))
    assert len(deferred_lines) == 5
    assert without_run_specifics(deferred_lines) == without_run_specifics(worker_lines)
    assert deferred["results_uri"] == [f"file://{task_folder(tmp_path / 'deferred')}/part-00000.jsonl"]
    assert {key: value for key, value in deferred.items() if key != "results_uri"} == {
        key: value for key, value in in_worker.items() if key != "results_uri"
    }


# ---------------------------------------------------------------------- S3


def s3_lines(bucket, uris: list[str]) -> list[dict]:
    lines = []
    for uri in uris:
        prefix = f"s3://{bucket.name}/"
        assert uri.startswith(prefix), uri
        body = bucket.client.get_object(Bucket=bucket.name, Key=uri[len(prefix) :])["Body"].read()
        lines += [json.loads(line) for line in body.decode().splitlines()]
    return lines


def test_parts_on_s3_and_a_retry_keeps_them(deepgram_conn, mixed_inbox, s3_bucket, monkeypatch):  # noqa: F811
    monkeypatch.setattr(ResultFiles.__init__, "__kwdefaults__", {"lines_per_part": 2})
    kwargs = {
        "source": f"file://{mixed_inbox}/*.txt",
        "results_path": s3_bucket.uri("results/"),
        "on_error": "skip",
        "xcom_output": "manifest",
    }
    first = run(make_operator(**kwargs))
    prefix = f"s3://{s3_bucket.name}/results/dag_id={DAG_ID}/run_id={RUN_ID}/task_id=score/map_index=-1"
    assert first["results_uri"] == [f"{prefix}/part-0000{i}.jsonl" for i in range(3)]
    lines = s3_lines(s3_bucket, first["results_uri"])
    assert len(lines) == 5
    assert check_line_shapes(lines) == expected_statuses(mixed_inbox)

    (mixed_inbox / "latin1.txt").unlink()
    (mixed_inbox / "blank.txt").unlink()
    before = deepgram_conn.stats()["requests"]
    second = run(make_operator(**kwargs))
    assert deepgram_conn.stats()["requests"] == before  # the earlier parts hold every scored document
    # Parts holding lines of documents gone (or failed, or skipped) are rewritten or deleted; the others stay.
    assert all(uri.startswith(f"{prefix}/part-") for uri in second["results_uri"])
    listed = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix="results/dag_id=")["Contents"]
    keys = sorted(item["Key"] for item in listed)
    assert keys == [uri[len(f"s3://{s3_bucket.name}/") :] for uri in second["results_uri"]]
    lines = s3_lines(s3_bucket, second["results_uri"])
    assert sorted(line["source"] for line in lines) == [
        f"file://{mixed_inbox}/{n}" for n in ("a.txt", "b.txt", "c.txt")
    ]


def test_deferred_parts_on_s3_equal_the_worker_parts(deepgram_conn, mixed_inbox, s3_bucket):  # noqa: F811
    kwargs = {"source": f"file://{mixed_inbox}/*.txt", "on_error": "skip", "xcom_output": "manifest"}
    in_worker = run(make_operator(results_path=s3_bucket.uri("worker/"), **kwargs))
    deferred = run_deferred(results_path=s3_bucket.uri("deferred/"), **kwargs)
    assert deferred["results_uri"][0].startswith(f"s3://{s3_bucket.name}/deferred/dag_id={DAG_ID}/")
    assert without_run_specifics(by_source(s3_lines(s3_bucket, deferred["results_uri"]))) == without_run_specifics(
        by_source(s3_lines(s3_bucket, in_worker["results_uri"]))
    )


# ---------------------------------------------------------------------- the manifest stays bounded


def test_manifest_stays_under_64_kb_with_5000_documents_and_150_failures(mock_deepgram, tmp_path, monkeypatch):
    count, failing = 5000, 150
    bad = {i * 33 for i in range(failing)}
    assert len(bad) == failing
    path = tmp_path / "export.jsonl.gz"
    long_id = "k" * 400  # long names and long errors: the manifest clips them
    rows = [
        {"id": f"{long_id}-{i:05d}", "text": None if i in bad else ("" if i % 2 else f"Document {i} is good.")}
        for i in range(count)
    ]
    path.write_bytes(gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode(), compresslevel=1))
    manifest = run(
        make_operator(
            source=f"file://{path}",
            id_field="id",
            results_path=f"file://{tmp_path}/results",
            on_error="skip",
            xcom_output="manifest",
        )
    )
    size = len(json.dumps(manifest))
    print(f"manifest of {count} documents, {failing} failures: {size} bytes")
    assert size < MANIFEST_BOUND
    assert (manifest["documents"], manifest["failed"]) == (count, failing)
    assert manifest["scored"] == mock_deepgram.call_count == sum(1 for i in range(count) if i not in bad and not i % 2)
    assert len(manifest["failures"]) == 100
    assert manifest["failures"][0]["error"] == f"file://{path} line 1: field 'text' is null"
    assert manifest["failures"][-1]["error"] == f"file://{path} line {99 * 33 + 1}: field 'text' is null"  # in order
    assert all(len(failure["source"]) == 240 and failure["source"].endswith("...") for failure in manifest["failures"])
    # The parts: one per store (at most WRITE_BATCH_SIZE lines, fewer on a time flush), every document once.
    folder = task_folder(tmp_path / "results")
    assert manifest["results_uri"] == [
        f"file://{folder}/part-{i:05d}.jsonl" for i in range(len(manifest["results_uri"]))
    ]
    assert len(manifest["results_uri"]) >= count // WRITE_BATCH_SIZE
    lines = local_lines(manifest["results_uri"])
    assert len(lines) == len({line["source"] for line in lines}) == count
    assert sum(line["status"] == "failed" for line in lines) == failing
