"""sources.py: what ``source`` names, how it is listed and read, and the form a trigger carries."""

from __future__ import annotations

import json
import os
import re
from collections import Counter

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.storage.sources import (
    Document,
    DocumentSource,
    conn_id_in_uris,
    describe_entries,
    document_name,
    in_shard,
    is_pattern,
    list_objects,
    object_version,
    parse_shard,
    read_document,
    source_entries,
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("file:///a.txt", ["file:///a.txt"]),
        ("  file:///a.txt  ", ["file:///a.txt"]),
        ("['file:///a.txt', 'file:///b.txt']", ["file:///a.txt", "file:///b.txt"]),  # a rendered XCom list
        (["file:///a.txt", " s3://b/k "], ["file:///a.txt", "s3://b/k"]),
        ("", []),
        ([], []),
    ],
)
def test_source_entries(source, expected):
    assert source_entries(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("[not a list", None),
        ("['a' 'b' +]", "looks like a list but is not one"),
        (["file:///a.txt", 3], "source[1] must be a URI string or ObjectStoragePath, got 3"),
        (7, "source must be a URI, an ObjectStoragePath or a list of those, got int"),
    ],
)
def test_bad_source_entries(source, message):
    if message is None:  # a string that merely starts with "[" is a URI (or glob) like any other
        assert source_entries(source) == [source]
        return
    with pytest.raises(DeepgramConfigurationError, match=re.escape(message)):
        source_entries(source)


def test_object_storage_paths_are_kept_and_named_without_their_connection():
    path = ObjectStoragePath("s3://aws_x@bucket/in/a.txt")
    assert source_entries(path) == [path]
    assert document_name(path) == "s3://bucket/in/a.txt"
    assert conn_id_in_uris([path, "s3://bucket/in/b.txt"]) == "aws_x"
    with pytest.raises(DeepgramConfigurationError, match="several storage connections"):
        conn_id_in_uris(["s3://one@b/a", "s3://two@b/a"])


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("file:///data/a.txt", "file:///data/a.txt"),
        ("file:///data//a.txt", "file:///data/a.txt"),
        ("file:///data/./a.txt", "file:///data/a.txt"),
        ("file:///data/sub/../a.txt", "file:///data/a.txt"),
        ("s3://bucket/a//b.txt", "s3://bucket/a//b.txt"),  # two keys on an object store: kept apart
    ],
)
def test_document_names_normalize_local_paths_only(uri, name):
    assert document_name(ObjectStoragePath(uri)) == name


@pytest.mark.parametrize(
    ("shard", "expected"),
    [("2/5", (2, 5)), ([0, 1], (0, 1)), ({"index": 3, "count": 4}, (3, 4)), (None, None), ("", None)],
)
def test_parse_shard(shard, expected):
    assert parse_shard(shard) == expected


@pytest.mark.parametrize("shard", ["5/5", "-1/3", "a/b", [1], {"index": 1}, 3.5, "1/0"])
def test_bad_shards_are_refused(shard):
    with pytest.raises(DeepgramConfigurationError, match="shard"):
        parse_shard(shard)


def test_shards_split_a_listing_exactly_and_evenly():
    names = [f"s3://bucket/in/{index:06d}.txt" for index in range(20_000)]
    owners = Counter()
    for name in names:
        holders = [index for index in range(8) if in_shard(name, (index, 8))]
        assert len(holders) == 1  # each object in exactly one shard
        owners[holders[0]] += 1
    assert min(owners.values()) > 2_300 and max(owners.values()) < 2_700  # 2,500 each, give or take
    assert all(in_shard(name, None) for name in names[:10])


def test_listing_globs_folders_and_literal_names(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.txt", "b.txt", "sub/c.txt", ".hidden.txt", "x[1].txt", "x1.txt"):
        (tmp_path / name).write_text("text")
    names, unmatched = list_objects([f"file://{tmp_path}/*.txt"])
    assert names == [f"file://{tmp_path}/{name}" for name in ("a.txt", "b.txt", "x1.txt", "x[1].txt")]
    names, _ = list_objects([f"file://{tmp_path}/"])
    assert f"file://{tmp_path}/sub/c.txt" in names and f"file://{tmp_path}/.hidden.txt" not in names
    # A name that exists is that object; a pattern naming nothing is a glob.
    assert list_objects([f"file://{tmp_path}/x[1].txt"])[0] == [f"file://{tmp_path}/x[1].txt"]
    assert list_objects([f"file://{tmp_path}/x[0-9].txt"])[0] == [f"file://{tmp_path}/x1.txt"]
    # Missing: kept for the operator (reading it says so), unmatched for the sensor.
    gone = f"file://{tmp_path}/gone.txt"
    assert list_objects([gone]) == ([gone], [])
    assert list_objects([gone], keep_missing=False) == ([], [gone])
    assert list_objects([f"file://{tmp_path}/none/*.txt"]) == ([], [f"file://{tmp_path}/none/*.txt"])
    assert is_pattern("s3://b/in/") and is_pattern("s3://b/*.txt") and not is_pattern("s3://b/a.txt")


def test_reading_refuses_special_files_instead_of_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(Exception, match="is a named pipe, not a regular file"):
        read_document(f"file://{tmp_path}/pipe")
    (tmp_path / "folder").mkdir()
    with pytest.raises(Exception, match="is a folder, not an object"):
        read_document(f"file://{tmp_path}/folder")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfHello")
    assert read_document(f"file://{tmp_path}/bom.txt") == "Hello"


def test_a_document_source_travels_as_plain_json_and_never_with_inline_text(tmp_path):
    source = DocumentSource(
        entries=(f"file://{tmp_path}/*.jsonl",),
        conn_id="c",
        shard=(1, 3),
        format="jsonl",
        text_field="body",
        id_field="id",
        given_as="'x'",
    )
    data = json.loads(json.dumps(source.to_json()))
    assert DocumentSource.from_json(data) == source
    sql = DocumentSource(sql="SELECT id, body FROM t", sql_conn_id="pg", text_field="body", id_field="id")
    assert DocumentSource.from_json(json.loads(json.dumps(sql.to_json()))) == sql
    assert sql.list_names() == (["sql://pg/id"], [])
    inline = DocumentSource.inline(["one", "two"], stored_prefix="inline://d/t/")
    assert inline.list_names() == (["text[0]", "text[1]"], [])
    assert list(inline.documents(["text[0]", "text[1]"])) == [
        Document("text[0]", "one", location="inline://d/t/text[0]"),
        Document("text[1]", "two", location="inline://d/t/text[1]"),
    ]
    with pytest.raises(Exception, match="never handed to the triggerer"):
        inline.to_json()


def test_descriptions_name_patterns_never_text():
    assert describe_entries([f"s3://b/{index}.txt" for index in range(7)]) == (
        "s3://b/0.txt, s3://b/1.txt, s3://b/2.txt, s3://b/3.txt, s3://b/4.txt, and 2 more"
    )
    assert DocumentSource.inline("secret words", "p").describe() == "1 inline text(s)"
    assert DocumentSource(entries=("s3://b/in/",), shard=(0, 4)).describe() == "source s3://b/in/ (shard 0/4)"


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        # gcsfs lists both; the emulator keeps the etag (an MD5) when the same bytes are written again.
        (
            {"generation": "1796596037998552088", "etag": "XUFAKrxLKna5cZ2REBfFkg==", "size": 5},
            "generation=1796596037998552088;size=5",
        ),
        ({"ETag": '"9b2cf535f27731c974343645a3985328"', "size": 7}, "etag=9b2cf535f27731c974343645a3985328;size=7"),
        ({"etag": "0x8DE3A1B2C3D4E5F", "size": 7}, "etag=0x8DE3A1B2C3D4E5F;size=7"),
        ({"size": 3, "mtime": 1765000000.5}, "size=3;mtime=1765000000.5"),
    ],
    ids=["gs-generation-before-etag", "s3-etag-unquoted", "azure-etag", "file-size-and-mtime"],
)
def test_object_version_is_the_store_s_own_version_field(info, expected):
    assert object_version(info) == expected
