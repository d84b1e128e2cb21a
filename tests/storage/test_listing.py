"""Listing folders and globs: Spark/Hadoop markers and hidden names skipped and said so, symlink loops ended."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from airflow_provider_dgsentiment.storage.sources import list_objects
from tests.integration.conftest import s3_bucket  # noqa: F401  (a fixture)


def _spark_folder(root):
    """What Spark's writer leaves: parts in partition folders, checksums, markers, a _temporary folder."""
    for name in (
        "date=2024-05-01/part-00000-1a2b.snappy.parquet",
        "date=2024-05-01/.part-00000-1a2b.snappy.parquet.crc",
        "date=2024-05-02/part-00000-3c4d.snappy.parquet",
        "_SUCCESS",
        "._SUCCESS.crc",
        "_committed_8827385",
        "_started_8827385",
        "_temporary/0/_temporary/attempt_0/part-00001.snappy.parquet",
    ):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if name.startswith("_") else b"PAR1")
    return root


@pytest.mark.parametrize("pattern", ["{root}/", "{root}/**/*.parquet", "{root}/**", "{root}/*/*"])
def test_markers_and_hidden_names_are_skipped_in_folders_and_globs_and_said(tmp_path, caplog, pattern):
    root = _spark_folder(tmp_path / "export")
    log = logging.getLogger("test.listing")
    with caplog.at_level(logging.INFO, logger="test.listing"):
        names, unmatched = list_objects([f"file://{pattern.format(root=root)}"], log=log)
    assert names == [
        f"file://{root}/date=2024-05-01/part-00000-1a2b.snappy.parquet",
        f"file://{root}/date=2024-05-02/part-00000-3c4d.snappy.parquet",
    ]
    assert unmatched == []
    message = caplog.text
    # Markers a glob would not match anyway are not counted; a skipped folder always is.
    assert {"{root}/": "_SUCCESS", "{root}/**": "_SUCCESS", "{root}/*/*": "_temporary"}.get(
        pattern, "_temporary"
    ) in message
    assert "that start with _ or ." in message and "Spark, Hive, Athena and DuckDB skip them too" in message


def test_an_explicitly_named_marker_is_still_read(tmp_path):
    root = _spark_folder(tmp_path / "export")
    assert list_objects([f"file://{root}/_SUCCESS"])[0] == [f"file://{root}/_SUCCESS"]
    # A glob whose last part asks for such names matches them; the root of a listing may hold "_" itself.
    assert list_objects([f"file://{root}/_c*"])[0] == [f"file://{root}/_committed_8827385"]
    inner = tmp_path / "_exports"
    inner.mkdir()
    (inner / "a.txt").write_text("text")
    assert list_objects([f"file://{inner}/"])[0] == [f"file://{inner}/a.txt"]


@pytest.mark.parametrize("pattern", ["{root}/", "{root}/**/*.txt", "{root}/**", "{root}/a/*/*.txt"])
def test_a_symlink_loop_ends_listing_with_each_real_file_once(tmp_path, pattern):
    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    (root / "top.txt").write_text("top")
    (root / "a" / "x.txt").write_text("x")
    (root / "a" / "b" / "y.txt").write_text("y")
    os.symlink("..", root / "a" / "loop")  # a/loop -> the root again
    os.symlink("../top.txt", root / "a" / "b" / "link.txt")  # a symlink to a file is a document
    found: list = []
    worker = threading.Thread(target=lambda: found.append(list_objects([f"file://{pattern.format(root=root)}"])))
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "listing did not end"  # 0.2's recursive glob followed the loop for ever
    names, _ = found[0]
    expected = [f"file://{root}/a/b/link.txt", f"file://{root}/a/b/y.txt", f"file://{root}/a/x.txt"]
    if pattern.startswith("{root}/a/"):
        expected = expected[:2]
    elif not pattern.endswith(".txt") or "**" in pattern:
        expected.append(f"file://{root}/top.txt")
    assert names == sorted(expected)


def test_markers_are_skipped_on_s3_too(s3_bucket, caplog):  # noqa: F811
    for key in (
        "export/dt=1/part-0.jsonl",
        "export/dt=1/.part-0.jsonl.crc",
        "export/dt=2/part-0.jsonl",
        "export/_SUCCESS",
        "export/_temporary/0/part-9.jsonl",
        "export/_exports_note.txt",
    ):
        s3_bucket.put(key, '{"text": "fine"}\n')
    log = logging.getLogger("test.listing.s3")
    expected = [f"s3://{s3_bucket.name}/export/dt=1/part-0.jsonl", f"s3://{s3_bucket.name}/export/dt=2/part-0.jsonl"]
    with caplog.at_level(logging.INFO, logger="test.listing.s3"):
        for pattern in ("export/", "export/**/*.jsonl", "export/dt=*/*"):
            assert list_objects([s3_bucket.uri(pattern)], log=log)[0] == expected, pattern
    assert "that start with _ or ." in caplog.text and "_SUCCESS" in caplog.text
    # Named explicitly, or asked for by the last part of a glob, a marker is read.
    assert list_objects([s3_bucket.uri("export/_SUCCESS")])[0] == [f"s3://{s3_bucket.name}/export/_SUCCESS"]
    assert list_objects([s3_bucket.uri("export/_S*")])[0] == [f"s3://{s3_bucket.name}/export/_SUCCESS"]
