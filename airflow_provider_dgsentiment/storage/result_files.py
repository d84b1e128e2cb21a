"""Per-document results as JSONL parts under ``results_path``, in any ``ObjectStoragePath`` storage.

Each task writes into a folder of its own, partitioned the way query engines read it::

    <results_path>/dag_id=<dag>/run_id=<run>/task_id=<task>/map_index=<i>/part-00000.jsonl

``map_index`` is ``-1`` for a task that is not mapped (Airflow's own value), so every task's
folder has the same depth and a mix of mapped and unmapped tasks under one prefix reads as one
set of hive partitions (DuckDB, Spark and Athena refuse folders of different depths).

One line per document of the run: the API's response shape plus ``source``, ``status``
(``"scored"``) and ``fingerprint``; or ``source``, ``status`` (``"failed"``) and ``error``;
or ``source``, ``status`` (``"skipped"``) and ``reason``. Every line also carries
``record_key`` and ``location`` (as the averages table does; None where they do not apply).

Durable across tries: every write is a part of its own (closed, so an object store holds it
at once), and a task try starts by reading the parts earlier tries left
(:meth:`ResultFiles.begin`). Their scored lines are kept and the run skips those documents
(no request is paid twice); failed and skipped lines, and a scored line repeated later, are
dropped by rewriting the parts that hold them. At the end the parts of every try hold each
document of the run once, and :meth:`ResultFiles.close` lists them all. Parts are numbered on
from the highest number found, so a part is never overwritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.storage.json_stream import read_json_lines, write_json_lines
from airflow_provider_dgsentiment.storage.sources import (
    check_storage_connection,
    document_name,
    results_root,
    uri_conn_id,
)
from airflow_provider_dgsentiment.storage.warehouse import RunIdentity

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

#: Documents per part; a part is one object (written as a stream, never held in memory whole).
DEFAULT_LINES_PER_PART = 10_000
PART_PATTERN = "part-*.jsonl"
PART_PREFIX = "part-"
PART_SUFFIX = ".jsonl"


def task_folder(
    results_path: str | ObjectStoragePath,
    conn_id: str | None,
    *,
    dag_id: str | None,
    run_id: str | None,
    task_id: str | None,
    map_index: int = -1,
) -> ObjectStoragePath:
    """The folder of one task's parts under ``results_path``."""
    folder = results_root(results_path, conn_id)
    for key, value in (("dag_id", dag_id), ("run_id", run_id), ("task_id", task_id)):
        folder = folder / f"{key}={_safe(value)}"
    return folder / f"map_index={-1 if map_index is None else map_index}"


def _safe(value: str | None) -> str:
    return (value or "none").replace("/", "_")


class ResultFiles:
    """
    Write one task's per-document result lines as JSONL parts, keeping what earlier tries wrote.

    Blocking I/O: the scoring run calls it from its storage thread (:meth:`held_fingerprint`
    only reads an in-memory dict).

    :param folder: the task's folder (:func:`task_folder`).
    :param lines_per_part: documents per part at most (a write of fewer lines is a part of its own).
    :param root: ``results_path`` (:func:`results_root`): where the load history lives without SQL.
    :param run: the task run the folder belongs to.
    """

    def __init__(
        self,
        folder: ObjectStoragePath,
        *,
        lines_per_part: int = DEFAULT_LINES_PER_PART,
        root: ObjectStoragePath | None = None,
        run: RunIdentity | None = None,
    ) -> None:
        self.folder = folder
        self.root = root
        self.run = run
        self.lines_per_part = max(1, lines_per_part)
        #: The parts holding this run's lines, in order: earlier tries' kept parts, then this try's.
        self.parts: list[ObjectStoragePath] = []
        self._next_number = 0
        #: Documents an earlier try scored: source -> (content fingerprint, the part holding the line).
        self._held: dict[str, tuple[str, ObjectStoragePath]] = {}
        #: Held documents this try wrote a line for again (their earlier line is dropped at the end).
        self._replaced: set[str] = set()

    @property
    def uris(self) -> list[str]:
        """The URIs of every part of the run so far, by part number."""
        return [document_name(part) for part in sorted(self.parts, key=_part_number)]

    @classmethod
    def for_task(
        cls,
        results_path: str,
        conn_id: str | None = None,
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int = -1,
    ) -> ResultFiles:
        """
        The writer of one task's parts (the operator's ``results_path`` and the task's identity).

        :raises DeepgramConfigurationError: when the storage connection (``conn_id``, or one named
            in ``results_path``) does not exist.
        """
        check_storage_connection(conn_id or uri_conn_id(results_path), f"results_path {results_path}")
        folder = task_folder(
            results_path, conn_id, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=int(map_index)
        )
        run = RunIdentity(dag_id=dag_id, task_id=task_id, run_id=run_id)
        return cls(folder, root=results_root(results_path, conn_id), run=run)

    def begin(self) -> int:
        """
        Read the parts earlier tries left; keep their scored lines, each document once.

        A part holding lines that are not kept (failed, skipped, unreadable, or a document
        scored again in a later part) is rewritten without them under a new number, then
        deleted. :return: how many documents the kept parts hold.
        """
        if not self.folder.exists():
            with self._writing("create"):
                self.folder.mkdir(parents=True, exist_ok=True)
            return 0
        earlier = sorted(self.folder.glob(PART_PATTERN), key=_part_number)
        self._next_number = max((_part_number(part) + 1 for part in earlier), default=0)
        last: dict[str, tuple[int, int, str]] = {}  # source -> (part, line, fingerprint) of its last scored line
        line_counts = []
        for part_index, part in enumerate(earlier):
            line_count = 0
            for line_index, line in enumerate(read_json_lines(part)):
                line_count += 1
                source = line.get("source") if isinstance(line, dict) else None
                if not isinstance(source, str):
                    continue
                if line.get("status") == "scored" and isinstance(line.get("fingerprint"), str):
                    last[source] = (part_index, line_index, line["fingerprint"])
                else:
                    last.pop(source, None)  # a later failure of the same document: score it again
            line_counts.append(line_count)
        kept_lines: list[dict[int, tuple[str, str]]] = [{} for _ in earlier]
        for source, (part_index, line_index, content) in last.items():
            kept_lines[part_index][line_index] = (source, content)
        for part_index, part in enumerate(earlier):
            kept: ObjectStoragePath | None = part
            if len(kept_lines[part_index]) < line_counts[part_index]:
                lines = [line for index, line in enumerate(read_json_lines(part)) if index in kept_lines[part_index]]
                kept = self._rewrite(part, lines)
            if kept is not None:
                self.parts.append(kept)
                for source, content in kept_lines[part_index].values():
                    self._held[source] = (content, kept)
        return len(self._held)

    def held_fingerprint(self, source: str) -> str | None:
        """The content fingerprint an earlier try scored ``source`` with, or None."""
        held = self._held.get(source)
        return held[0] if held is not None else None

    @contextmanager
    def _writing(self, action: str) -> Iterator[None]:
        """Turn "not allowed to write here" into an error naming the folder (a retry would not help)."""
        try:
            yield
        except PermissionError as exc:
            raise DeepgramConfigurationError(
                f"results_path cannot be written: could not {action} {document_name(self.folder)} "
                f"({exc.strerror or type(exc).__name__}); give a results_path (or results_conn_id) "
                "this task may write to"
            ) from exc

    def write(self, lines: list[dict[str, Any]]) -> None:
        """Write result lines as new parts of at most ``lines_per_part`` lines, each closed before returning."""
        for start in range(0, len(lines), self.lines_per_part):
            chunk = lines[start : start + self.lines_per_part]
            self.parts.append(self._write_part(chunk))
            for line in chunk:
                if line["source"] in self._held:
                    self._replaced.add(line["source"])

    def close(self) -> list[str]:
        """
        Drop the earlier lines of documents this try wrote again; return the URIs of every part of the run.

        Lines of documents this try did not reach or no longer has (a source that changed between
        tries, or objects the load history did not read again) stay: they are what was paid for.
        """
        dropped = set(self._replaced)
        affected = {id(self._held[source][1]): self._held[source][1] for source in dropped}
        for old in affected.values():
            lines = [
                line for line in read_json_lines(old) if isinstance(line, dict) and line.get("source") not in dropped
            ]
            new = self._rewrite(old, lines)
            position = self.parts.index(old)
            if new is None:
                del self.parts[position]
            else:
                self.parts[position] = new
        for source in dropped:
            del self._held[source]
        self._replaced.clear()
        return self.uris

    def _rewrite(self, part: ObjectStoragePath, lines: list[dict[str, Any]]) -> ObjectStoragePath | None:
        """Write ``lines`` as a new part (none when empty), then delete ``part``."""
        new = self._write_part(lines) if lines else None
        part.unlink()
        return new

    def _write_part(self, lines: list[dict[str, Any]]) -> ObjectStoragePath:
        path = self.folder / f"{PART_PREFIX}{self._next_number:05d}{PART_SUFFIX}"
        self._next_number += 1
        with self._writing("write a part in"):
            write_json_lines(path, lines)
        return path


def _part_number(part: ObjectStoragePath) -> int:
    digits = part.name[len(PART_PREFIX) : -len(PART_SUFFIX)]
    return int(digits) if digits.isdigit() else -1


def scored_line(
    source: str, fingerprint: str, result: dict[str, Any], *, record_key: str | None = None, location: str | None = None
) -> dict[str, Any]:
    return {
        "source": source,
        "record_key": record_key,
        "location": location,
        "status": "scored",
        "fingerprint": fingerprint,
        **result,
    }


def failed_line(
    source: str, error: str, *, record_key: str | None = None, location: str | None = None
) -> dict[str, Any]:
    return {"source": source, "record_key": record_key, "location": location, "status": "failed", "error": error}


def skipped_line(
    source: str, reason: str, *, record_key: str | None = None, location: str | None = None
) -> dict[str, Any]:
    return {"source": source, "record_key": record_key, "location": location, "status": "skipped", "reason": reason}
