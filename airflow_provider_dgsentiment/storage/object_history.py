"""The load history beside the results in object storage, for runs that store results without a SQL database.

With ``results_path`` and no ``sql_conn_id`` the operator, the sensor and the event trigger keep the
load history of :mod:`~airflow_provider_dgsentiment.storage.load_history` as readable JSON lines under
the results' root, next to the ``dag_id=`` folders (query engines skip ``_``-prefixed folders)::

    <results_path>/_load_history/loads/       complete object reads (object, version, reading, counts)
    <results_path>/_load_history/documents/   scored documents (content fingerprint) and unscored ones
    <results_path>/_load_history/announced/   what each event trigger's watch announced

**The same decisions.** :class:`ObjectLoadHistory` answers the questions the SQL history answers
(``loads``, ``unscored``, ``stored_documents``) and records the same things (``record``), so
:func:`~airflow_provider_dgsentiment.storage.load_history.plan_reads` and the scoring run's
``decide`` are the one decision in both modes: an unchanged object is not read (no GET), a document
scored before with the same content is not sent again, in any later DAG run, and a known failure
is not re-sent.

**Two writers, no lost rows.** Nothing is ever rewritten in place: every write is a new object of
its own (``log-<time>-<random>.ndjson``, one per store of a task try), and readers merge every object
of a folder, the line with the latest ``at`` winning per key (an object's read, a document, a
watch's object). Any number of tasks may write at once. A task run that finds more than
:data:`COMPACT_AFTER` objects in a folder folds them into one ``snapshot-...ndjson`` (written before the
objects it replaces are deleted); the merge does not depend on which objects hold a line, so two
compactions at once lose nothing either, and a reader that finds an object gone re-lists. Reads per
run stay bounded: one listing and at most about :data:`COMPACT_AFTER` GETs per folder.

Every document the history knows is held in memory while a run uses it (about 430 bytes each,
``benchmarks/object_history.py``): a root scored millions of distinct documents into holds hundreds
of megabytes; past that, use a SQL database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.storage.json_stream import read_json_lines, write_json_lines
from airflow_provider_dgsentiment.storage.load_history import DOCUMENT_COUNTS, Load, LoadHistory, Unscored
from airflow_provider_dgsentiment.storage.warehouse import RunIdentity, StoredDocument, timestamp

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_dgsentiment.storage.warehouse import ScoredDocument, WarehouseWriter

#: The folder under the results' root that holds the history.
HISTORY_FOLDER = "_load_history"
LOADS_FOLDER = "loads"
DOCUMENTS_FOLDER = "documents"
ANNOUNCED_FOLDER = "announced"
#: Objects in a history folder past which a task run folds them into one snapshot.
COMPACT_AFTER = 32
#: Times a read starts over when an object it listed was removed by a compaction meanwhile.
READ_ATTEMPTS = 5

LOG_PREFIX = "log-"
SNAPSHOT_PREFIX = "snapshot-"
#: Not ".jsonl": a query over "results/**/*.jsonl" (hive partitions) reads the result parts only.
SUFFIX = ".ndjson"


class JsonLinesLog:
    """
    One history folder: append-only JSONL objects, merged by readers, folded by :meth:`compact`.

    :param folder: the folder (an ``ObjectStoragePath``).
    """

    def __init__(self, folder: ObjectStoragePath) -> None:
        self.folder = folder

    def objects(self) -> list[ObjectStoragePath]:
        """The folder's history objects, by name (snapshots and logs)."""
        # Object stores cache listings (s3fs's dircache) for the life of the process (a triggerer's):
        # other tasks' new objects must be seen.
        self.folder.fs.invalidate_cache()
        if not self.folder.exists():
            return []
        found = [path for path in self.folder.iterdir() if path.name.endswith(SUFFIX)]
        return sorted(found, key=lambda path: path.name)

    def read(self, fold: Callable[[dict[str, Any]], None]) -> list[ObjectStoragePath]:
        """
        Give every line of every object to ``fold``, in name order, streamed; return the objects read.

        An object removed between the listing and its GET (another task's compaction, which wrote its
        snapshot first) makes the read start over; folding is idempotent (the latest ``at`` wins), so
        lines folded twice change nothing and no line is missed.
        """
        for _ in range(READ_ATTEMPTS):
            objects = self.objects()
            try:
                for path in objects:
                    for line in _history_lines(path):
                        fold(line)
                return objects
            except FileNotFoundError:
                continue
        raise FileNotFoundError(f"{self.folder}: history objects kept vanishing while being read")

    def append(self, lines: Sequence[dict[str, Any]], prefix: str = LOG_PREFIX) -> ObjectStoragePath | None:
        """Write ``lines`` as a new object of their own (nothing when there are none)."""
        if not lines:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{prefix}{_compact_time()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        write_json_lines(path, lines)
        return path

    def compact(self, lines: Sequence[dict[str, Any]], replaced: Sequence[ObjectStoragePath]) -> None:
        """Write ``lines`` (the merge of ``replaced``) as a snapshot, then delete ``replaced``."""
        self.append(lines, prefix=SNAPSHOT_PREFIX)
        for path in replaced:
            try:
                path.unlink()
            except FileNotFoundError:  # another compaction removed it: its snapshot holds the lines
                pass


def _compact_time() -> str:
    return timestamp().replace("-", "").replace(":", "").replace("+0000", "Z")


def _history_lines(path: ObjectStoragePath) -> Iterator[dict[str, Any]]:
    """The history lines of ``path``; a line cut by a crash (not JSON) is skipped."""
    for line in read_json_lines(path):
        if isinstance(line, dict) and isinstance(line.get("at"), str):
            yield line


def keeping_latest(found: dict[tuple, dict[str, Any]], key: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    """A fold keeping in ``found`` the line with the latest ``at`` per ``key`` (a tie goes to the later line)."""

    def fold(line: dict[str, Any]) -> None:
        identity = tuple(line.get(name) for name in key)
        earlier = found.get(identity)
        if earlier is None or line["at"] >= earlier["at"]:
            found[identity] = line

    return fold


#: What the documents index holds per scored document: ``(at, fingerprint, sentiment, sentiment_score)``
#: (a tuple, not the line: a few hundred bytes a document instead of about 2 KB).
ScoredEntry = tuple[str, str, Any, Any]
LOAD_KEY = ("object", "reading", "key_namespace")


class ObjectLoadHistory:
    """
    The load history and the documents index in object storage, beside the results.

    Call :meth:`prepare` once (it reads the folders; a task run also compacts them) before the
    other methods. Blocking I/O: the scoring run calls it from its storage thread.

    :param root: the results' root (``results_path`` as an ``ObjectStoragePath``).
    :param run: the DAG, task and run ids recorded with every line.
    """

    def __init__(self, root: ObjectStoragePath, *, run: RunIdentity | None = None) -> None:
        self.root = root
        self.run = run or RunIdentity()
        folder = root / HISTORY_FOLDER
        self.destination = str(root)
        self._loads_log = JsonLinesLog(folder / LOADS_FOLDER)
        self._documents_log = JsonLinesLog(folder / DOCUMENTS_FOLDER)
        self._announced_log = JsonLinesLog(folder / ANNOUNCED_FOLDER)
        self._loads: dict[tuple, dict[str, Any]] | None = None
        self._scored: dict[str, ScoredEntry] = {}
        self._unscored: dict[str, dict[str, Any]] = {}
        self._documents_read = False

    @property
    def run_id(self) -> str | None:
        """The DAG run this history records for (its failures are not known failures to it)."""
        return self.run.run_id

    # ------------------------------------------------------------------ reading the folders

    def prepare(self, *, documents: bool = True, compact: bool = True) -> None:
        """
        Read the folders once; with ``compact``, fold a folder of more than :data:`COMPACT_AFTER` objects.

        :param documents: read the documents index too (the sensor needs only the loads).
        :param compact: fold crowded folders (a task run does; a sensor's look only reads).
        """
        self._loads = {}
        objects = self._loads_log.read(keeping_latest(self._loads, LOAD_KEY))
        if compact and len(objects) > COMPACT_AFTER:
            self._loads_log.compact(list(self._loads.values()), objects)
        if not documents:
            return
        objects = self._documents_log.read(self._fold_document)
        self._documents_read = True
        if compact and len(objects) > COMPACT_AFTER:
            scored = [
                {"kind": "scored", "source": source, "fingerprint": fingerprint}
                | {"sentiment": sentiment, "sentiment_score": score, "at": at}
                for source, (at, fingerprint, sentiment, score) in self._scored.items()
            ]
            self._documents_log.compact([*scored, *self._unscored.values()], objects)

    def _fold_document(self, line: dict[str, Any]) -> None:
        """Fold a document line in: the latest scoring per source; an unscored line unless scored later."""
        source = line.get("source")
        if not isinstance(source, str):
            return
        kind = line.get("kind")
        if kind == "scored":
            known = self._scored.get(source)
            if known is None or line["at"] >= known[0]:
                self._scored[source] = (
                    line["at"],
                    line["fingerprint"],
                    line.get("sentiment"),
                    line.get("sentiment_score"),
                )
            unscored = self._unscored.get(source)
            if unscored is not None and line["at"] >= unscored["at"]:
                del self._unscored[source]
        elif kind == "unscored":
            scoring = self._scored.get(source)
            failing = self._unscored.get(source)
            # A tie goes to the unscored line, written after the scored ones (as SQL mode's delete-then-insert).
            if (scoring is None or line["at"] >= scoring[0]) and (failing is None or line["at"] >= failing["at"]):
                self._unscored[source] = line

    def _ensure_read(self) -> None:
        if self._loads is None:
            self.prepare(compact=False)

    # ------------------------------------------------------------------ the SQL history's questions

    def loads(self, objects: Sequence[str]) -> dict[str, list[Load]]:
        """Return the complete reads of ``objects``, by object."""
        self._ensure_read()
        assert self._loads is not None
        wanted = set(objects)
        found: dict[str, list[Load]] = {}
        for line in self._loads.values():
            if line["object"] in wanted:
                counts = {what: int(line.get(what) or 0) for what in DOCUMENT_COUNTS}
                load = Load(
                    line["object"],
                    line["reading"],
                    line["key_namespace"],
                    line["version"],
                    **counts,
                    loaded_at=line["loaded_at"],
                    run_id=line.get("run_id"),
                )
                found.setdefault(line["object"], []).append(load)
        return found

    def unscored(self, sources: Iterable[str]) -> dict[str, Unscored]:
        """Return the unscored documents among ``sources``."""
        self._ensure_documents()
        found = {}
        for source in sources:
            line = self._unscored.get(source)
            if line is not None:
                found[source] = Unscored(
                    source,
                    line["status"],
                    line["fingerprint"],
                    line.get("error"),
                    line.get("record_key"),
                    line.get("location"),
                    line.get("run_id"),
                )
        return found

    def stored_documents(
        self, sources: Iterable[str], legacy_keys: Mapping[str, str] | None = None
    ) -> dict[str, StoredDocument]:
        """What earlier runs scored of ``sources`` (``legacy_keys``: 0.2 SQL rows only, none here)."""
        self._ensure_documents()
        found = {}
        for source in sources:
            entry = self._scored.get(source)
            if entry is not None:
                found[source] = StoredDocument(*entry[1:])
        return found

    def _ensure_documents(self) -> None:
        if not self._documents_read:
            self._ensure_read()
            self._documents_log.read(self._fold_document)
            self._documents_read = True

    # ------------------------------------------------------------------ writes

    def record(self, loads: Sequence[Load], unscored: Sequence[Unscored], scored: Sequence[ScoredDocument]) -> None:
        """
        Record complete reads, unscored documents and scored ones: the documents first, then the loads.

        Each is one new object (a load is written only after its documents, so a crash between the
        two leaves the object to be read again, never a document unrecorded). An unscored document
        keeps the ``first_seen`` and ``run_id`` of an earlier record with the same status and fingerprint.
        """
        self._ensure_documents()
        at = timestamp()
        run = {"dag_id": self.run.dag_id, "task_id": self.run.task_id}
        lines: list[dict[str, Any]] = [
            {
                "kind": "scored",
                "source": document.source,
                "fingerprint": document.fingerprint,
                "sentiment": document.result.average.sentiment,
                "sentiment_score": document.result.average.sentiment_score,
                "record_key": document.record_key,
                "location": document.location,
                **run,
                "run_id": self.run.run_id,
                "at": at,
            }
            for document in scored
        ]
        for document in unscored:
            earlier = self._unscored.get(document.source)
            same = earlier is not None and (earlier["status"], earlier["fingerprint"]) == (
                document.status,
                document.fingerprint,
            )
            lines.append(
                {
                    "kind": "unscored",
                    "source": document.source,
                    "status": document.status,
                    "fingerprint": document.fingerprint,
                    "error": document.error,
                    "record_key": document.record_key,
                    "location": document.location,
                    "first_seen": earlier["first_seen"] if same and earlier else at,
                    "last_seen": at,
                    **run,
                    "run_id": earlier.get("run_id") if same and earlier else self.run.run_id,
                    "at": at,
                }
            )
        self._documents_log.append(lines)
        for line in lines:
            self._fold_document(line)
        load_lines = [
            {
                "kind": "load",
                "object": load.object,
                "reading": load.reading,
                "key_namespace": load.key_namespace,
                "version": load.version,
                "outcome": load.outcome,
                **{what: getattr(load, what) for what in DOCUMENT_COUNTS},
                "loaded_at": load.loaded_at,
                **run,
                "run_id": self.run.run_id,
                "at": at,
            }
            for load in loads
        ]
        self._loads_log.append(load_lines)
        assert self._loads is not None
        fold = keeping_latest(self._loads, LOAD_KEY)
        for line in load_lines:
            fold(line)

    # ------------------------------------------------------------------ an event trigger's announcements

    def announced(self, watch: str, objects: Iterable[str]) -> dict[str, str]:
        """``{object: version}`` that ``watch`` last announced, among ``objects``."""
        wanted = set(objects)
        every: dict[tuple, dict[str, Any]] = {}
        read = self._announced_log.read(keeping_latest(every, ("watch", "object")))
        if len(read) > COMPACT_AFTER:
            self._announced_log.compact(list(every.values()), read)
        return {name: str(line["version"]) for (by, name), line in every.items() if by == watch and name in wanted}

    def announce(self, watch: str, objects: Mapping[str, str]) -> None:
        """Record ``objects`` (``{object: version}``) as announced by ``watch`` (one new object)."""
        at = timestamp()
        self._announced_log.append(
            [{"watch": watch, "object": name, "version": version, "at": at} for name, version in objects.items()]
        )


def load_history_of(
    writer: WarehouseWriter | None, results_root: ObjectStoragePath | None, run: RunIdentity | None = None
) -> LoadHistory | ObjectLoadHistory | None:
    """
    The one choice of where the load history lives: the SQL database when there is one, else beside
    the results in object storage, else nowhere (every object is read, every document sent).
    """
    if writer is not None:
        return LoadHistory(writer)
    if results_root is not None:
        return ObjectLoadHistory(results_root, run=run)
    return None


__all__ = ["HISTORY_FOLDER", "JsonLinesLog", "ObjectLoadHistory", "load_history_of"]
