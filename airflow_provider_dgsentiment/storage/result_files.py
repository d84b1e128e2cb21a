"""Per-document results as JSONL parts under ``results_path``, in any ``ObjectStoragePath`` storage.

Each task writes into a folder of its own, partitioned the way query engines read it::

    <results_path>/dag_id=<dag>/run_id=<run>/task_id=<task>/map_index=<i>/part-00000.jsonl

``map_index`` is ``-1`` for a task that is not mapped (Airflow's own value), so every task's
folder has the same depth and a mix of mapped and unmapped tasks under one prefix reads as one
set of hive partitions (DuckDB, Spark and Athena refuse folders of different depths).

One line per document of the run, in the order the documents settle: the API's response
shape plus ``source``, ``status`` (``"scored"``) and ``fingerprint``; or ``source``,
``status`` (``"failed"``) and ``error``; or ``source``, ``status`` (``"skipped"``) and
``reason``. Every line also carries ``record_key`` and ``location`` (as the averages table does;
None where they do not apply). A task try starts by deleting the parts already in its folder, so a retry or
a clear replaces them and no document appears twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.storage.sources import (
    check_storage_connection,
    document_name,
    storage_path,
    uri_conn_id,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

#: Documents per part; a part is one object (written as a stream, never held in memory whole).
DEFAULT_LINES_PER_PART = 10_000
PART_PATTERN = "part-*.jsonl"


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
    folder = storage_path(str(results_path).rstrip("/"), conn_id)
    for key, value in (("dag_id", dag_id), ("run_id", run_id), ("task_id", task_id)):
        folder = folder / f"{key}={_safe(value)}"
    return folder / f"map_index={-1 if map_index is None else map_index}"


def _safe(value: str | None) -> str:
    return (value or "none").replace("/", "_")


class ResultFiles:
    """
    Write one task's per-document result lines as JSONL parts.

    Blocking I/O: the scoring run calls it from its storage thread.

    :param folder: the task's folder (:func:`task_folder`).
    :param lines_per_part: documents per part.
    """

    def __init__(self, folder: ObjectStoragePath, *, lines_per_part: int = DEFAULT_LINES_PER_PART) -> None:
        self.folder = folder
        self.lines_per_part = max(1, lines_per_part)
        self.uris: list[str] = []
        self._file: Any = None
        self._lines_in_part = 0

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
        return cls(folder)

    def begin(self) -> int:
        """Delete the parts an earlier try of this task left; return how many were deleted."""
        deleted = 0
        with self._writing("create or clear"):
            if self.folder.exists():
                for part in sorted(self.folder.glob(PART_PATTERN)):
                    part.unlink()
                    deleted += 1
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
        return deleted

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
        """Append result lines, starting a new part every ``lines_per_part`` documents."""
        for line in lines:
            if self._file is None:
                self._open_part()
            self._file.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
            self._lines_in_part += 1
            if self._lines_in_part >= self.lines_per_part:
                self._close_part()

    def close(self) -> list[str]:
        """Finish the current part; return the URIs of every part written."""
        self._close_part()
        return list(self.uris)

    def _open_part(self) -> None:
        path = self.folder / f"part-{len(self.uris):05d}.jsonl"
        with self._writing("write a part in"):
            self._file = path.open("wb")
        self.uris.append(document_name(path))
        self._lines_in_part = 0

    def _close_part(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


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
