"""JSONL result parts under results_path: one line per document, parts of bounded size."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_dgsentiment.storage.result_files import ResultFiles, failed_line, scored_line, skipped_line


def read_lines(uri: str) -> list[dict]:
    with open(uri.removeprefix("file://"), encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_lines_roll_over_into_numbered_parts(tmp_path):
    files = ResultFiles.for_task(str(tmp_path), dag_id="d", run_id="r", task_id="t")
    files.lines_per_part = 2
    files.begin()
    files.write([skipped_line(f"doc-{index}.txt", "empty") for index in range(5)])
    uris = files.close()

    assert [uri.rsplit("/", 1)[1] for uri in uris] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert [len(read_lines(uri)) for uri in uris] == [2, 2, 1]
    assert [line["source"] for uri in uris for line in read_lines(uri)] == [f"doc-{i}.txt" for i in range(5)]


def test_each_task_writes_under_its_own_partition_folders(tmp_path):
    files = ResultFiles.for_task(f"file://{tmp_path}/", dag_id="nightly", run_id="scheduled/2026", task_id="score")
    files.begin()
    files.write([failed_line("a.txt", "boom")])
    (uri,) = files.close()
    assert "/dag_id=nightly/run_id=scheduled_2026/task_id=score/" in uri  # a '/' in a value never adds a level


def test_line_shapes_carry_the_source_and_status():
    result = {"metadata": {"request_id": "r"}, "results": {"sentiments": {"segments": [], "average": {}}}}
    where = {"record_key": None, "location": None}  # whole-object documents: no record key
    assert scored_line("a.txt", "f" * 64, result) == {
        "source": "a.txt",
        "status": "scored",
        "fingerprint": "f" * 64,
        **where,
        **result,
    }
    assert failed_line("b.txt", "boom") == {"source": "b.txt", "status": "failed", "error": "boom", **where}
    assert skipped_line("c.txt", "empty") == {"source": "c.txt", "status": "skipped", "reason": "empty", **where}


def test_text_is_written_as_utf8_not_escaped(tmp_path):
    files = ResultFiles.for_task(str(tmp_path), dag_id="d", run_id="r", task_id="t")
    files.begin()
    files.write([failed_line("über.txt", "kaputt: ä")])
    (uri,) = files.close()
    raw = Path(uri.removeprefix("file://")).read_bytes()
    assert "über.txt".encode() in raw and b"\\u00fc" not in raw
