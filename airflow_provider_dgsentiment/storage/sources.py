"""What ``source`` names: parsing, listing, reading, and the sensor's unscored filter.

A ``source`` is a URI of one object (``file:///data/a.txt``, ``s3://conn@bucket/key``),
a glob (``s3://bucket/in/*.txt``, ``file:///data/**/*.txt``), a prefix or folder
(``s3://bucket/in/``), or a list of those. :class:`DocumentSource` turns it into
sorted, de-duplicated object names and reads them as :class:`Document` s with a
bounded read-ahead, so slow object stores do not starve the scorer and memory stays
flat. Operator, sensor and triggers all go through this module.

Document names (``source`` in tables and XCom) are URIs without the connection id:
``s3://bucket/key``, ``file:///abs/path``. A URI that names an existing object is that
object, even when its name holds ``*``, ``?`` or ``[``; only an entry that names no
object is read as a glob.
"""

from __future__ import annotations

import ast
import dataclasses
import glob
import hashlib
import os
import posixpath
import stat
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_dgsentiment.exceptions import (
    DeepgramConfigurationError,
    DeepgramError,
    DocumentReadError,
    RecordFileError,
    first_and_more,
)
from airflow_provider_dgsentiment.storage.listing import (
    GLOB_CHARACTERS,
    SkippedNames,
    explicit_prefix,
    glob_root,
    is_glob,
    skipped_below,
    walk_local,
)
from airflow_provider_dgsentiment.storage.load_history import (
    NO_NAMESPACE,
    HistoryStore,
    LoadHistory,
    ReadPlan,
    plan_reads,
)
from airflow_provider_dgsentiment.storage.object_history import ObjectLoadHistory
from airflow_provider_dgsentiment.storage.records import (
    Record,
    decompressed_bytes,
    detect_format,
    iter_file_records,
    iter_sql_records,
)
from airflow_provider_dgsentiment.storage.warehouse import DEFAULT_AVERAGES_TABLE, WarehouseWriter, sql_hook
from airflow_provider_dgsentiment.storage.work_claims import DEFAULT_BATCH_SIZE, ClaimedNames, WorkClaims, publish_names

if TYPE_CHECKING:
    from logging import Logger as StdLogger

    # The task's or trigger's logger: a stdlib logger or Airflow's structlog logger.
    Logger = StdLogger | Any

    from airflow.providers.common.compat.sdk import ObjectStoragePath

#: URI schemes users write that name a store Airflow registers under another scheme.
SCHEME_ALIASES = {"wasb": "abfs", "wasbs": "abfss"}
#: Why a plain-text object holding JSON fails unsent when ``text_field``/``id_field`` is given.
HOLDS_JSON = (
    "holds JSON but is read as one plain-text document, so text_field/id_field would be ignored and its "
    "JSON paid for whole: name it .json or .jsonl, or give format='json'"
)
#: Why an empty or whitespace-only document is skipped without a request.
SKIP_EMPTY = "empty document"
#: Why an object listed (or named) could not be read: it is not there.
OBJECT_NOT_FOUND = "object not found"
#: Objects read ahead of the scorer at most.
DEFAULT_READ_AHEAD = 32
#: Threads reading objects at most.
MAX_READ_THREADS = 16
#: Rows fetched from a SQL source at once.
READ_BATCH_ROWS = 1000


def fingerprint(text: str) -> str:
    """Return the sha256 hex digest of the text's UTF-8 bytes (the document's content key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- naming


def storage_path(uri: str | ObjectStoragePath, conn_id: str | None = None) -> ObjectStoragePath:
    """
    Return ``uri`` as an ``ObjectStoragePath`` (``conn_id`` wins over one in the URI).

    ``wasb://`` and ``wasbs://`` (Azure Blob as Airflow's ``wasb`` connections name it) are read
    as ``abfs://`` and ``abfss://``: the Azure provider registers its blob filesystem (adlfs) for
    those schemes only, and it is the same store, so a blob has one name however it was written.
    """
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(uri, ObjectStoragePath) and conn_id is None:
        return uri
    uri = _registered_scheme(str(uri))
    if conn_id is None:
        # Airflow 2's ObjectStoragePath takes conn_id=None as "no connection" and drops one named in the URI.
        return ObjectStoragePath(str(uri))
    return ObjectStoragePath(str(uri), conn_id=conn_id)


def results_root(results_path: str | ObjectStoragePath, conn_id: str | None) -> ObjectStoragePath:
    """``results_path`` as a folder: the root of every task's results folder and of the load history beside them."""
    return storage_path(str(results_path).rstrip("/"), conn_id)


def _registered_scheme(uri: str) -> str:
    """Return ``uri`` with a scheme Airflow registers no filesystem for replaced by the one it does."""
    scheme, separator, rest = uri.partition("://")
    alias = SCHEME_ALIASES.get(scheme.lower()) if separator else None
    return f"{alias}://{rest}" if alias else uri


def storage_conn_id(path: ObjectStoragePath) -> str | None:
    """Return the connection id of ``path``: an attribute on Airflow 3, a storage option on Airflow 2."""
    return getattr(path, "conn_id", None) or path.storage_options.get("conn_id")


def uri_conn_id(entry: str | ObjectStoragePath) -> str | None:
    """
    The connection named in a URI (``s3://conn@bucket/key``), read from the text.

    Read without building an ``ObjectStoragePath``: building one sets up its filesystem at
    once, and for a connection that does not exist that already falls back to ambient credentials.
    """
    if not isinstance(entry, str):
        return storage_conn_id(entry)
    try:
        return urlsplit(entry).username or None
    except ValueError:
        return None


def check_storage_connection(conn_id: str | None, used_for: str) -> None:
    """
    Fail naming a storage connection that does not exist, before the storage is touched.

    ``ObjectStoragePath`` only logs "Unable to find ... Connection ID ..., switching to empty"
    for a missing connection and goes on with whatever credentials the worker has (instance
    metadata, anonymous access): a typo in ``s3://aws_prdo@bucket/...`` would read or write
    with the wrong identity, or fail later with a misleading "access denied".

    :param conn_id: the connection named in a URI or by ``source_conn_id`` / ``results_conn_id``.
    :param used_for: what it is for, for the message (``source s3://...``, ``results_path ...``).
    :raises DeepgramConfigurationError: naming the connection and what it is for.
    """
    if not conn_id:
        return
    from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise DeepgramConfigurationError(
            f"The storage connection {conn_id!r} (for {used_for}) does not exist: create it or correct its "
            "name; the worker's own credentials are never used in its place"
        ) from None


def document_name(path: ObjectStoragePath) -> str:
    """
    Return the stable name of an object: its URI without the connection id, normalized.

    Local paths are normalized (``//a.txt``, ``./a.txt`` and ``sub/../a.txt`` are one file);
    object-store keys are kept as they are, because ``a//b`` and ``a/b`` are two keys there.
    """
    protocol = path.protocol or "file"
    if protocol == "file":
        return f"file://{_normalized_local(path.path)}"
    return f"{protocol}://{path.path}"


def _normalized_local(location: str) -> str:
    location = posixpath.normpath("/" + location.lstrip("/"))
    return "/" + location.lstrip("/")


# ---------------------------------------------------------------------- parsing


def source_entries(source: Any, argument: str = "source") -> list[str | ObjectStoragePath]:
    """
    Return ``source`` as a list of URIs or ``ObjectStoragePath`` objects.

    A string holding a list literal (e.g. a rendered XCom of URIs) is read as that list.

    :param source: a URI (glob, prefix or one object), an ``ObjectStoragePath``, or a list of those.
    :param argument: the argument's name, for error messages.
    :raises DeepgramConfigurationError: saying what is wrong.
    """
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(source, str):
        stripped = source.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            try:
                parsed = ast.literal_eval(stripped)
            except (ValueError, SyntaxError):
                raise DeepgramConfigurationError(f"{argument} {source!r} looks like a list but is not one") from None
            return source_entries(list(parsed), argument)
        return [stripped] if stripped else []
    if isinstance(source, ObjectStoragePath):
        return [source]
    if isinstance(source, (list, tuple)):
        entries: list[str | ObjectStoragePath] = []
        for index, entry in enumerate(source):
            if isinstance(entry, ObjectStoragePath):
                entries.append(entry)
            elif isinstance(entry, str) and entry.strip():
                entries.append(entry.strip())
            else:
                raise DeepgramConfigurationError(
                    f"{argument}[{index}] must be a URI string or ObjectStoragePath, got {entry!r}"
                )
        return entries
    raise DeepgramConfigurationError(
        f"{argument} must be a URI, an ObjectStoragePath or a list of those, got {type(source).__name__}"
    )


def is_pattern(entry: str | ObjectStoragePath) -> bool:
    """Return True for what may name several objects: a glob or a folder (``.../``)."""
    text = str(entry)
    return text.endswith("/") or any(character in text for character in GLOB_CHARACTERS)


def conn_id_in_uris(entries: Iterable[str | ObjectStoragePath], argument: str = "source") -> str | None:
    """Return the storage connection named in the URIs (``s3://conn@bucket/...``), if they agree on one."""
    conn_ids = {conn_id for conn_id in (uri_conn_id(entry) for entry in entries) if conn_id}
    if len(conn_ids) > 1:
        raise DeepgramConfigurationError(
            f"{argument} names several storage connections ({', '.join(sorted(conn_ids))}); "
            f"give {argument}_conn_id, or score each connection's objects in its own task"
        )
    return next(iter(conn_ids), None)


def describe_entries(entries: list[Any]) -> str:
    """A short description of ``source`` entries for log lines (patterns, never document text)."""
    if not entries:
        return "(no URI given)"
    return first_and_more([str(entry) for entry in entries])


def parse_shard(shard: Any) -> tuple[int, int] | None:
    """
    Return ``(index, count)`` of a shard given as ``"i/n"``, ``[i, n]`` or ``{"index": i, "count": n}``.

    :raises DeepgramConfigurationError: for anything else, or ``i`` outside ``0..n-1``.
    """
    if shard is None or shard == "":
        return None
    try:
        if isinstance(shard, str):
            index_text, _, count_text = shard.partition("/")
            index, count = int(index_text), int(count_text)
        elif isinstance(shard, dict):
            index, count = int(shard["index"]), int(shard["count"])
        elif isinstance(shard, (list, tuple)) and len(shard) == 2:
            index, count = int(shard[0]), int(shard[1])
        else:
            raise TypeError
    except (TypeError, ValueError, KeyError):
        raise DeepgramConfigurationError(
            f'shard must be "i/n", [i, n] or {{"index": i, "count": n}}, got {shard!r}'
        ) from None
    if count < 1 or not 0 <= index < count:
        raise DeepgramConfigurationError(f"shard {shard!r} must have 0 <= index < count")
    return index, count


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """Return True when the object ``name`` belongs to ``shard`` (a stable hash of the name, modulo the count)."""
    if shard is None:
        return True
    index, count = shard
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count == index


# ---------------------------------------------------------------------- listing


def list_objects(
    entries: Iterable[str | ObjectStoragePath],
    conn_id: str | None = None,
    *,
    keep_missing: bool = True,
    log: Logger | None = None,
) -> tuple[list[str], list[str]]:
    """
    Expand ``source`` entries into the sorted, de-duplicated names of the objects they name.

    Each entry is one object (when an object of that exact name exists, even if the name
    holds glob characters), a glob (``*``, ``?``, ``[``, ``**``), a folder or prefix (every
    object under it, recursively). Names starting with ``_`` or ``.`` below a folder or glob
    (Spark/Hadoop markers such as ``_SUCCESS``, ``.crc`` checksums, hidden files) are left
    out, with a log line (:mod:`.listing`). Only regular files (and symlinks to them) are
    documents: named pipes, sockets and devices are skipped with a log line, and local
    symlinked folders are never entered (a symlink loop cannot make listing endless).

    :param entries: URIs or ``ObjectStoragePath`` objects.
    :param conn_id: the storage connection; overrides one given in the URI.
    :param keep_missing: keep a named object that does not exist in ``names``, so that
        reading it fails naming it (the operator); False counts it as unmatched (the sensor).
    :param log: where to log what was skipped.
    :return: ``(names, unmatched)``: the objects, and the entries that matched nothing.
    :raises DeepgramConfigurationError: naming a storage connection that does not exist.
    :raises DeepgramError: naming the entry when the storage cannot be listed.
    """
    listing, unmatched = list_object_versions(entries, conn_id, keep_missing=keep_missing, log=log, versions=False)
    return list(listing), unmatched


def list_object_versions(
    entries: Iterable[str | ObjectStoragePath],
    conn_id: str | None = None,
    *,
    keep_missing: bool = True,
    log: Logger | None = None,
    versions: bool = True,
) -> tuple[dict[str, str | None], list[str]]:
    """
    :func:`list_objects` with each object's version, as the listing gives it (no read, no GET).

    The version is what the store reports: ETag (S3, Azure), generation (GCS), else size and
    modification time (local files: ``os.stat``); see :func:`object_version`. An object named
    explicitly costs one ``info`` (a HEAD) on object stores, as its existence check did before.

    :param versions: False gives None for every version (a plain listing, one string per object).
    :return: ``({name: version or None}, unmatched)``, names sorted.
    """
    found: dict[str, str | None] = {}
    unmatched: list[str] = []
    entries = list(entries)
    checked: set[str] = set()
    for entry in entries:
        named = conn_id or uri_conn_id(entry)
        if named and named not in checked:
            check_storage_connection(named, f"source {entry}")
            checked.add(named)
    for entry in entries:
        try:
            matches, exists = _expand(entry, conn_id, log, versions)
        except DeepgramError:
            raise
        except Exception as exc:  # storage backends raise their own families (botocore, OSError, ...)
            raise DeepgramError(f"Could not list source {entry}: {type(exc).__name__}: {exc}") from exc
        found.update(matches)
        if matches:
            continue
        if exists or is_pattern(entry) or not keep_missing:
            unmatched.append(str(entry))  # a glob, or a folder with nothing in it
        else:
            found[document_name(storage_path(entry, conn_id))] = None  # gone: reading it says so
    return {name: found[name] for name in sorted(found)}, unmatched


def object_version(info: dict[str, Any]) -> str:
    """
    The version of an object in an fsspec ``info`` dict: what changes when its content changes.

    ``generation`` (GCS), ETag (S3, Azure; ``etag``), else ``size`` and modification time.
    GCS lists an ``etag`` too, but its ``generation`` is the object's version (new on every write),
    so it comes first; S3 and Azure list no ``generation``.
    """
    for key in ("generation", "ETag", "etag"):
        value = info.get(key)
        if value:
            return f"{key.lower()}={str(value).strip(chr(34))};size={info.get('size')}"
    modified = next((info[key] for key in ("mtime", "LastModified", "last_modified", "updated") if info.get(key)), "")
    return f"size={info.get('size')};mtime={modified}"


def _expand(
    entry: str | ObjectStoragePath, conn_id: str | None, log: Logger | None, versions: bool
) -> tuple[dict[str, str | None], bool]:
    """Return ``{name: version}`` of what ``entry`` matches, and whether the entry itself exists (markers left out, logged)."""
    skipped = SkippedNames()
    names, exists = _expand_skipping(entry, conn_id, log, versions, skipped)
    if skipped.count and log is not None:
        log.info("%s", skipped.describe(str(entry)))
    return names, exists


def _expand_skipping(
    entry: str | ObjectStoragePath, conn_id: str | None, log: Logger | None, versions: bool, skipped: SkippedNames
) -> tuple[dict[str, str | None], bool]:
    path = storage_path(entry, conn_id)
    if (path.protocol or "file") == "file":
        return _expand_local(_normalized_local(path.path), log, versions, skipped)
    fs = path.fs
    # Object stores cache listings (s3fs's dircache) in a filesystem instance that lives as
    # long as the process: without this, a second look would not see new objects.
    fs.invalidate_cache()
    protocol = path.protocol or "file"
    location = path.path
    stripped = location.rstrip("/") or "/"
    root, explicit = stripped, None
    if not location.endswith("/") and fs.exists(location):
        if fs.isdir(location):
            matches = fs.find(stripped, detail=versions)
        else:
            info = fs.info(location) if versions else None
            return _documents_only({location: info}, protocol, log, explicit=True), True
    elif location.endswith("/"):
        if not fs.exists(stripped):
            return {}, False
        matches = fs.find(stripped, detail=versions)
    elif is_glob(location):
        matches = fs.glob(location, detail=versions)
        root, explicit = glob_root(location), explicit_prefix(location)
    else:
        # A key prefix that is not a folder, e.g. s3://bucket/in/2024-01-
        matches = fs.glob(location + "*", detail=versions)
        root, explicit = posixpath.dirname(location), explicit_prefix(location)
    if not isinstance(matches, dict):
        matches = dict.fromkeys(matches)
    kept = {match: info for match, info in matches.items() if not skipped_below(match, root, explicit, skipped)}
    return _documents_only(kept, protocol, log, explicit=False), False


def _expand_local(
    location: str, log: Logger | None, versions: bool, skipped: SkippedNames
) -> tuple[dict[str, str | None], bool]:
    """
    :func:`_expand` for local paths, with the standard library (one path string per file).

    fsspec's local listing builds an info dict per file first: at 100k files that alone is tens
    of MB, so a big local folder would cost memory in proportion to its size twice over.
    Folders and globs are walked without entering symlinked folders (:func:`.listing.walk_local`).
    """
    matches: Iterable[str]
    if os.path.exists(location):
        if not os.path.isdir(location):
            return _documents_only({location: None}, "file", log, explicit=True, versions=versions), True
        matches = walk_local(location, skipped)
    elif is_glob(location):
        matches = walk_local(glob_root(location), skipped, pattern=location)
    else:
        folder, prefix = os.path.split(location)  # a name prefix, e.g. /data/in/2024-01-
        matches = walk_local(folder, skipped, pattern=os.path.join(glob.escape(folder), glob.escape(prefix) + "*"))
    return _documents_only(dict.fromkeys(matches), "file", log, explicit=False, versions=versions), False


def _documents_only(
    matches: dict[str, dict[str, Any] | None],
    protocol: str,
    log: Logger | None,
    *,
    explicit: bool,
    versions: bool = False,
) -> dict[str, str | None]:
    """Turn storage locations into ``{name: version}``, keeping regular files only (local storage can hold other kinds)."""
    names: dict[str, str | None] = {}
    for match, info in matches.items():
        if protocol == "file":
            local = _normalized_local(match)
            kind, version = _local_kind_and_version(local)
            if kind != "file" and not explicit:  # named explicitly, reading it fails naming what it is
                # A folder found by a glob is not a document either, but saying so for each is noise.
                if log is not None and kind != "folder":
                    log.warning("Skipping %s: %s, not a regular file", f"file://{local}", kind)
                continue
            names[f"file://{local}"] = version if versions else None
        else:
            if info is not None and info.get("type") == "directory":
                continue
            names[f"{protocol}://{match.lstrip('/')}"] = object_version(info) if info is not None else None
    return names


def _local_kind(location: str) -> str:
    """What a local path is, following symlinks: ``file``, ``folder``, ``named pipe``, ``socket``, ..."""
    return _local_kind_and_version(location)[0]


def _local_kind_and_version(location: str) -> tuple[str, str | None]:
    """:func:`_local_kind` and the file's version (size and modification time), from one ``os.stat``."""
    try:
        status = os.stat(location)
    except FileNotFoundError:
        return "file", None  # vanished since listing: reading it will say so
    except OSError as exc:
        return f"unreadable ({type(exc).__name__})", None
    mode = status.st_mode
    if stat.S_ISREG(mode):
        return "file", f"size={status.st_size};mtime_ns={status.st_mtime_ns}"
    if stat.S_ISDIR(mode):
        return "folder", None
    if stat.S_ISFIFO(mode):
        return "named pipe", None
    if stat.S_ISSOCK(mode):
        return "socket", None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device", None
    return "special file", None


# ---------------------------------------------------------------------- reading


class ObjectUnavailableError(DocumentReadError):
    """The storage could not give an object (gone, unreachable): not its content's fault, so a later run retries."""

    def __reduce__(self):
        return (ObjectUnavailableError, (self.source, self.reason))


def read_document(uri: str | ObjectStoragePath, conn_id: str | None = None) -> str:
    """
    Read one object as UTF-8 text (a UTF-8 byte-order mark is dropped; ``.gz``/``.bz2``/``.zst`` decompressed).

    :raises DocumentReadError: naming the object, when it is missing, not a regular file,
        unreadable or not UTF-8.
    """
    path = storage_path(uri, conn_id)
    name = document_name(path)
    if (path.protocol or "file") == "file":
        kind = _local_kind(_normalized_local(path.path))
        if kind == "folder":
            raise DocumentReadError(name, "is a folder, not an object")
        if kind != "file":  # opening a named pipe would wait forever for a writer
            raise DocumentReadError(name, f"is a {kind}, not a regular file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ObjectUnavailableError(name, OBJECT_NOT_FOUND) from None
    except IsADirectoryError:
        raise DocumentReadError(name, "is a folder, not an object") from None
    except Exception as exc:  # storage backends raise their own families (botocore, OSError, ...)
        raise ObjectUnavailableError(name, f"could not read object: {type(exc).__name__}: {exc}") from None
    return decode_text(name, decompressed_bytes(data, name))


def decode_text(name: str, data: bytes) -> str:
    """Decode bytes as UTF-8 or raise :class:`DocumentReadError` naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise DocumentReadError(
            name, f"not valid UTF-8 text (byte 0x{bad} at offset {exc.start}); convert it to UTF-8"
        ) from None


@dataclass(frozen=True)
class Document:
    """
    One document, read (or failed to read).

    :param source: the document's name (a URI without connection id, ``<uri>#<line>``,
        ``<key_namespace>#<key>``, or ``text[i]``).
    :param text: its text, or None when reading failed.
    :param error: why reading failed, or None.
    :param record_key: the record's key (``id_field`` value, line or row number); None for a whole object.
    :param location: where it was read: ``<uri>#<data row number>``, ``<uri>``, ``sql://<conn>#<row>``.
    :param container: the object (or query) it was read from; None for inline text.
    :param transient: the error is the storage's (not found, unreachable), not the content's: a later
        run reads it again.
    :param entity: a record named by its own id in a key namespace (not by its object).
    :param cause: what was wrong with the content, without where (``error`` says where too).
    """

    source: str
    text: str | None
    error: str | None = None
    record_key: str | None = None
    location: str | None = None
    container: str | None = None
    transient: bool = False
    entity: bool = False
    cause: str | None = None


def read_objects(
    names: Iterable[str],
    conn_id: str | None = None,
    *,
    read_ahead: int = DEFAULT_READ_AHEAD,
) -> Generator[Document, None, None]:
    """
    Read objects in order, with up to ``read_ahead`` reads running ahead in threads.

    :param names: the objects to read, as :func:`list_objects` names them.
    :param conn_id: the storage connection.
    :param read_ahead: how many reads may run ahead of the consumer.
    """
    window: deque[tuple[str, Future]] = deque()
    iterator = iter(names)
    with ThreadPoolExecutor(max_workers=max(1, min(read_ahead, MAX_READ_THREADS)), thread_name_prefix="read") as pool:
        try:
            while True:
                while len(window) < read_ahead:
                    name = next(iterator, None)
                    if name is None:
                        break
                    window.append((name, pool.submit(read_document, name, conn_id)))
                if not window:
                    return
                name, future = window.popleft()
                try:
                    yield Document(source=name, text=future.result(), location=name, container=name)
                except DocumentReadError as error:
                    yield Document(
                        source=name,
                        text=None,
                        error=error.reason,
                        location=name,
                        container=name,
                        transient=isinstance(error, ObjectUnavailableError),
                    )
        finally:
            for _, future in window:
                future.cancel()


# ---------------------------------------------------------------------- a task's documents


@dataclass(frozen=True)
class DocumentSource:
    """
    What one task run scores: inline texts, the objects that ``source`` entries name, or SQL rows.

    Objects whose name ends ``.jsonl``/``.ndjson``, ``.csv``, ``.tsv`` or ``.parquet`` (each
    optionally ``.gz``) are record files (:mod:`airflow_provider_dgsentiment.storage.records`).

    **Document names** (the ``source`` column, XCom items):

    - a text object: its URI;
    - a record keyed by its ``id_field`` with a ``key_namespace``: ``<key_namespace>#<key>``, the
      same document in every object and run that names the key in that namespace;
    - a record keyed by its line or row number (no ``id_field``, or a bad id), or keyed without a
      namespace: ``<object URI>#<key>``, scoped to its object;
    - a SQL row: ``sql://<sql_conn_id>/<id_field>#<key>`` (0.2's name), or ``<key_namespace>#<key>``
      when a namespace is given.

    Plain data, so that a trigger can carry it (:meth:`to_json`); inline texts never travel.

    :param entries: ``source`` entries as strings (URIs, globs, prefixes).
    :param conn_id: the storage connection; None uses the one named in the URIs.
    :param texts: inline texts (``text=``), or None.
    :param stored_prefix: prepended to a document's name to make the ``source`` stored in SQL.
    :param shard: ``(index, count)``: only the objects whose name hashes to ``index``.
    :param format: ``"auto"`` (by extension), ``"text"``, ``"jsonl"``, ``"csv"`` or ``"parquet"``.
    :param text_field: the field (or column, or dotted path) of a record to score.
    :param id_field: the field (or column, or dotted path) that keys a record; None: its 1-based line or row number.
    :param sql: a SELECT whose rows are the documents, or None.
    :param sql_conn_id: the connection (any ``DbApiHook``) to run ``sql`` on.
    :param key_namespace: the namespace of records keyed by ``id_field`` (see the names above); for
        the sensor's look, None matches reads in any namespace.
    :param record_fields: the user named ``text_field`` or ``id_field``: a source none of whose
        objects is read as records is refused (:meth:`check_record_fields`).
    :param claims: a listing published by :func:`publish_listing` (or the sensor's ``claims=``): the objects are
        taken from it in claimed batches (:class:`~.work_claims.ClaimedNames`), never listed.
    :param claims_conn_id: the SQL connection holding the listing (the results database).
    :param claim_holder: who claims: the task (the same on a retry, so it takes its batches back).
    """

    entries: tuple[str, ...] = ()
    conn_id: str | None = None
    texts: tuple[str, ...] | None = None
    stored_prefix: str = ""
    shard: tuple[int, int] | None = None
    single_text: bool = False
    #: How the user wrote a ``source`` that names no entry at all, for messages.
    given_as: str | None = None
    format: str = "auto"
    text_field: str = "text"
    id_field: str | None = None
    sql: str | None = None
    sql_conn_id: str | None = None
    key_namespace: str | None = None
    record_fields: bool = False
    claims: str | None = None
    claims_conn_id: str | None = None
    claim_holder: str | None = None

    @classmethod
    def inline(cls, text: str | list[str], stored_prefix: str) -> DocumentSource:
        """Inline text: one string is named ``text``, a list ``text[0]``, ``text[1]``, ..."""
        if isinstance(text, str):
            return cls(texts=(text,), stored_prefix=stored_prefix, single_text=True)
        return cls(texts=tuple(text), stored_prefix=stored_prefix)

    @property
    def is_inline(self) -> bool:
        return self.texts is not None

    @property
    def is_sql(self) -> bool:
        return self.sql is not None

    @property
    def reads_objects(self) -> bool:
        """True when the documents come from objects (which a load history can track)."""
        return self.texts is None and self.sql is None

    def describe(self) -> str:
        """What was asked for, for log lines: a pattern or a count, never document text."""
        if self.texts is not None:
            return f"{len(self.texts)} inline text(s)"
        if self.sql is not None:
            return f"the rows of a query on {self.sql_conn_id}"
        shard = f" (shard {self.shard[0]}/{self.shard[1]})" if self.shard else ""
        if self.claims is not None:
            shard = f" (batches claimed from listing {self.claims})"
        if not self.entries and self.given_as is not None:
            return f"source {self.given_as} (no URI given)"
        return f"source {describe_entries(list(self.entries))}{shard}"

    def list_names(self, *, log: Logger | None = None) -> tuple[list[str] | ClaimedNames, list[str]]:
        """
        Return ``(names, unmatched entries)``.

        The names are the documents (inline texts, text objects) or the containers of
        documents (record files; for SQL one name for the query), in order (see :func:`list_objects`);
        with ``claims``, the batches claimed from the published listing as they are read.
        """
        if self.claims is not None:
            claims = WorkClaims(sql_hook(self.claims_conn_id or "", "sql_conn_id"), self.claims)
            return ClaimedNames(claims, self.claim_holder or "task"), []
        if self.texts is not None:
            names = ["text"] if self.single_text else [f"text[{index}]" for index in range(len(self.texts))]
            return names, []
        if self.sql is not None:
            return [self._sql_prefix()], []
        listing, unmatched, _ = self.list_versions(versions=False, log=log)
        return list(listing), unmatched

    def list_versions(
        self, *, versions: bool = True, keep_missing: bool = True, log: Logger | None = None
    ) -> tuple[dict[str, str | None], list[str], int]:
        """
        List the objects ``source`` names, with their versions (:func:`list_object_versions`).

        :return: ``({name: version} of this shard, unmatched entries, objects matched in every shard)``.
        """
        listing, unmatched = list_object_versions(
            self.entries, self.conn_id, keep_missing=keep_missing, log=log, versions=versions
        )
        matched = len(listing)
        if self.shard is not None:
            listing = {name: version for name, version in listing.items() if in_shard(name, self.shard)}
        return listing, unmatched, matched

    def reading_of(self, name: str) -> tuple[str, str | None]:
        """
        How the object ``name`` is read: ``(reading, key namespace)``, as the load history records it.

        The reading is ``"text"`` for a whole-object document, else the record format and fields
        (``"jsonl text_field=body id_field=id"``). The namespace is ``""`` where names do not use
        one (text objects, records keyed by line), else ``key_namespace`` (None: any, for a sensor).
        """
        kind = detect_format(name, self.format)
        if kind == "text":
            return "text", NO_NAMESPACE
        reading = f"{kind} text_field={self.text_field}"
        if self.id_field is None:
            return reading, NO_NAMESPACE
        return f"{reading} id_field={self.id_field}", self.key_namespace

    def holds_records(self, names: list[str] | ClaimedNames) -> bool:
        """True when ``names`` are not documents themselves but hold them (record files, a query), or are claimed."""
        if self.sql is not None or isinstance(names, ClaimedNames):
            return True
        return self.texts is None and any(detect_format(name, self.format) != "text" for name in names)

    def check_record_fields(self, names: list[str], log: Logger | None = None) -> None:
        """
        Say which objects are read whole as plain text though ``text_field`` or ``id_field`` was given.

        Called after listing, before any request. A folder may mix record files and text
        documents (the fields apply to the records), so this warns; a text document that holds
        JSON is refused when it is read (:meth:`_text_documents`), never paid for whole.
        """
        if not self.record_fields or self.texts is not None or self.sql is not None or log is None:
            return
        whole = [name for name in names if detect_format(name, self.format) == "text"]
        if whole:
            log.warning(
                "text_field/id_field name fields of records, but %d object(s) of %s are read whole as plain "
                "text (the fields do not apply to them): %s",
                len(whole),
                self.describe(),
                first_and_more(whole),
            )

    def documents(self, names: Iterable[str]) -> Generator[Document, None, None]:
        """Read the documents of ``names`` (from :meth:`list_names`) in order, each once."""
        if self.texts is not None:
            for name, text in zip(names, self.texts):
                yield Document(source=name, text=text, location=self.stored_prefix + name)
            return
        if self.sql is not None:
            yield from self._sql_documents()
            return
        # Runs of plain text objects are read with a read-ahead; ``names`` is taken lazily (claimed
        # batches are claimed as the reads reach them), a record file ending a run.
        iterator = iter(names)
        record_file: list[str] = []

        def text_run() -> Iterator[str]:
            for name in iterator:
                if detect_format(name, self.format) != "text":
                    record_file.append(name)
                    return
                yield name

        while True:
            yield from self._text_documents(text_run())
            if not record_file:
                return
            name = record_file.pop()
            yield from self._record_documents(name, detect_format(name, self.format))

    def _text_documents(self, names: Iterable[str]) -> Generator[Document, None, None]:
        """
        Read plain-text objects; with ``text_field``/``id_field`` given, one holding JSON fails unsent.

        Such an object is an export of records under a name that is not read as records
        (``export.txt``, ``dump.data``): scoring it whole would pay for its JSON syntax and ignore
        the fields, so it fails, named, before any request for it.
        """
        for document in read_objects(names, self.conn_id):
            if self.record_fields and document.text is not None and document.text.lstrip()[:1] in ("{", "["):
                yield dataclasses.replace(document, text=None, error=HOLDS_JSON, cause=HOLDS_JSON)
            else:
                yield document

    def _record_documents(self, name: str, kind: str) -> Generator[Document, None, None]:
        path = storage_path(name, self.conn_id)
        if (path.protocol or "file") == "file":
            what = _local_kind(_normalized_local(path.path))
            if what != "file":
                yield Document(source=name, text=None, error=f"is a {what}, not a regular file", container=name)
                return
        try:
            if not path.exists():
                yield Document(source=name, text=None, error=OBJECT_NOT_FOUND, container=name, transient=True)
                return
        except Exception as exc:  # storage backends raise their own families
            error = f"could not read object: {type(exc).__name__}: {exc}"
            yield Document(source=name, text=None, error=error, container=name, transient=True)
            return
        records = iter_file_records(path, kind, text_field=self.text_field, id_field=self.id_field, name=name)
        try:
            for record in records:
                yield self._record_document(record, name, f"{name}#", f"{name}#{record.number}")
        except RecordFileError as error:  # the whole file: one failure, named by the object
            yield Document(source=name, text=None, error=error.reason, location=name, container=name)
        finally:
            records.close()

    def _record_document(self, record: Record, container: str, scoped_prefix: str, location: str) -> Document:
        """Name one record: by its namespace and key when it has both, else within its container."""
        entity = record.by_id and self.key_namespace is not None
        error = None
        if record.error is not None:
            where = f"{container} {record.location}" if entity else record.location
            error = f"{where}: {record.error}"
        return Document(
            source=f"{self.key_namespace}#{record.key}" if entity else f"{scoped_prefix}{record.key}",
            text=record.text,
            error=error,
            record_key=record.key,
            location=location,
            container=container,
            entity=entity,
            cause=record.error,
        )

    def _sql_prefix(self) -> str:
        return f"sql://{self.sql_conn_id}/{self.id_field or 'row'}"

    def _sql_documents(self) -> Generator[Document, None, None]:
        hook = sql_hook(self.sql_conn_id or "", "sql_source_conn_id")
        prefix = self._sql_prefix()
        records = iter_sql_records(
            hook, self.sql or "", text_field=self.text_field, id_field=self.id_field, batch_size=READ_BATCH_ROWS
        )
        try:
            for record in records:
                yield self._record_document(record, prefix, f"{prefix}#", f"sql://{self.sql_conn_id}#{record.number}")
        finally:
            records.close()

    def to_json(self) -> dict[str, Any]:
        """The source as trigger kwargs: plain JSON, never inline text."""
        if self.texts is not None:
            raise DeepgramError("Inline text is never handed to the triggerer")
        data = {
            "entries": list(self.entries),
            "conn_id": self.conn_id,
            "stored_prefix": self.stored_prefix,
            "shard": list(self.shard) if self.shard else None,
            "given_as": self.given_as,
            "format": self.format,
            "text_field": self.text_field,
            "id_field": self.id_field,
            "sql": self.sql,
            "sql_conn_id": self.sql_conn_id,
            "key_namespace": self.key_namespace,
            "record_fields": self.record_fields,
        }
        if self.claims is not None:  # only then: the kwargs of 0.2's triggers stay as they were
            data.update(claims=self.claims, claims_conn_id=self.claims_conn_id, claim_holder=self.claim_holder)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocumentSource:
        shard = data.get("shard")
        return cls(
            entries=tuple(str(entry) for entry in data.get("entries") or ()),
            conn_id=data.get("conn_id"),
            stored_prefix=str(data.get("stored_prefix") or ""),
            shard=(int(shard[0]), int(shard[1])) if shard else None,
            given_as=data.get("given_as"),
            format=str(data.get("format") or "auto"),
            text_field=str(data.get("text_field") or "text"),
            id_field=data.get("id_field"),
            sql=data.get("sql"),
            sql_conn_id=data.get("sql_conn_id"),
            key_namespace=data.get("key_namespace"),
            record_fields=bool(data.get("record_fields")),
            claims=data.get("claims"),
            claims_conn_id=data.get("claims_conn_id"),
            claim_holder=data.get("claim_holder"),
        )


# ---------------------------------------------------------------------- what to read


def plan_object_reads(
    source: DocumentSource,
    history: HistoryStore | None,
    *,
    retry_failed: bool = False,
    force: bool = False,
    keep_missing: bool = True,
    log: Logger | None = None,
) -> tuple[ReadPlan, list[str], int]:
    """
    List ``source``'s objects with their versions and decide which to read: the operator's run and
    the sensor's look both call this, so "new" means the same to both.

    :param source: the objects and how they are read (format, fields, key namespace).
    :param history: the load history of the destination, or None (read every object).
    :param retry_failed: read the objects whose last read had failures again.
    :param force: read every object (the versions are still listed, for the history to record).
    :param keep_missing: see :func:`list_objects`.
    :param log: where to log skipped special files.
    :return: ``(plan, unmatched entries, objects matched in every shard)``.
    """
    listing, unmatched, matched = source.list_versions(versions=history is not None, keep_missing=keep_missing, log=log)
    return plan_listed_reads(source, listing, history, retry_failed=retry_failed, force=force), unmatched, matched


def plan_listed_reads(
    source: DocumentSource,
    listing: dict[str, str | None],
    history: HistoryStore | None,
    *,
    retry_failed: bool = False,
    force: bool = False,
) -> ReadPlan:
    """
    Decide which objects of ``listing`` (``{name: version}``, listed already: by this run, or by
    whoever published the batch it claimed) to read, each by how ``source`` reads it (:func:`plan_reads`).
    """
    readings = {name: source.reading_of(name) for name in listing}
    return plan_reads(listing, readings, history, retry_failed=retry_failed, force=force)


# ---------------------------------------------------------------------- the sensor's look


@dataclass(frozen=True)
class SensedObjects:
    """
    What one look at the storage found.

    :param matched: how many objects match the path.
    :param uris: the objects that count, sorted: every match, or those the operator would read.
    :param scored: how many matches the load history holds unchanged (0 when not checked).
    :param records: documents the load history knows in the objects that count (their last read).
    :param unknown: objects that count which were never read (their documents are not known yet).
    :param versions: ``{uri: version}`` of the objects that count, as the listing gave them (what
        the sensor publishes as the run's listing, ``claims=``).
    """

    matched: int
    uris: list[str] = field(default_factory=list)
    scored: int = 0
    records: int = 0
    unknown: int = 0
    versions: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)


def find_objects(
    source: Any,
    conn_id: str | None = None,
    *,
    sql_conn_id: str | None = None,
    averages_table: str | None = None,
    log: Logger | None = None,
    format: str = "auto",
    text_field: str = "text",
    id_field: str | None = None,
    key_namespace: str | None = None,
    results_path: str | None = None,
    results_conn_id: str | None = None,
) -> SensedObjects:
    """
    List the objects ``source`` matches and, with ``sql_conn_id`` (or ``results_path`` alone), keep
    those the operator would read.

    This is the whole of one poke, in one blocking call: the sensor calls it in the
    worker, a trigger with ``asyncio.to_thread``. With ``sql_conn_id`` the decision is
    :func:`plan_object_reads` over the load history of ``averages_table``, the operator's own:
    objects new or changed since a complete read with the same reading options count; objects read
    unchanged (scored, empty or failed alike) do not. Missing tables mean nothing was read yet.
    With ``results_path`` and no ``sql_conn_id`` the load history is the one beside the results
    (:mod:`~airflow_provider_dgsentiment.storage.object_history`), read only, loads only.

    :param source: a URI glob, prefix or object, an ``ObjectStoragePath``, or a list of those.
    :param conn_id: the storage connection; None uses the one in each URI (or the scheme's default).
    :param sql_conn_id: a SQL connection holding the operator's tables; None counts every match.
    :param averages_table: the averages table (``name`` or ``schema.name``) the operator writes.
    :param log: where to log skipped special files.
    :param format: the operator's ``format``.
    :param text_field: the operator's ``text_field``.
    :param id_field: the operator's ``id_field``.
    :param key_namespace: the operator's ``key_namespace``; None matches reads in any namespace.
    :param results_path: the operator's ``results_path``: its load history decides when there is no ``sql_conn_id``.
    :param results_conn_id: the operator's ``results_conn_id``.
    :raises DeepgramConfigurationError: for a bad ``source``.
    :raises DeepgramError: naming the entry when the storage cannot be listed.
    """
    entries = source_entries(source)
    if not entries:
        raise DeepgramConfigurationError("source must name a URI, a glob or a prefix, got nothing")
    objects = DocumentSource(
        entries=tuple(str(entry) for entry in entries),
        conn_id=conn_id or None,
        format=format,
        text_field=text_field,
        id_field=id_field,
        key_namespace=key_namespace,
    )
    if sql_conn_id:
        with WarehouseWriter(sql_conn_id, averages_table=averages_table or DEFAULT_AVERAGES_TABLE) as writer:
            plan, _, matched = plan_object_reads(objects, LoadHistory(writer), keep_missing=False, log=log)
    elif results_path:
        history = ObjectLoadHistory(results_root(results_path, results_conn_id or None))
        history.prepare(documents=False, compact=False)
        plan, _, matched = plan_object_reads(objects, history, keep_missing=False, log=log)
    else:
        names, _ = list_objects(entries, conn_id or None, keep_missing=False, log=log)
        return SensedObjects(matched=len(names), uris=names, versions=dict.fromkeys(names))
    return SensedObjects(
        matched=matched,
        uris=list(plan.to_read),
        scored=len(plan.unchanged),
        records=plan.known_records,
        unknown=plan.unknown_objects,
        versions=dict(plan.to_read),
    )


def publish_listing(
    source: Any,
    *,
    sql_conn_id: str,
    listing: str,
    source_conn_id: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """
    List ``source`` once and publish its objects as claimable batches (a planning task calls it).

    :param source: the operator's ``source`` (URI, glob, prefix or a list of those).
    :param sql_conn_id: the results database (the scoring tasks' ``sql_conn_id``).
    :param listing: the listing's id, e.g. ``"<dag_id>/<run_id>"``; publishing it again keeps
        the first listing (a retried planner hands out the same batches).
    :param source_conn_id: the storage connection; default the one named in the URIs.
    :param batch_size: object names per claimed batch.
    :return: ``{"listing": id, "objects": n, "batches": n}`` (small enough for XCom).
    """

    def names() -> dict[str, str | None]:
        entries = source_entries(source)
        return list_object_versions(entries, source_conn_id or conn_id_in_uris(entries))[0]

    return publish_names(names, sql_conn_id=sql_conn_id, listing=listing, batch_size=batch_size)
