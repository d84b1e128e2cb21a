"""Record readers: every format on local files and on the S3-compatible server, SQL on SQLite and PostgreSQL.

The S3 and PostgreSQL cases use the servers of ``scripts/services.sh`` (skipped outside CI when
they are not running, failed in CI). The streaming test compares the peak RSS of two child
processes reading a 2 MB and a 200 MB JSONL.gz.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.storage import records
from airflow_provider_dgsentiment.storage.records import (
    FORMATS,
    Record,
    RecordFileError,
    _KeyIndex,
    detect_format,
    iter_file_records,
    iter_sql_records,
)
from tests.conftest import REPO_ROOT, require_service
from tests.integration.conftest import POSTGRES_CONN_ID, s3_bucket  # noqa: F401  (s3_bucket is a fixture)

SAMPLES = [
    {"id": "a-1", "text": "I love this product."},
    {"id": "b-2", "text": 'Line one,\nline two with "quotes"\tand a tab.'},
    {"id": "c-3", "text": "Ça coûte cher — 10 €."},
]


# ---------------------------------------------------------------------- sample files


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def delimited_bytes(rows: list[dict], delimiter: str, bom: bool = True) -> bytes:
    import csv

    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["id", "text", "extra"])
    for row in rows:
        writer.writerow([row["id"], row["text"], "x"])
    return ("\ufeff" if bom else "").encode("utf-8") + out.getvalue().encode("utf-8")


def parquet_bytes(columns: dict[str, list], row_group_size: int = 2) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, row_group_size=row_group_size)
    return buffer.getvalue()


def sample_bytes(fmt: str) -> bytes:
    if fmt == "jsonl":
        return jsonl_bytes(SAMPLES)
    if fmt == "csv":
        return delimited_bytes(SAMPLES, ",")
    if fmt == "tsv":
        return delimited_bytes(SAMPLES, "\t")
    return parquet_bytes({"id": [row["id"] for row in SAMPLES], "text": [row["text"] for row in SAMPLES]})


def read(path: Path, fmt: str | None = None, **kwargs) -> list[Record]:
    return list(iter_file_records(path, fmt or detect_format(path.name), **kwargs))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


# ---------------------------------------------------------------------- detect_format


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("s3://b/x.jsonl", "auto", "jsonl"),
        ("s3://b/x.NDJSON.GZ", "auto", "jsonl"),
        ("x.csv", "auto", "csv"),
        ("x.csv.gz", "auto", "csv"),
        ("x.TSV", "auto", "tsv"),
        ("x.parquet.gz", "auto", "parquet"),
        ("x.txt", "auto", "text"),
        ("x.gz", "auto", "text"),
        ("jsonl", "auto", "text"),
        ("x.json", "auto", "json"),  # 0.2 scored a JSON export whole
        ("x.tsv", "csv", "tsv"),  # an explicit "csv" keeps the tab of a .tsv
        ("x.tsv.gz", "csv", "tsv"),
        ("x.txt", "csv", "csv"),
        ("x.csv", "jsonl", "jsonl"),
        ("x.jsonl", "text", "text"),
        ("x.dat", "parquet", "parquet"),
    ],
)
def test_detect_format(name, fmt, expected):
    assert detect_format(name, fmt) == expected


def test_detect_format_names_the_allowed_values():
    with pytest.raises(DeepgramConfigurationError) as caught:
        detect_format("x.csv", "xlsx")
    assert str(caught.value) == "format 'xlsx' is not one of 'auto', 'text', 'jsonl', 'json', 'csv', 'parquet'"
    assert FORMATS == ("auto", "text", "jsonl", "json", "csv", "parquet")


def test_bad_arguments_fail_at_call_time(tmp_path):
    path = write(tmp_path, "x.jsonl", b"")
    with pytest.raises(DeepgramConfigurationError, match="record format 'text' is not one of"):
        iter_file_records(path, "text")
    with pytest.raises(DeepgramConfigurationError, match="text_field must be a non-empty string"):
        iter_file_records(path, "jsonl", text_field="")
    with pytest.raises(DeepgramConfigurationError, match="batch_size must be a positive integer"):
        iter_sql_records(object(), "SELECT 1", text_field="t", batch_size=0)


# ---------------------------------------------------------------------- every format, local and S3

CASES = [
    ("reviews.jsonl", "jsonl"),
    ("reviews.ndjson", "jsonl"),
    ("reviews.csv", "csv"),
    ("reviews.tsv", "tsv"),
    ("reviews.parquet", "parquet"),
]
NAMES = [name + suffix for name, _ in CASES for suffix in ("", ".gz")]


def expected_records(fmt: str, id_field: str | None) -> list[Record]:
    expected = []
    line = 2  # CSV: the header is line 1; SAMPLES[1] spans two lines
    for number, row in enumerate(SAMPLES, start=1):
        if fmt == "jsonl":
            location = f"line {number}"
        elif fmt in ("csv", "tsv"):
            location = f"row {number} (line {line})"
            line += row["text"].count("\n") + 1
        else:
            location = f"row {number}"
        expected.append(Record(row["id"] if id_field else str(number), location, row["text"]))
    return expected


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    """Put bytes somewhere ``ObjectStoragePath`` reads: a local ``file://`` path or the S3-compatible server."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if request.param == "file":

        def put(name: str, data: bytes):
            path = tmp_path / name
            path.write_bytes(data)
            return ObjectStoragePath(f"file://{path}"), f"file://{path}"

    else:
        bucket = request.getfixturevalue("s3_bucket")

        def put(name: str, data: bytes):
            bucket.client.put_object(Bucket=bucket.name, Key=f"in/{name}", Body=data)
            return ObjectStoragePath(bucket.uri(f"in/{name}")), f"s3://{bucket.name}/in/{name}"

    return put


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("id_field", [None, "id"])
def test_each_format_reads_the_same_records(store, name, id_field):
    fmt = detect_format(name)
    data = sample_bytes(fmt)
    path, uri = store(name, gzip.compress(data) if name.endswith(".gz") else data)
    got = list(iter_file_records(path, fmt, id_field=id_field, name=uri))
    assert got == expected_records(fmt, id_field)


def test_csv_bom_is_dropped_and_quoted_newlines_kept(tmp_path):
    path = write(tmp_path, "x.csv", delimited_bytes(SAMPLES, ","))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    got = read(path, id_field="id")  # "id" is the first column: found only when the BOM is dropped
    assert got[1].text == SAMPLES[1]["text"]
    assert [record.location for record in got] == ["row 1 (line 2)", "row 2 (line 3)", "row 3 (line 5)"]


def test_jsonl_bom_is_dropped(tmp_path):
    path = write(tmp_path, "x.jsonl", b"\xef\xbb\xbf" + jsonl_bytes(SAMPLES[:1]))
    assert read(path) == [Record("1", "line 1", SAMPLES[0]["text"])]


# ---------------------------------------------------------------------- bad records

JSONL_BAD = (
    b'{"id": 1, "text": "good"}\n'
    b"\n"
    b'{"id": 2}\n'
    b'{"id": 3, "text": null}\n'
    b'{"id": 4, "text": 42}\n'
    b'{"id": 5, "text": ""}\n'
    b'{"id": 6, "text": "   "}\n'
    b'{"id": 7 "text": "x"}\n'
    b"[1, 2]\n"
    b'{"id": 8, "text": "caf\xe9"}\n'
    b'{"id": 1, "text": "again"}\n'
    b'{"text": "no id"}\n'
    b'{"id": null, "text": "null id"}\n'
    b'{"id": {"a": 1}, "text": "object id"}\n'
    b'{"id": 9, "text": ["a"]}\n'
    b'{"id": 10, "text": true}\n'
    b'{"id": 11, "text": "\\ud800"}\n'
    b'{"id": 12, "text": "last"}'  # no final newline
)


def test_jsonl_bad_record_table(tmp_path):
    got = read(write(tmp_path, "bad.jsonl", JSONL_BAD), id_field="id")
    assert [(r.key, r.location, r.text, r.error) for r in got] == [
        ("1", "line 1", "good", None),
        ("2", "line 3", None, "field 'text' is missing"),
        ("3", "line 4", None, "field 'text' is null"),
        ("4", "line 5", None, "field 'text' is a number, not text"),
        ("5", "line 6", "", None),  # empty text is a good record: the caller skips it
        ("6", "line 7", "   ", None),
        ("8", "line 8", None, "not valid JSON (Expecting ',' delimiter at column 10)"),
        ("9", "line 9", None, "not a JSON object (an array)"),
        ("10", "line 10", None, "not valid UTF-8 (byte 0xe9 at column 23)"),
        ("1", "line 11", None, "duplicate key '1' (also on line 1)"),
        ("12", "line 12", None, "field 'id' is missing"),
        ("13", "line 13", None, "field 'id' is null"),
        ("14", "line 14", None, "field 'id' is an object, not a key"),
        ("9", "line 15", None, "field 'text' is an array, not text"),
        ("10", "line 16", None, "field 'text' is a boolean, not text"),
        ("11", "line 17", None, "field 'text' holds a lone surrogate (U+D800 at character 1)"),
        ("12", "line 18", "last", None),
    ]
    assert all(r.ok == (r.error is None) for r in got)


def test_jsonl_without_id_field_keys_by_line_and_has_no_duplicates(tmp_path):
    data = b'{"text": "a"}\n\n{"text": "a"}\n'
    assert read(write(tmp_path, "x.jsonl", data)) == [Record("1", "line 1", "a"), Record("3", "line 3", "a")]


def test_jsonl_line_over_the_limit_fails_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_LINE_BYTES", 64)
    data = b'{"text": "short"}\n{"text": "' + b"x" * 500 + b'"}\n{"text": "after"}\n'
    got = read(write(tmp_path, "x.jsonl", data))
    assert got == [
        Record("1", "line 1", "short"),
        Record("2", "line 2", None, "the line is longer than 64 bytes"),
        Record("3", "line 3", "after"),
    ]


CSV_BAD = (
    b"id,text,other\n"
    b"1,good,x\n"
    b'2,"bad"quote,x\n'
    b"3,too,many,fields\n"
    b"4,,x\n"
    b"\n"
    b"5,caf\xe9,x\n"
    b"6,fine,caf\xe9\n"
    b"1,again,x\n"
    b',"multi\nline",x\n'
    b"7,last,x\n"
)


def test_csv_bad_record_table(tmp_path):
    got = read(write(tmp_path, "bad.csv", CSV_BAD), id_field="id")
    assert [(r.key, r.location, r.text, r.error) for r in got] == [
        ("1", "row 1 (line 2)", "good", None),
        ("2", "row 2 (line 3)", None, "CSV row does not parse: ',' expected after '\"'"),
        ("3", "row 3 (line 4)", None, "CSV row has 4 fields, the header has 3"),
        ("4", "row 4 (line 5)", "", None),
        ("5", "row 5 (line 7)", None, "field 'text' is not valid UTF-8 (byte 0xe9 at character 4)"),
        ("6", "row 6 (line 8)", "fine", None),  # bad bytes in a column that is not read do not matter
        ("1", "row 7 (line 9)", None, "duplicate key '1' (also on row 1, line 2)"),
        ("8", "row 8 (line 10)", None, "field 'id' is empty"),
        ("7", "row 9 (line 12)", "last", None),
    ]


def test_tsv_uses_tabs(tmp_path):
    data = b'id\ttext\n1\ta, b, c\n2\t"quoted\ttab"\n'
    assert [r.text for r in read(write(tmp_path, "x.tsv.gz", data))] == ["a, b, c", "quoted\ttab"]
    # an explicit "csv" on a .tsv keeps the tab
    assert [r.text for r in read(write(tmp_path, "y.tsv", data), detect_format("y.tsv", "csv"))] == [
        "a, b, c",
        "quoted\ttab",
    ]


def test_csv_long_fields_are_read(tmp_path):
    text = "word " * 60_000  # 300,000 characters: over the standard library's 131,072 default
    data = b"text\n" + text.encode() + b"\n"
    assert read(write(tmp_path, "x.csv", data)) == [Record("1", "row 1 (line 2)", text)]


def test_csv_missing_column_names_the_columns(tmp_path):
    path = write(tmp_path, "x.csv", b"id,body\n1,hello\n")
    with pytest.raises(RecordFileError) as caught:
        read(path, name="s3://b/x.csv")
    assert str(caught.value) == (
        "s3://b/x.csv: text_field 'text' is not a column of the header row; the columns are 'id', 'body'"
    )
    with pytest.raises(RecordFileError, match="id_field 'key' is not a column of the header row"):
        read(path, text_field="body", id_field="key")


def test_csv_empty_file_has_no_records(tmp_path):
    assert read(write(tmp_path, "x.csv", b"")) == []
    assert read(write(tmp_path, "y.csv", b"text\n")) == []


def test_parquet_bad_record_table(tmp_path):
    data = parquet_bytes(
        {"id": [10, 11, None, 10, 12], "text": ["good", None, "no id", "dup", ""], "other": [1, 2, 3, 4, 5]}
    )
    got = read(write(tmp_path, "x.parquet", data), id_field="id")
    assert [(r.key, r.location, r.text, r.error) for r in got] == [
        ("10", "row 1", "good", None),
        ("11", "row 2", None, "field 'text' is null"),
        ("3", "row 3", None, "field 'id' is null"),
        ("10", "row 4", None, "duplicate key '10' (also on row 1)"),
        ("12", "row 5", "", None),
    ]
    numbers = parquet_bytes({"text": [1.5, 2.5]})
    assert read(write(tmp_path, "n.parquet", numbers))[0].error == "field 'text' is a number, not text"


def test_parquet_missing_column_names_the_columns(tmp_path):
    path = write(tmp_path, "x.parquet.gz", parquet_bytes({"id": [1], "body": ["hello"]}))
    with pytest.raises(RecordFileError) as caught:
        read(path, name="s3://b/x.parquet.gz")
    assert caught.value.source == "s3://b/x.parquet.gz"
    assert caught.value.reason == "text_field 'text' is not a column; the columns are 'id', 'body'"
    with pytest.raises(RecordFileError, match="id_field 'key' is not a column; the columns are 'id', 'body'"):
        read(path, text_field="body", id_field="key")


def test_parquet_reads_only_the_named_columns_by_row_group(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    path = write(tmp_path, "x.parquet", parquet_bytes({"text": ["a", "b", "c"], "big": ["x", "y", "z"]}))
    seen = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        seen.append((kwargs.get("row_groups"), kwargs.get("columns")))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    assert [r.text for r in read(path)] == ["a", "b", "c"]
    assert seen == [([0], ["text"]), ([1], ["text"])]


def test_parquet_gz_is_spooled_to_a_temporary_file(tmp_path, monkeypatch):
    import tempfile

    spools = []
    real = tempfile.TemporaryFile

    def spy(*args, **kwargs):
        spools.append(real(*args, **kwargs))
        return spools[-1]

    monkeypatch.setattr(records.tempfile, "TemporaryFile", spy)
    path = write(tmp_path, "x.parquet.gz", sample_bytes("parquet"))
    assert [r.text for r in read(path)] == [row["text"] for row in SAMPLES]
    assert len(spools) == 1 and spools[0].closed


def test_not_parquet_is_a_record_file_error(tmp_path):
    with pytest.raises(RecordFileError, match=r"x\.parquet: is not a readable Parquet file"):
        read(write(tmp_path, "x.parquet", b"id,text\n1,hello\n"))


@pytest.mark.parametrize("name", ["x.jsonl.gz", "x.csv.gz", "x.parquet.gz"])
def test_gz_name_without_gzip_is_a_record_file_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b'{"text": "plain"}\n')
    with pytest.raises(RecordFileError) as caught:
        read(path, name=f"s3://b/{name}")
    assert caught.value.source == f"s3://b/{name}"
    assert caught.value.reason.startswith("is not gzip-compressed, though its name ends .gz")


def test_truncated_gzip_is_a_record_file_error(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_bytes(SAMPLES * 50))[:-20])
    with pytest.raises(RecordFileError, match="the gzip stream is truncated"):
        read(path)


def test_missing_object_is_a_record_file_error(tmp_path):
    with pytest.raises(RecordFileError) as caught:
        read(tmp_path / "absent.jsonl")
    assert caught.value.reason == "the object does not exist"
    assert isinstance(caught.value, DeepgramError)
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.source, again.reason, str(again)) == (caught.value.source, caught.value.reason, str(caught.value))


def test_nothing_opens_until_iterated_and_close_closes_the_object(tmp_path):
    opened = []

    class Tracked:
        def __init__(self, path):
            self.path = path

        def open(self, mode):
            opened.append(self.path.open(mode))
            return opened[-1]

    path = write(tmp_path, "x.jsonl.gz", jsonl_bytes(SAMPLES))
    iterator = iter_file_records(Tracked(path), "jsonl", name="x.jsonl.gz")
    assert opened == []
    assert next(iterator).text == SAMPLES[0]["text"]
    assert not opened[0].closed
    iterator.close()
    assert opened[0].closed


def test_pyarrow_is_imported_only_for_parquet():
    code = (
        "import sys, pathlib, tempfile\n"
        "from airflow_provider_dgsentiment.storage.records import iter_file_records\n"
        "p = pathlib.Path(tempfile.mkdtemp()) / 'x.csv'\n"
        "p.write_text('text\\nhello\\n')\n"
        "assert [r.text for r in iter_file_records(p, 'csv')] == ['hello']\n"
        "print('pyarrow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_key_index_grows_and_remembers_positions():
    index = _KeyIndex()
    for number in range(1, 20_001):
        assert index.add(f"key-{number}", number) is None
    assert len(index) == 20_000
    assert index.add("key-1", 99) == 1
    assert index.add("key-20000", 99) == 20_000
    assert index.add("key-20001", 20_001) is None
    assert len(index._hashes) * 8 < 20_001 * 48  # 16 bytes a slot, at least 1/3 full


# ---------------------------------------------------------------------- streaming: peak RSS

RSS_CHILD = """
import json, resource, sys
from pathlib import Path
from airflow_provider_dgsentiment.storage.records import detect_format, iter_file_records
if sys.argv[1].endswith(".parquet"):
    import pyarrow.parquet  # the same imports in the small and the big run
count = chars = 0
for record in iter_file_records(Path(sys.argv[1]), detect_format(sys.argv[1]), id_field=None):
    count += 1
    chars += len(record.text)
# VmHWM is this process's own peak: ru_maxrss would include the parent's RSS at fork (Linux keeps it over exec).
status = Path("/proc/self/status")
peak = [int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:")] if status.exists() else []
max_rss_kb = peak[0] if peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"records": count, "chars": chars, "max_rss_kb": max_rss_kb}))
"""
BIG_BLOCK_ROWS = 1000


def big_block_texts() -> list[str]:
    """1000 texts of about 2 KB each, ten variants of review words."""
    words = ["good", "bad", "service", "late", "delighted", "broken", "refund", "friendly", "slow", "again"]
    variants = [" ".join(words[(variant * 7 + i * 3) % 10] for i in range(330))[:1990] for variant in range(10)]
    return [f"{n} {variants[n % 10]}" for n in range(BIG_BLOCK_ROWS)]


def write_big_file(path: Path, megabytes: int) -> int:
    """Write about ``megabytes`` MB of text as records (one 2 MB block, repeated); return the record count."""
    texts = big_block_texts()
    repeats = max(1, megabytes * 1_000_000 // sum(len(text) for text in texts))
    if path.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"text": texts})
        with pq.ParquetWriter(path, table.schema) as writer:
            for _ in range(repeats):
                writer.write_table(table, row_group_size=BIG_BLOCK_ROWS)  # one row group a block
    else:
        if path.name.endswith(".jsonl.gz"):
            block = "".join(json.dumps({"text": text}) + "\n" for text in texts)
        else:
            block = "".join(text + "\n" for text in texts)
        with gzip.open(path, "wb", compresslevel=1) as out:
            if path.name.endswith(".csv.gz"):
                out.write(b"text\n")
            for _ in range(repeats):
                out.write(block.encode())
    return repeats * BIG_BLOCK_ROWS


@pytest.mark.parametrize("name", ["big.jsonl.gz", "big.csv.gz", "big.parquet"])
def test_peak_memory_does_not_grow_with_file_size(tmp_path, name):
    figures = {}
    for megabytes in (2, 200):
        path = tmp_path / f"{megabytes}-{name}"
        records_written = write_big_file(path, megabytes)
        result = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, str(path)], capture_output=True, text=True, cwd=REPO_ROOT, check=True
        )
        figures[megabytes] = json.loads(result.stdout.strip().splitlines()[-1])
        assert figures[megabytes]["records"] == records_written
        figures[megabytes]["file_mb"] = round(path.stat().st_size / 1e6, 1)
        path.unlink()
    small, big = figures[2]["max_rss_kb"], figures[200]["max_rss_kb"]
    print(
        f"{name}: peak RSS {small} KB for {figures[2]['chars']:,} characters ({figures[2]['file_mb']} MB file), "
        f"{big} KB for {figures[200]['chars']:,} characters ({figures[200]['file_mb']} MB file)"
    )
    assert big <= small * 1.2, figures


# ---------------------------------------------------------------------- SQL: SQLite

SQLITE_CONN_ID = "dgs_records_sqlite"


@pytest.fixture
def sqlite_hook(tmp_path, monkeypatch):
    """A SqliteHook on a file with table ``reviews`` (3000 rows: id, body, score) and ``bad``."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    path = tmp_path / "records.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE reviews (id INTEGER PRIMARY KEY, body TEXT, score REAL)")
        connection.executemany(
            "INSERT INTO reviews VALUES (?, ?, ?)", [(i, f"review number {i}", i / 10) for i in range(1, 3001)]
        )
        connection.execute("CREATE TABLE bad (id, body)")
        connection.executemany(
            "INSERT INTO bad VALUES (?, ?)",
            [(1, "fine"), (2, None), (3, 42), (None, "no id"), (1, "dup"), (4, ""), (5, b"bytes ok")],
        )
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQLITE_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return SqliteHook(sqlite_conn_id=SQLITE_CONN_ID)


def spy_connections(hook, monkeypatch) -> list:
    connections = []
    real = hook.get_conn

    def get_conn():
        connections.append(real())
        return connections[-1]

    monkeypatch.setattr(hook, "get_conn", get_conn)
    return connections


def test_sqlite_rows_become_records_and_the_connection_closes(sqlite_hook, monkeypatch):
    connections = spy_connections(sqlite_hook, monkeypatch)
    got = list(
        iter_sql_records(sqlite_hook, "SELECT id, body FROM reviews ORDER BY id", text_field="body", id_field="id")
    )
    assert len(got) == 3000
    assert got[0] == Record("1", "row 1", "review number 1")
    assert got[-1] == Record("3000", "row 3000", "review number 3000")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connections[0].execute("SELECT 1")


def test_sqlite_bad_record_table(sqlite_hook):
    got = list(iter_sql_records(sqlite_hook, "SELECT * FROM bad ORDER BY rowid", text_field="body", id_field="id"))
    assert [(r.key, r.location, r.text, r.error) for r in got] == [
        ("1", "row 1", "fine", None),
        ("2", "row 2", None, "field 'body' is null"),
        ("3", "row 3", None, "field 'body' is a number, not text"),
        ("4", "row 4", None, "field 'id' is null"),
        ("1", "row 5", None, "duplicate key '1' (also on row 1)"),
        ("4", "row 6", "", None),
        ("5", "row 7", "bytes ok", None),
    ]


def test_sqlite_missing_column_names_the_columns(sqlite_hook, monkeypatch):
    connections = spy_connections(sqlite_hook, monkeypatch)
    with pytest.raises(DeepgramConfigurationError) as caught:
        next(iter_sql_records(sqlite_hook, "SELECT id, body FROM reviews", text_field="text"))
    assert str(caught.value) == "text_field 'text' is not a column of the sql result; the columns are 'id', 'body'"
    with pytest.raises(DeepgramConfigurationError, match="id_field 'key' is not a column"):
        next(iter_sql_records(sqlite_hook, "SELECT id, body FROM reviews", text_field="BODY", id_field="key"))
    assert len(connections) == 2
    for connection in connections:
        with pytest.raises(sqlite3.ProgrammingError):
            connection.execute("SELECT 1")


def test_sqlite_streams_with_fetchmany(sqlite_hook):
    # Row 3000 fails to compute (malformed JSON). SQLite computes rows as they are fetched, so the
    # rows before it arrive first: a reader that fetched everything up front would get none.
    sql = "SELECT id, CASE WHEN id = 3000 THEN json('not json') ELSE body END AS body FROM reviews ORDER BY id"
    received = []
    with pytest.raises(sqlite3.OperationalError, match="malformed JSON"):
        for record in iter_sql_records(sqlite_hook, sql, text_field="body", batch_size=100):
            received.append(record)
    assert 100 <= len(received) < 3000
    assert received[99] == Record("100", "row 100", "review number 100")


def test_sql_generator_close_closes_cursor_and_connection(sqlite_hook, monkeypatch):
    connections = spy_connections(sqlite_hook, monkeypatch)
    iterator = iter_sql_records(sqlite_hook, "SELECT id, body FROM reviews", text_field="body", batch_size=10)
    assert connections == []  # nothing runs before the first record is asked for
    assert next(iterator).key == "1"
    connections[0].execute("SELECT 1")  # still open
    iterator.close()
    with pytest.raises(sqlite3.ProgrammingError):
        connections[0].execute("SELECT 1")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE reviews", "got a DROP statement"),
        ("UPDATE reviews SET body = '' WHERE id = 1", "got a UPDATE statement"),
        ("/* a comment */ delete from reviews", "got a DELETE statement"),
        ("SELECT id, body FROM reviews; DROP TABLE reviews", "got several statements"),
        ("WITH gone AS (DELETE FROM reviews RETURNING *) SELECT * FROM gone", "it holds DELETE"),
        ("SELECT id, body INTO copied FROM reviews", "it holds INTO"),
        ("PRAGMA writable_schema = ON", "got a PRAGMA statement"),
    ],
)
def test_sql_that_is_not_a_read_only_query_is_refused_before_it_runs(sqlite_hook, monkeypatch, sql, message):
    connections = spy_connections(sqlite_hook, monkeypatch)
    with pytest.raises(DeepgramConfigurationError, match="nothing was run") as caught:
        iter_sql_records(sqlite_hook, sql, text_field="body")
    assert message in str(caught.value)
    assert connections == []  # refused before connecting
    rows = list(iter_sql_records(sqlite_hook, "SELECT id, body FROM reviews", text_field="body"))
    assert len(rows) == 3000  # the table is still there, every row intact


def test_sql_read_only_rule_lets_queries_through(sqlite_hook):
    sql = (
        "-- reviews to score; UPDATE nothing\n"
        "WITH recent AS (SELECT id, body AS \"update\", 'DROP;' AS note FROM reviews) "
        "SELECT id, \"update\" FROM recent WHERE note = 'DROP;' ORDER BY id;"
    )
    rows = list(iter_sql_records(sqlite_hook, sql, text_field="update", id_field="id"))
    assert len(rows) == 3000


# ---------------------------------------------------------------------- SQL: PostgreSQL


@pytest.fixture
def postgres_reviews(monkeypatch):
    """A PostgresHook and a table of 5000 reviews (id, body), dropped afterwards."""
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", uri)
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=POSTGRES_CONN_ID)
    table = f"dgs_records_{uuid.uuid4().hex[:10]}"
    hook.run(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, body TEXT)")
    hook.run(f"INSERT INTO {table} SELECT i, 'review number ' || i FROM generate_series(1, 5000) AS i")
    hook.run(f"INSERT INTO {table} VALUES (5001, NULL)")
    try:
        yield hook, table
    finally:
        hook.run(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.integration
def test_postgres_rows_become_records(postgres_reviews, monkeypatch):
    hook, table = postgres_reviews
    connections = spy_connections(hook, monkeypatch)
    sql = f'SELECT id AS "Key", body FROM {table} ORDER BY id'
    got = list(iter_sql_records(hook, sql, text_field="body", id_field="key", batch_size=500))
    assert len(got) == 5001
    assert got[0] == Record("1", "row 1", "review number 1")
    assert got[4999] == Record("5000", "row 5000", "review number 5000")
    assert got[5000] == Record("5001", "row 5001", None, "field 'body' is null")
    assert connections[0].closed


@pytest.mark.integration
def test_postgres_streams_through_a_server_side_cursor(postgres_reviews, monkeypatch):
    hook, table = postgres_reviews
    # Row 3000 divides by zero. A client-side cursor runs the whole query in execute() and fails
    # before any row arrives (checked first); the server-side cursor delivers the rows before it.
    sql = f"SELECT id, CASE WHEN 1 / (id - 3000) IS NULL THEN '' ELSE body END AS body FROM {table} ORDER BY id"
    plain = hook.get_conn()
    try:
        with pytest.raises(Exception, match="division by zero"):
            plain.cursor().execute(sql)
    finally:
        plain.close()

    connections = spy_connections(hook, monkeypatch)
    received = []
    with pytest.raises(Exception, match="division by zero"):
        for record in iter_sql_records(hook, sql, text_field="body", batch_size=250):
            received.append(record)
    assert 250 <= len(received) < 3000
    assert received[249] == Record("250", "row 250", "review number 250")
    assert connections[0].closed


@pytest.mark.integration
def test_postgres_missing_column_names_the_columns(postgres_reviews):
    hook, table = postgres_reviews
    with pytest.raises(DeepgramConfigurationError) as caught:
        next(iter_sql_records(hook, f"SELECT id, body FROM {table}", text_field="text"))
    assert str(caught.value) == "text_field 'text' is not a column of the sql result; the columns are 'id', 'body'"


@pytest.mark.integration
def test_postgres_with_psycopg2_streams_through_a_named_cursor(postgres_reviews):
    # Airflow 2's PostgresHook hands out psycopg2 connections: named cursors describe the result
    # only after the first fetch, and the rows before a failing one still arrive first.
    psycopg2 = pytest.importorskip("psycopg2")
    hook, table = postgres_reviews
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    opened = []

    class Psycopg2Hook:
        def get_conn(self):
            opened.append(psycopg2.connect(uri))
            return opened[-1]

    got = list(
        iter_sql_records(Psycopg2Hook(), f"SELECT id, body FROM {table} ORDER BY id", text_field="body", id_field="id")
    )
    assert len(got) == 5001 and got[0] == Record("1", "row 1", "review number 1")
    sql = f"SELECT id, CASE WHEN 1 / (id - 3000) IS NULL THEN '' ELSE body END AS body FROM {table} ORDER BY id"
    received = []
    with pytest.raises(psycopg2.Error, match="division by zero"):
        for record in iter_sql_records(Psycopg2Hook(), sql, text_field="body", batch_size=250):
            received.append(record)
    assert 250 <= len(received) < 3000
    with pytest.raises(DeepgramConfigurationError, match="the columns are 'id', 'body'"):
        next(iter_sql_records(Psycopg2Hook(), f"SELECT id, body FROM {table}", text_field="text"))
    assert len(opened) == 3 and all(connection.closed for connection in opened)
