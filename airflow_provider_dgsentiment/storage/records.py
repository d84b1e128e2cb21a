"""Read records out of a record file (JSONL, JSON, CSV/TSV, Parquet, each optionally compressed) or a SQL query.

A record is one document to score: its text, and its key (the value of an ``id_field``, or its
1-based line or row number). Every reader streams: it holds one line, one CSV row, one Parquet
batch or one SQL fetch at a time, so memory does not grow with the size of the file or result.

A record that cannot be scored (its field missing, null or not text, its line not JSON, its CSV row
not parseable, its key a duplicate) comes back as a :class:`Record` with ``error`` set and ``text``
None, so it fails alone; the others go on. A problem with the whole file (not gzip though named
``.gz``, no such column, not Parquet) raises :class:`RecordFileError` naming the object.

Decisions, for the reader of an error message:

* **Formats.** ``detect_format`` picks by extension (case-insensitive, ``.gz``, ``.bz2`` or ``.zst``
  allowed after it). An explicit ``format="csv"`` means "delimited text with a header row": on a name
  ending ``.tsv`` (or ``.tsv.gz``) it keeps the tab delimiter, anywhere else it is a comma.
* **JSON exports.** A ``.json`` file is an export of records, as exporters name them: a JSON array
  (``mongoexport --jsonArray``; its elements are the records, streamed by :mod:`.json_stream`), or
  JSON objects one after another (BigQuery's ``EXPORT DATA (format=JSON)`` writes newline-delimited
  JSON named ``*.json``; one pretty-printed object is one record).
* **Compression.** gzip (``.gz``) and bzip2 (``.bz2``) with the standard library; zstd (``.zst``) when
  the ``zstandard`` package is installed, else the file fails saying so.
* **UTF-8.** Text is UTF-8, a leading byte-order mark is dropped. A CSV/TSV or JSON file that starts
  with a UTF-16 byte-order mark (Excel's "Unicode text") is read as UTF-16; a UTF-16 JSONL file fails
  naming its encoding. In JSONL a line with bytes that
  are not UTF-8 fails that record only. In CSV the bytes are decoded with ``surrogateescape``, so a
  bad byte never stops the file: a record fails only when its text or key field holds such bytes
  (bad bytes in columns that are not read are ignored).
* **Empty text** (``""`` or only whitespace) is a good record; the caller skips it without a request.
* **Fields.** ``text_field`` / ``id_field`` may be dotted paths into nested JSON objects or
  Parquet struct columns (``ticket.body``); a literal key holding the dot wins. A field that none
  of a JSONL file's first :data:`FIELD_CHECK_RECORDS` records holds fails the file once, naming the
  fields they have (CSV and Parquet check their header / schema the same way).
* **Keys.** With ``id_field`` the key is ``str(value)``; a missing, null, empty or non-scalar key
  fails the record (its ``key`` is then its line or row number). A key seen before in the same file
  or query fails the later record, naming where the first one is. Without ``id_field`` there are
  no duplicates to look for.
* **Bounds.** A JSONL line longer than :data:`MAX_LINE_BYTES` fails alone (the rest of it is skipped,
  never held); a CSV field is allowed up to :data:`CSV_FIELD_LIMIT` characters (the standard
  library's 128K would refuse long documents; this module raises the process-wide limit to it).

This module imports no Airflow (only the provider's exceptions module, which imports Airflow's
compat layer) and imports pyarrow only when a Parquet file is read.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import hashlib
import io
import json
import shutil
import tempfile
import uuid
import zlib
from array import array
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, RecordFileError
from airflow_provider_dgsentiment.storage.dialects import check_read_only_query, read_dialect_for
from airflow_provider_dgsentiment.storage.json_stream import BadJsonValue, JsonStreamError, iter_json_values

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

#: The values of the operator's ``format`` argument.
FORMATS = ("auto", "text", "jsonl", "json", "csv", "parquet")
#: What :func:`iter_file_records` reads (``detect_format`` may also answer ``"text"``: a whole document).
RECORD_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
#: Extensions of record files (checked after an optional compression suffix is removed).
EXTENSION_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
#: The field scored when the operator is given no ``text_field``.
DEFAULT_TEXT_FIELD = "text"
#: Compression by the name's last suffix. zstd is read when the ``zstandard`` package is installed.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bzip2", ".zst": "zstd"}
#: The longest JSONL line read; a longer one fails alone and is skipped without being held.
MAX_LINE_BYTES = 64 * 1024 * 1024
#: The longest CSV field, in characters (an unclosed quote stops here instead of eating the file).
CSV_FIELD_LIMIT = 16 * 1024 * 1024
#: Bytes per read from storage (and per copy when a ``.parquet.gz`` is spooled to disk).
READ_BUFFER_BYTES = 1024 * 1024
#: Rows per Arrow batch taken out of a Parquet row group.
PARQUET_BATCH_ROWS = 1024
#: Records of a JSONL file checked for the ``text_field`` / ``id_field`` before the file fails once.
FIELD_CHECK_RECORDS = 100
#: Fields named in the message of a file whose records lack the field asked for.
MAX_NAMED_FIELDS = 30
#: Rows per fetch from a SQL cursor.
DEFAULT_SQL_BATCH_SIZE = 1000

_MISSING = object()


@dataclass(frozen=True)
class Record:
    """
    One record of a record file or a SQL result.

    :param key: ``str()`` of the record's ``id_field`` value, or its 1-based line (JSONL) or data-row
        (CSV, Parquet, SQL) number when there is no ``id_field`` or the record's id is bad.
    :param location: where it is, for messages: ``"line 12"`` (JSONL), ``"row 5 (line 7)"`` (CSV),
        ``"row 1234"`` (Parquet, SQL).
    :param text: the text to score (possibly empty or whitespace); None when the record is bad.
    :param error: why the record is bad, naming the field and the cause; None when it is good.
    :param number: its 1-based data row number: the line of a JSONL file, the data row of a CSV
        file (after the header), the row of a Parquet file or a SQL result.
    :param by_id: True when ``key`` is the record's ``id_field`` value, False when it is its number.
    """

    key: str
    location: str
    text: str | None
    error: str | None = None
    # Derived from the reading (``location`` says the number too): not part of a record's equality.
    number: int = field(default=0, compare=False)
    by_id: bool = field(default=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the record has text to score (which may be empty)."""
        return self.error is None


# ---------------------------------------------------------------------- formats


def detect_format(name: str, format: str = "auto") -> str:
    """
    Return how to read the object ``name``: ``"text"``, ``"jsonl"``, ``"json"``, ``"csv"``, ``"tsv"`` or ``"parquet"``.

    ``"auto"`` decides by extension, case-insensitive, with an optional trailing ``.gz``, ``.bz2``
    or ``.zst``: ``.jsonl``/``.ndjson`` -> ``"jsonl"``, ``.json`` -> ``"json"``, ``.csv`` -> ``"csv"``, ``.tsv`` -> ``"tsv"``,
    ``.parquet`` -> ``"parquet"``, anything else -> ``"text"`` (the whole object is one document).
    An explicit format wins over the extension, except that ``"csv"`` on a ``.tsv`` name answers
    ``"tsv"``: "csv" names the family (delimited text with a header row), the extension the delimiter.

    :param name: the object's name or URI.
    :param format: one of :data:`FORMATS`.
    :raises DeepgramConfigurationError: for a format that is not one of :data:`FORMATS`.
    """
    if format not in FORMATS:
        allowed = ", ".join(repr(value) for value in FORMATS)
        raise DeepgramConfigurationError(f"format {format!r} is not one of {allowed}")
    by_extension = _format_by_extension(name)
    if format == "auto":
        return by_extension
    if format == "csv" and by_extension == "tsv":
        return "tsv"
    return format


def _format_by_extension(name: str) -> str:
    lowered = str(name).lower()
    suffix = _compression_suffix(lowered)
    if suffix:
        lowered = lowered[: -len(suffix)]
    for extension, fmt in EXTENSION_FORMATS.items():
        if lowered.endswith(extension):
            return fmt
    return "text"


def _compression_suffix(name: str) -> str | None:
    lowered = str(name).lower()
    return next((suffix for suffix in COMPRESSIONS if lowered.endswith(suffix)), None)


def compression_of(name: str) -> str | None:
    """``"gzip"``, ``"bzip2"`` or ``"zstd"`` for a name ending ``.gz``, ``.bz2`` or ``.zst``; else None."""
    suffix = _compression_suffix(name)
    return COMPRESSIONS[suffix] if suffix else None


def decompressing(stream: Any, source: str) -> Any:
    """
    ``stream`` decompressed as the suffix of the name ``source`` says (``stream`` itself when it names none).

    :raises RecordFileError: for zstd without the ``zstandard`` package installed.
    """
    compression = compression_of(source)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if compression == "bzip2":
        return bz2.BZ2File(stream, mode="rb")
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise RecordFileError(
                source,
                "is zstd-compressed (.zst), a compression this installation does not read (the zstandard "
                "package is not installed): install zstandard, or compress it with gzip (.gz) or bzip2 (.bz2)",
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    return stream


# ---------------------------------------------------------------------- files


def iter_file_records(
    path: Any,
    fmt: str,
    *,
    text_field: str = "text",
    id_field: str | None = None,
    name: str | None = None,
) -> Generator[Record, None, None]:
    """
    Stream the records of one record file.

    The object is opened in binary and read in :data:`READ_BUFFER_BYTES` pieces; a name ending
    ``.gz``, ``.bz2`` or ``.zst`` is decompressed on the fly. Nothing is opened until the first record is asked for;
    the object is closed when the iterator is exhausted, fails or is closed.

    * ``jsonl``: one JSON object per line. Blank lines are skipped but counted, so locations are
      the file's own line numbers. A line that is not UTF-8, not JSON or not an object fails alone.
    * ``json``: a JSON array of objects (located ``element 3 (line 5)``; a broken array ends the
      file with :class:`RecordFileError` after the records before the break), or JSON objects one
      after another (located by the line each starts on; one that is not JSON fails alone).
    * ``csv`` / ``tsv``: a header row, then data rows (quoted fields may hold newlines and
      delimiters). A row with another number of fields than the header, or one the ``csv`` module
      cannot parse (strict quoting), fails alone. Rows are numbered from 1 after the header,
      blank lines not counted; the location also gives the line the row starts on.
    * ``parquet``: read by row group, only the ``text_field`` and ``id_field`` columns. A
      ``.parquet.gz`` is first decompressed into an anonymous temporary file (Parquet needs to seek
      to its footer): it costs disk space equal to the decompressed size, never memory.

    With ``id_field``, keys are checked for duplicates. The check keeps an 8-byte hash and an
    8-byte position per key in an open-addressing table filled to between 1/3 and 2/3: 24 to 48
    bytes per record (32 MiB for a million records, half as much again while it grows), never the
    keys themselves, at a few µs of CPU per record (a pure-Python probe). Two different keys with
    the same 64-bit hash would be reported as a duplicate: for n records the chance is about
    n^2 / 2^65 (1 in 370,000 for ten million records).

    :param path: the object: anything with ``open("rb")`` (``ObjectStoragePath``, ``pathlib.Path``).
    :param fmt: ``"jsonl"``, ``"json"``, ``"csv"``, ``"tsv"`` or ``"parquet"`` (see :func:`detect_format`).
    :param text_field: the field (JSONL key, CSV column, Parquet column) holding the text; in JSONL, JSON and
        Parquet a dotted path (``ticket.body``) reaches into nested objects / struct columns, a
        literal key or column holding the dot winning where both exist.
    :param id_field: the field holding the record key (a dotted path too), or None to key records
        by line/row number.
    :param name: the object's name in messages (default ``str(path)``).
    :raises DeepgramConfigurationError: at once, for a bad ``fmt``, ``text_field`` or ``id_field``.
    :raises RecordFileError: while iterating, when the whole file is unreadable as records.
    """
    if fmt not in RECORD_FORMATS:
        allowed = ", ".join(repr(value) for value in RECORD_FORMATS)
        raise DeepgramConfigurationError(f"record format {fmt!r} is not one of {allowed}")
    _check_field_name(text_field, "text_field")
    if id_field is not None:
        _check_field_name(id_field, "id_field")
    source = str(path) if name is None else name
    if fmt == "parquet":
        return _parquet_records(path, source, text_field, id_field)
    return _stream_records(path, source, fmt, text_field, id_field)


def _check_field_name(value: Any, argument: str) -> None:
    if not isinstance(value, str) or not value:
        raise DeepgramConfigurationError(f"{argument} must be a non-empty string, got {value!r}")


@contextmanager
def _open_binary(path: Any, source: str) -> Iterator[Any]:
    """Open ``path`` for binary reading, translating "cannot open" into :class:`RecordFileError`."""
    try:
        stream = path.open("rb")
    except FileNotFoundError as exc:
        raise RecordFileError(source, "the object does not exist") from exc
    except OSError as exc:
        raise RecordFileError(source, f"cannot open the object ({type(exc).__name__}: {exc})") from exc
    try:
        yield stream
    finally:
        stream.close()


def _read_failure(exc: BaseException, source: str = "") -> str:
    """Describe an error raised while reading (or decompressing) an object."""
    compression = compression_of(source) or "gzip"
    if isinstance(exc, gzip.BadGzipFile):
        return f"is not gzip-compressed, though its name ends .gz ({exc})"
    if isinstance(exc, EOFError):
        return f"the {compression} stream is truncated ({exc})"
    if isinstance(exc, zlib.error):
        return f"the gzip stream is corrupt ({exc})"
    if compression != "gzip" and isinstance(exc, OSError):
        return (
            f"is not {compression}-compressed or is corrupt, though its name ends {_compression_suffix(source)} ({exc})"
        )
    return f"reading failed ({type(exc).__name__}: {exc})"


def _stream_records(
    path: Any, source: str, fmt: str, text_field: str, id_field: str | None
) -> Generator[Record, None, None]:
    with ExitStack() as stack:
        stream = stack.enter_context(_open_binary(path, source))
        stream = stack.enter_context(_closing(decompressing(stream, source)))
        buffered = stack.enter_context(io.BufferedReader(stream, buffer_size=READ_BUFFER_BYTES))
        try:
            encoding = _utf16_encoding(buffered)
            if fmt == "json":
                records = _json_records(buffered, source, encoding or "utf-8-sig", text_field, id_field)
                yield from _fields_checked(records, source, text_field, id_field)
            elif fmt == "jsonl":
                if encoding is not None:
                    raise RecordFileError(
                        source,
                        f"is {encoding.upper()} text (it starts with a byte-order mark); JSONL must be UTF-8: convert it",
                    )
                yield from _fields_checked(_jsonl_records(buffered, text_field, id_field), source, text_field, id_field)
            else:
                delimiter = "\t" if fmt == "tsv" else ","
                yield from _csv_records(buffered, source, delimiter, text_field, id_field, encoding or "utf-8-sig")
        except (OSError, EOFError, zlib.error) as exc:
            raise RecordFileError(source, _read_failure(exc, source)) from exc


def decompressed_bytes(data: bytes, source: str) -> bytes:
    """The bytes of a whole object, decompressed when its name ends ``.gz``, ``.bz2`` or ``.zst``."""
    if compression_of(source) is None:
        return data
    try:
        with _closing(decompressing(io.BytesIO(data), source)) as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise RecordFileError(source, _read_failure(exc, source)) from exc


@contextmanager
def _closing(stream: Any) -> Iterator[Any]:
    try:
        yield stream
    finally:
        stream.close()


def _utf16_encoding(stream: io.BufferedReader) -> str | None:
    """``"utf-16"`` when the text starts with a UTF-16 byte-order mark (Excel's "Unicode text" export), else None."""
    start = stream.peek(2)[:2]
    return "utf-16" if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else None


def _json_records(
    stream: io.BufferedReader, source: str, encoding: str, text_field: str, id_field: str | None
) -> Iterator[Record | _FieldsSeen]:
    """The records of a ``.json`` export: a JSON array's elements, or JSON objects one after another (NDJSON)."""
    text = io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape")
    keys = _KeyIndex() if id_field is not None else None
    number = 0
    try:
        for location, value in iter_json_values(text, max_chars=MAX_LINE_BYTES):
            number += 1
            if isinstance(value, BadJsonValue):
                yield Record(str(number), location, None, value.reason, number=number)
            else:
                yield _json_record(number, location, value, text_field, id_field, keys, _describe_record_number)
    except JsonStreamError as exc:
        raise RecordFileError(source, f"is not a readable JSON export: {exc}") from None


def _describe_record_number(position: int) -> str:
    return f"record {position}"


def _jsonl_records(
    stream: io.BufferedReader, text_field: str, id_field: str | None
) -> Generator[Record | _FieldsSeen, None, None]:
    keys = _KeyIndex() if id_field is not None else None
    line_number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        line_number += 1
        location = f"line {line_number}"
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            _skip_rest_of_line(stream)
            yield Record(
                str(line_number), location, None, f"the line is longer than {MAX_LINE_BYTES} bytes", number=line_number
            )
            continue
        if line_number == 1 and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8) :]
        if not line.strip():
            continue
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
            yield Record(str(line_number), location, None, problem, number=line_number)
            continue
        try:
            value = json.loads(decoded)
        except json.JSONDecodeError as exc:
            yield Record(
                str(line_number),
                location,
                None,
                f"not valid JSON ({exc.msg} at column {exc.colno})",
                number=line_number,
            )
            continue
        yield _json_record(line_number, location, value, text_field, id_field, keys, _describe_line)


def _json_record(
    number: int,
    location: str,
    value: Any,
    text_field: str,
    id_field: str | None,
    keys: _KeyIndex | None,
    describe_position: Callable[[int], str],
) -> Record | _FieldsSeen:
    """The record of one decoded JSON value (JSONL line, JSON export element): an object, else a failure."""
    if not isinstance(value, dict):
        return Record(str(number), location, None, f"not a JSON object ({_describe(value)})", number=number)
    record = _make_record(
        number,
        location,
        field_value(value, text_field),
        field_value(value, id_field) if id_field is not None else None,
        text_field,
        id_field,
        keys,
        number,
        describe_position,
    )
    return _FieldsSeen(record, value)


@dataclass(frozen=True)
class _FieldsSeen:
    """A JSONL record with the object it came from, for :func:`_fields_checked` (never leaves this module)."""

    record: Record
    value: dict


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """
    Return the value at ``path`` in a JSON object, or ``_MISSING``.

    ``path`` is a key, or a dotted path into nested objects (``ticket.body``); a literal key holding
    the dot wins where both exist.
    """
    if path in record:
        return record[path]
    if "." not in path:
        return _MISSING
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _field_paths(value: Mapping[str, Any], prefix: str = "", depth: int = 2) -> Iterator[str]:
    """The keys of a JSON object, and the dotted paths into its nested objects (two levels deep)."""
    for key, item in value.items():
        yield prefix + str(key)
        if depth > 1 and isinstance(item, Mapping):
            yield from _field_paths(item, f"{prefix}{key}.", depth - 1)


def _fields_checked(
    records: Iterator[Record | _FieldsSeen], source: str, text_field: str, id_field: str | None
) -> Iterator[Record]:
    """
    Pass records through; fail the file once when a field is in none of its first records.

    A ``text_field`` or ``id_field`` that no JSON object among the first :data:`FIELD_CHECK_RECORDS`
    holds is a wrong argument, not a bad record: rather than one identical error per record, the file
    fails with :class:`RecordFileError` naming the fields those records have. The records seen
    while checking are held (at most :data:`FIELD_CHECK_RECORDS`), then passed on in order.
    """
    wanted = [(text_field, "text_field")] + ([(id_field, "id_field")] if id_field is not None else [])
    missing = {field for field, _ in wanted}
    held: list[Record] = []
    seen: dict[str, None] = {}
    objects = 0
    for item in records:
        if isinstance(item, _FieldsSeen):
            if missing:
                objects += 1
                missing = {field for field in missing if field_value(item.value, field) is _MISSING}
                seen.update(dict.fromkeys(_field_paths(item.value)))
            item = item.record
        if not missing and not held:
            yield item
            continue
        held.append(item)
        if not missing:
            yield from held
            held = []
        elif objects >= FIELD_CHECK_RECORDS:
            break
    if missing and objects:
        field, argument = next((field, argument) for field, argument in wanted if field in missing)
        fields = ", ".join(repr(name) for name in list(seen)[:MAX_NAMED_FIELDS])
        raise RecordFileError(
            source, f"{argument} {field!r} is in none of the first {objects} record(s); they have the fields {fields}"
        )
    yield from held


def _skip_rest_of_line(stream: io.BufferedReader) -> None:
    while True:
        piece = stream.readline(READ_BUFFER_BYTES)
        if not piece or piece.endswith(b"\n"):
            return


def _describe_line(position: int) -> str:
    return f"line {position}"


def _describe_csv_position(position: int) -> str:
    return f"row {position >> 32}, line {position & 0xFFFFFFFF}"


def _describe_row(position: int) -> str:
    return f"row {position}"


def _csv_records(
    stream: io.BufferedReader,
    source: str,
    delimiter: str,
    text_field: str,
    id_field: str | None,
    encoding: str = "utf-8-sig",
) -> Generator[Record, None, None]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    text = io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    header: list[str] = []
    try:
        while not header:  # blank lines before the header are skipped
            header = next(reader)
    except StopIteration:
        return  # an empty file holds no records
    except csv.Error as exc:
        raise RecordFileError(source, f"the header row does not parse ({exc})") from exc
    text_index = _header_index(source, header, text_field, "text_field")
    id_index = _header_index(source, header, id_field, "id_field") if id_field is not None else None
    width = len(header)
    keys = _KeyIndex() if id_field is not None else None
    row_number = 0
    last_line = reader.line_num
    while True:
        start_line = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last_line = reader.line_num
            row_number += 1
            location = f"row {row_number} (line {start_line})"
            yield Record(str(row_number), location, None, f"CSV row does not parse: {exc}", number=row_number)
            continue
        last_line = reader.line_num
        if not row:
            continue  # a blank line
        row_number += 1
        location = f"row {row_number} (line {start_line})"
        if len(row) != width:
            problem = f"CSV row has {len(row)} fields, the header has {width}"
            yield Record(str(row_number), location, None, problem, number=row_number)
            continue
        yield _make_record(
            row_number,
            location,
            row[text_index],
            row[id_index] if id_index is not None else None,
            text_field,
            id_field,
            keys,
            (row_number << 32) | min(start_line, 0xFFFFFFFF),
            _describe_csv_position,
        )


def _header_index(source: str, header: Sequence[str], field: str, argument: str) -> int:
    try:
        return list(header).index(field)
    except ValueError:
        columns = ", ".join(repr(column) for column in header)
        raise RecordFileError(
            source, f"{argument} {field!r} is not a column of the header row; the columns are {columns}"
        ) from None


def _parquet_records(path: Any, source: str, text_field: str, id_field: str | None) -> Generator[Record, None, None]:
    pa, pq = _import_pyarrow()
    with ExitStack() as stack:
        stream = stack.enter_context(_open_binary(path, source))
        if compression_of(source):
            # Parquet seeks to its footer: spool the decompressed bytes to an anonymous file on disk.
            spool = stack.enter_context(tempfile.TemporaryFile(prefix="dgsentiment-", suffix=".parquet"))
            try:
                with _closing(decompressing(stream, source)) as unzipped:
                    shutil.copyfileobj(unzipped, spool, READ_BUFFER_BYTES)
            except (OSError, EOFError, zlib.error) as exc:
                raise RecordFileError(source, _read_failure(exc, source)) from exc
            spool.seek(0)
            stream = spool
        try:
            parquet = stack.enter_context(pq.ParquetFile(stream))
        except (pa.ArrowException, OSError) as exc:
            raise RecordFileError(source, f"is not a readable Parquet file ({exc})") from exc
        schema = parquet.schema_arrow
        text_column = _parquet_column(pa, schema, text_field, "text_field", source)
        id_column = _parquet_column(pa, schema, id_field, "id_field", source) if id_field is not None else None
        wanted = list(dict.fromkeys(column[0] for column in (text_column, id_column) if column is not None))
        keys = _KeyIndex() if id_field is not None else None
        row_number = 0
        try:
            # One reader per row group: a reader over all of them reads ahead and holds more as
            # the file grows (measured: +24 MB of peak RSS over 200 row groups, +3 MB this way).
            for row_group in range(parquet.num_row_groups):
                batches = parquet.iter_batches(
                    batch_size=PARQUET_BATCH_ROWS, row_groups=[row_group], columns=wanted, use_threads=False
                )
                for batch in batches:
                    texts = _parquet_values(batch, text_column)
                    ids = _parquet_values(batch, id_column) if id_column is not None else None
                    for offset, text_value in enumerate(texts):
                        row_number += 1
                        yield _make_record(
                            row_number,
                            f"row {row_number}",
                            text_value,
                            ids[offset] if ids is not None else None,
                            text_field,
                            id_field,
                            keys,
                            row_number,
                            _describe_row,
                        )
        except (pa.ArrowException, OSError) as exc:
            raise RecordFileError(source, f"reading row {row_number + 1} failed ({exc})") from exc


def _parquet_column(pa: Any, schema: Any, field: str, argument: str, source: str) -> tuple[str, tuple[str, ...]]:
    """
    Return ``(column, path inside it)`` for a field: a column, or a dotted path into a struct column.

    A column whose name holds the dot wins over a struct path of the same spelling.

    :raises RecordFileError: naming the columns when the field is neither.
    """
    names = schema.names
    if field in names:
        return field, ()
    column, *path = field.split(".")
    if path and column in names:
        kind = schema.field(column).type
        for part in path:
            if not pa.types.is_struct(kind) or kind.get_field_index(part) < 0:
                break
            kind = kind.field(part).type
        else:
            return column, tuple(path)
    listed = ", ".join(repr(name) for name in names)
    raise RecordFileError(source, f"{argument} {field!r} is not a column; the columns are {listed}")


def _parquet_values(batch: Any, column: tuple[str, tuple[str, ...]]) -> list[Any]:
    """The values of one field in a batch: a column, or a path into its structs (None where a struct is null)."""
    name, path = column
    values = batch.column(name).to_pylist()
    if not path:
        return values
    found = []
    for value in values:
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        found.append(value)
    return found


def _import_pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise DeepgramConfigurationError(
            "Reading Parquet needs pyarrow: pip install 'airflow-provider-dgsentiment[parquet]'"
        ) from exc
    return pyarrow, pyarrow.parquet


# ---------------------------------------------------------------------- SQL


def iter_sql_records(
    hook: DbApiHook,
    sql: str,
    *,
    text_field: str,
    id_field: str | None = None,
    batch_size: int = DEFAULT_SQL_BATCH_SIZE,
) -> Generator[Record, None, None]:
    """
    Stream the rows of a SELECT as records, ``batch_size`` rows per fetch.

    The query runs on a new DB-API connection from ``hook.get_conn()``. On PostgreSQL
    (psycopg2 or psycopg 3) it runs in a server-side (named) cursor, so the server sends
    ``batch_size`` rows per ``FETCH``; on other databases the cursor is read with
    ``fetchmany(batch_size)``, never ``fetchall()`` (SQLite computes rows as they are fetched;
    drivers that buffer the whole result client-side, such as MySQLdb's default cursor, still do).
    Nothing runs until the first record is asked for; the cursor and the connection are closed
    when the iterator is exhausted, fails or is closed.

    Columns are found by the names in ``cursor.description``: exactly, or else ignoring case when
    that is unambiguous (PostgreSQL folds unquoted names to lower case). Records are numbered
    from 1 (``"row 17"``); the per-record rules and the duplicate-key check are those of
    :func:`iter_file_records`. Errors of the database itself (bad SQL, lost connection) are raised
    as the driver raises them.

    :param hook: a common.sql ``DbApiHook``.
    :param sql: the SELECT to run.
    :param text_field: the column holding the text.
    :param id_field: the column holding the record key, or None to key rows by row number.
    :param batch_size: rows per fetch.
    :raises DeepgramConfigurationError: for bad arguments, a statement that is not one read-only
        query (refused before it runs: :func:`~airflow_provider_dgsentiment.storage.dialects.check_read_only_query`;
        it also runs in a read-only transaction where the database has one), a statement without a
        result, or a ``text_field`` / ``id_field`` that is not a column of the result (naming the columns).
    """
    if not isinstance(sql, str) or not sql.strip():
        raise DeepgramConfigurationError(f"sql must be a non-empty SELECT statement, got {sql!r}")
    check_read_only_query(sql)
    _check_field_name(text_field, "text_field")
    if id_field is not None:
        _check_field_name(id_field, "id_field")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise DeepgramConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
    return _sql_records(hook, sql, text_field, id_field, batch_size)


def _sql_records(
    hook: Any, sql: str, text_field: str, id_field: str | None, batch_size: int
) -> Generator[Record, None, None]:
    connection = hook.get_conn()
    cursor = None
    try:
        cursor = _streaming_cursor(connection, batch_size)
        read_dialect_for(hook).start_read_only(connection)
        cursor.execute(sql)
        rows = cursor.fetchmany(batch_size)  # psycopg2's named cursors describe the result after a fetch
        if cursor.description is None:
            raise DeepgramConfigurationError("sql returned no result set: it must be a SELECT (or another query)")
        columns = [str(column[0]) for column in cursor.description]
        text_index = _column_index(columns, text_field, "text_field")
        id_index = _column_index(columns, id_field, "id_field") if id_field is not None else None
        keys = _KeyIndex() if id_field is not None else None
        row_number = 0
        while rows:
            for row in rows:
                row_number += 1
                if isinstance(row, Mapping):  # dict-row cursors (RealDictCursor, dict_row)
                    text_value = row.get(columns[text_index], _MISSING)
                    id_value = row.get(columns[id_index], _MISSING) if id_index is not None else None
                else:
                    text_value = row[text_index]
                    id_value = row[id_index] if id_index is not None else None
                yield _make_record(
                    row_number,
                    f"row {row_number}",
                    text_value,
                    id_value,
                    text_field,
                    id_field,
                    keys,
                    row_number,
                    _describe_row,
                )
            rows = cursor.fetchmany(batch_size)
    finally:
        _close_quietly(cursor, connection)


def _streaming_cursor(connection: Any, batch_size: int) -> Any:
    """Return a server-side cursor on PostgreSQL, a plain one elsewhere."""
    driver = type(connection).__module__.split(".")[0]
    if driver in ("psycopg2", "psycopg"):
        if getattr(connection, "autocommit", False):
            connection.autocommit = False  # a named cursor lives in a transaction
        cursor = connection.cursor(name=f"dgsentiment_records_{uuid.uuid4().hex[:16]}")
        cursor.itersize = batch_size
        return cursor
    if driver == "sqlite3":
        _allow_writers_while_reading(connection)
    return connection.cursor()


def _allow_writers_while_reading(connection: Any) -> None:
    """
    Put a SQLite database in WAL mode, so the results can be written while the query is read.

    A SELECT read in batches keeps a read transaction open until its last row; in SQLite's default
    (rollback-journal) mode that shared lock stops every other connection from committing, so
    enriching a table in place (results written into the same file) failed with "database is
    locked" as soon as the rows did not fit in one fetch. WAL lets one writer commit while readers
    read their snapshot. The mode is a property of the file and stays set; an in-memory or
    read-only database keeps its mode (nothing can write to it from another connection anyway).
    """
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    except Exception:  # read-only file, or a driver wrapper without execute: read as before
        pass


def _close_quietly(cursor: Any, connection: Any) -> None:
    """Close the cursor, end the read transaction and close the connection, whatever fails."""
    for action in (
        getattr(cursor, "close", None),
        getattr(connection, "rollback", None),
        getattr(connection, "close", None),
    ):
        if action is None:
            continue
        try:
            action()
        except Exception:  # a broken connection cannot be closed cleanly; the original error matters
            pass


def _column_index(columns: Sequence[str], field: str, argument: str) -> int:
    if field in columns:
        return list(columns).index(field)
    folded = [index for index, column in enumerate(columns) if column.lower() == field.lower()]
    if len(folded) == 1:
        return folded[0]
    listed = ", ".join(repr(column) for column in columns)
    raise DeepgramConfigurationError(
        f"{argument} {field!r} is not a column of the sql result; the columns are {listed}"
    )


# ---------------------------------------------------------------------- per-record rules


def _make_record(
    number: int,
    location: str,
    text_value: Any,
    id_value: Any,
    text_field: str,
    id_field: str | None,
    keys: _KeyIndex | None,
    position: int,
    describe_position: Callable[[int], str],
) -> Record:
    """Build the record at ``location`` from its raw text and id values (``_MISSING`` when absent)."""
    key = str(number)
    if id_field is not None and keys is not None:
        key_value, problem = _key_of(id_field, id_value)
        if problem is not None:
            return Record(key, location, None, problem, number=number)
        earlier = keys.add(key_value, position)
        if earlier is not None:
            return Record(
                key_value,
                location,
                None,
                f"duplicate key {key_value!r} (also on {describe_position(earlier)})",
                number=number,
                by_id=True,
            )
        text, problem = _text_of(text_field, text_value)
        return Record(key_value, location, text, problem, number=number, by_id=True)
    text, problem = _text_of(text_field, text_value)
    return Record(key, location, text, problem, number=number)


def _describe(value: Any) -> str:
    """Name the JSON-ish kind of ``value``: "null", "a number", "an object", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def _text_of(field: str, value: Any) -> tuple[str | None, str | None]:
    """Return ``(text, None)`` for a usable text value, ``(None, why)`` otherwise."""
    if value is _MISSING:
        return None, f"field {field!r} is missing"
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            return (
                None,
                f"field {field!r} is bytes that are not UTF-8 (byte 0x{bytes(value)[exc.start]:02x} at byte {exc.start + 1})",
            )
    if not isinstance(value, str):
        if value is None:
            return None, f"field {field!r} is null"
        return None, f"field {field!r} is {_describe(value)}, not text"
    problem = _unicode_problem(field, value)
    if problem is not None:
        return None, problem
    return value, None


def _key_of(field: str, value: Any) -> tuple[str, str | None]:
    """Return ``(key, None)`` for a usable key value, ``("", why)`` otherwise."""
    if value is _MISSING:
        return "", f"field {field!r} is missing"
    if value is None:
        return "", f"field {field!r} is null"
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "", f"field {field!r} is bytes that are not UTF-8"
    if isinstance(value, (Mapping, list, tuple)):
        return "", f"field {field!r} is {_describe(value)}, not a key"
    key = str(value)
    if not key:
        return "", f"field {field!r} is empty"
    problem = _unicode_problem(field, key)
    if problem is not None:
        return "", problem
    return key, None


def _unicode_problem(field: str, text: str) -> str | None:
    """Name the first character of ``text`` that cannot be sent as UTF-8, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape (CSV)
            return f"field {field!r} is not valid UTF-8 (byte 0x{code - 0xDC00:02x} at character {exc.start + 1})"
        return f"field {field!r} holds a lone surrogate (U+{code:04X} at character {exc.start + 1})"
    return None


class _KeyIndex:
    """
    The record keys seen so far, as 8-byte BLAKE2b hashes mapped to positions (line or row numbers).

    An open-addressing hash table in two ``array("Q")``: 16 bytes a slot, kept between 1/3 and 2/3
    full, so 24 to 48 bytes a key whatever its length. Hash 0 marks a free slot (a key hashing to 0
    is stored as 1).
    """

    _INITIAL_SLOTS = 1024

    def __init__(self) -> None:
        self._hashes = array("Q", [0]) * self._INITIAL_SLOTS
        self._positions = array("Q", [0]) * self._INITIAL_SLOTS
        self._mask = self._INITIAL_SLOTS - 1
        self._used = 0

    def __len__(self) -> int:
        return self._used

    @staticmethod
    def _hash(key: str) -> int:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "little") or 1

    def add(self, key: str, position: int) -> int | None:
        """Remember ``key`` at ``position``; when it was seen before, return the earlier position instead."""
        hashed = self._hash(key)
        hashes, mask = self._hashes, self._mask
        slot = hashed & mask
        while True:
            found = hashes[slot]
            if found == 0:
                break
            if found == hashed:
                return self._positions[slot]
            slot = (slot + 1) & mask
        hashes[slot] = hashed
        self._positions[slot] = position
        self._used += 1
        if self._used * 3 > len(hashes) * 2:
            self._grow()
        return None

    def _grow(self) -> None:
        old_hashes, old_positions = self._hashes, self._positions
        size = len(old_hashes) * 2
        hashes = array("Q", [0]) * size
        positions = array("Q", [0]) * size
        mask = size - 1
        for hashed, position in zip(old_hashes, old_positions):
            if hashed == 0:
                continue
            slot = hashed & mask
            while hashes[slot] != 0:
                slot = (slot + 1) & mask
            hashes[slot] = hashed
            positions[slot] = position
        self._hashes, self._positions, self._mask = hashes, positions, mask
