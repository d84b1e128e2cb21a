"""Find and read the text documents to score, from any ``ObjectStoragePath`` scheme.

A ``source`` is a URI of one object (``file:///data/a.txt``, ``s3://conn@bucket/key``),
a glob (``s3://bucket/in/*.txt``, ``file:///data/**/*.txt``), a prefix or folder
(``s3://bucket/in/``), or a list of those. :func:`list_documents` turns it into
sorted, de-duplicated URIs; :func:`iter_document_texts` reads them with a bounded
read-ahead, so slow object stores do not starve the scorer and memory stays flat.

Document names (``source`` in tables and XCom) are URIs without the connection id:
``s3://bucket/key``, ``file:///abs/path``.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.exceptions import DocumentReadError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

GLOB_CHARACTERS = frozenset("*?[")
#: Why an empty or whitespace-only document is skipped without a request.
SKIP_EMPTY = "empty document"
#: Objects read ahead of the scorer at most.
DEFAULT_READ_AHEAD = 32


def fingerprint(text: str) -> str:
    """Return the sha256 hex digest of the text's UTF-8 bytes (the document's content key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def storage_path(uri: str | ObjectStoragePath, conn_id: str | None = None) -> ObjectStoragePath:
    """Return ``uri`` as an ``ObjectStoragePath`` (``conn_id`` wins over one in the URI)."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(uri, ObjectStoragePath) and conn_id is None:
        return uri
    if conn_id is None:
        # Airflow 2 would take conn_id=None as "no connection" and drop one named in the URI.
        return ObjectStoragePath(str(uri))
    if conn_id is None:
        # Airflow 2's ObjectStoragePath drops the URI's conn id when given conn_id=None.
        return ObjectStoragePath(str(uri))
    return ObjectStoragePath(str(uri), conn_id=conn_id)


def storage_conn_id(path: ObjectStoragePath) -> str | None:
    """Return the connection id of ``path``: an attribute on Airflow 3, a storage option on Airflow 2."""
    return getattr(path, "conn_id", None) or path.storage_options.get("conn_id")


def document_name(path: ObjectStoragePath) -> str:
    """Return the stable name of an object: its URI without the connection id."""
    protocol = path.protocol or "file"
    location = path.path
    if protocol == "file" and not location.startswith("/"):
        location = "/" + location
    return f"{protocol}://{location}"


def list_documents(
    source: str | ObjectStoragePath | Sequence[str | ObjectStoragePath],
    conn_id: str | None = None,
) -> list[str]:
    """
    Expand a source into the sorted, de-duplicated URIs of the objects it names.

    Each entry is a glob (``*``, ``?``, ``[``, ``**``), a folder or prefix (every object
    under it, recursively), or one object. Hidden objects (name starting with ``.``)
    are left out of globs and folders. An entry that matches nothing adds nothing: the
    caller decides whether that is an error.

    :param source: a URI, an ``ObjectStoragePath``, or a list of those.
    :param conn_id: the storage connection; overrides one given in the URI.
    """
    entries = [source] if isinstance(source, (str,)) or not isinstance(source, Sequence) else list(source)
    found: dict[str, None] = {}
    for entry in entries:
        for name in _expand(entry, conn_id):
            found[name] = None
    return sorted(found)


def _expand(entry: str | ObjectStoragePath, conn_id: str | None) -> list[str]:
    path = storage_path(entry, conn_id)
    fs = path.fs
    # Object stores cache listings (s3fs's dircache) in a filesystem instance that lives as
    # long as the process: without this, a second look would not see new objects.
    fs.invalidate_cache()
    location = path.path
    protocol = path.protocol or "file"
    prefix = f"{protocol}://" + ("/" if protocol == "file" and not location.startswith("/") else "")
    if any(ch in location for ch in GLOB_CHARACTERS):
        matches = [m for m in fs.glob(location) if not fs.isdir(m)]
    elif location.endswith("/") or fs.isdir(location):
        matches = fs.find(location.rstrip("/")) if fs.exists(location.rstrip("/")) else []
    elif fs.exists(location):
        matches = [location]
    else:
        # A key prefix that is not a folder, e.g. s3://bucket/in/2024-01-
        matches = [m for m in fs.glob(location + "*") if not fs.isdir(m)]
    return [
        prefix + m.lstrip("/") if protocol != "file" else f"file://{_absolute(m)}" for m in matches if not _hidden(m)
    ]


def _absolute(location: str) -> str:
    return location if location.startswith("/") else "/" + location


def _hidden(location: str) -> bool:
    return location.rstrip("/").rsplit("/", 1)[-1].startswith(".")


def read_document(uri: str | ObjectStoragePath, conn_id: str | None = None) -> str:
    """
    Read one object as UTF-8 text (a UTF-8 byte-order mark is dropped).

    :raises DocumentReadError: naming the object, when it is missing, unreadable or not UTF-8.
    """
    path = storage_path(uri, conn_id)
    name = document_name(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DocumentReadError(name, "object not found") from None
    except IsADirectoryError:
        raise DocumentReadError(name, "is a folder, not an object") from None
    except Exception as exc:  # storage backends raise their own families (botocore, OSError, ...)
        raise DocumentReadError(name, f"could not read object: {type(exc).__name__}: {exc}") from None
    return decode_text(name, data)


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
class LoadedDocument:
    """
    One document, read (or failed to read).

    :param source: the document's name (URI without connection id, or ``text[i]``).
    :param text: its text, or None when reading failed.
    :param error: why reading failed, or None.
    """

    source: str
    text: str | None
    error: DocumentReadError | None = None

    @property
    def fingerprint(self) -> str | None:
        return fingerprint(self.text) if self.text is not None else None


def iter_document_texts(
    uris: Iterable[str],
    conn_id: str | None = None,
    *,
    read_ahead: int = DEFAULT_READ_AHEAD,
    reader: Any = None,
) -> Iterator[LoadedDocument]:
    """
    Read objects in order, with up to ``read_ahead`` reads running ahead in threads.

    :param uris: the objects to read, as named by :func:`list_documents`.
    :param conn_id: the storage connection.
    :param read_ahead: how many reads may run ahead of the consumer.
    :param reader: the function reading one URI (default :func:`read_document`).
    """
    read = reader or read_document
    window: deque[tuple[str, Future]] = deque()
    iterator = iter(uris)
    with ThreadPoolExecutor(max_workers=max(1, min(read_ahead, 16)), thread_name_prefix="read") as pool:
        while True:
            while len(window) < read_ahead:
                uri = next(iterator, None)
                if uri is None:
                    break
                window.append((uri, pool.submit(read, uri, conn_id)))
            if not window:
                return
            uri, future = window.popleft()
            try:
                yield LoadedDocument(source=uri, text=future.result())
            except DocumentReadError as error:
                yield LoadedDocument(source=error.source, text=None, error=error)
