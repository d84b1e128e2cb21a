"""The load history: what the provider read, at which version, with which outcome; and every unscored document.

Two tables in the same SQL database as the results, written through the
:class:`~airflow_provider_dgsentiment.storage.warehouse.WarehouseWriter`'s connection (default names)::

    deepgram_sentiment_loads      one row per object read completely, per reading and destination
    deepgram_sentiment_unscored   one row per document that has no score: a content failure or an empty

**Loads.** An object is read completely when every document in it was settled for good: scored and
stored, already stored, empty, or failed for its content. Its row says which version the store
listed (ETag, generation, or size and modification time: :func:`~airflow_provider_dgsentiment.storage.sources.object_version`),
how it was read (``reading``: the format and fields, see ``DocumentSource.reading_of``; and
``key_namespace``), for which averages table, and what came of it (``records`` and how many were
scored, skipped, failed, empty). :func:`plan_reads` is the one decision, for the operator and
the sensor alike, of which listed objects to read: an object whose listed version and reading match
a complete read is not read again (no GET), whatever came of that read. A read that did not
complete (a transient failure, a stop, a crash) leaves the earlier row, so the object is read again.

**Unscored documents.** Scored documents are rows of the averages table (kept as they were for
consumers); the others are rows here, by ``source`` (the name the averages table would use):
``status`` ``"failed"`` (with the ``error`` and the ``fingerprint`` of what failed: the content for
a request the API refused, the cause for content that could not be read) or ``"empty"``, with when
it was first and last seen. A document failed with the same fingerprint is a *known failure*: not
sent again and not failing the run, until ``retry_failed=True`` (to a retry of the DAG run that
recorded it, it is not known: the retry fails as the first try did). Scoring a document deletes its row
here. Transient failures (429, 5xx, timeouts, connection errors, storage errors) are never recorded:
the next run tries again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_dgsentiment.storage.dialects import Column, ColumnType, TableSpec
from airflow_provider_dgsentiment.storage.warehouse import LOOKUP_BATCH_SIZE, batched, timestamp, validate_table_name

if TYPE_CHECKING:
    from airflow_provider_dgsentiment.storage.warehouse import ScoredDocument, StoredDocument, WarehouseWriter

DEFAULT_LOADS_TABLE = "deepgram_sentiment_loads"
DEFAULT_UNSCORED_TABLE = "deepgram_sentiment_unscored"
#: ``key_namespace`` of a reading whose documents are not named in a namespace (text objects, records by line).
NO_NAMESPACE = ""
#: ``status`` of an unscored document.
FAILED = "failed"
EMPTY = "empty"

#: What a load counts of its object's documents (columns of the loads table and fields of :class:`Load`).
DOCUMENT_COUNTS = ("records", "scored", "skipped", "failed", "empty")

#: Characters of the short text key parts where keys are bounded (MySQL): a table name, a reading, a namespace.
_NAME_LENGTH = 128
_READING_LENGTH = 160

LOADS_TABLE = TableSpec(
    columns=(
        Column("averages_table", ColumnType.KEY, nullable=False, length=_NAME_LENGTH),
        Column("object", ColumnType.KEY, nullable=False),
        Column("reading", ColumnType.KEY, nullable=False, length=_READING_LENGTH),
        Column("key_namespace", ColumnType.KEY, nullable=False, length=_NAME_LENGTH),
        Column("version", ColumnType.TEXT, nullable=False),
        Column("outcome", ColumnType.TEXT, nullable=False),
        Column("records", ColumnType.INTEGER, nullable=False),
        Column("scored", ColumnType.INTEGER, nullable=False),
        Column("skipped", ColumnType.INTEGER, nullable=False),
        Column("failed", ColumnType.INTEGER, nullable=False),
        Column("empty", ColumnType.INTEGER, nullable=False),
        Column("dag_id", ColumnType.TEXT),
        Column("task_id", ColumnType.TEXT),
        Column("run_id", ColumnType.TEXT),
        Column("loaded_at", ColumnType.TIMESTAMP, nullable=False),
    ),
    key=("averages_table", "object", "reading", "key_namespace"),
)
UNSCORED_TABLE = TableSpec(
    columns=(
        Column("averages_table", ColumnType.KEY, nullable=False, length=_NAME_LENGTH),
        Column("source", ColumnType.KEY, nullable=False),
        Column("record_key", ColumnType.TEXT),
        Column("location", ColumnType.TEXT),
        Column("status", ColumnType.TEXT, nullable=False),
        Column("fingerprint", ColumnType.TEXT, nullable=False),
        Column("error", ColumnType.TEXT),
        Column("first_seen", ColumnType.TIMESTAMP, nullable=False),
        Column("last_seen", ColumnType.TIMESTAMP, nullable=False),
        Column("dag_id", ColumnType.TEXT),
        Column("task_id", ColumnType.TEXT),
        Column("run_id", ColumnType.TEXT),
    ),
    key=("averages_table", "source"),
)
LOAD_COLUMNS = LOADS_TABLE.names
UNSCORED_COLUMNS = UNSCORED_TABLE.names


@dataclass(frozen=True)
class Load:
    """
    One complete read of one object.

    :param object: the object's name (its URI without connection id).
    :param reading: how it was read (``DocumentSource.reading_of``): ``"text"`` or e.g.
        ``"jsonl text_field=body id_field=id"``.
    :param key_namespace: the namespace its records were keyed in, or ``""``.
    :param version: the version the store listed.
    :param records: documents in it (1 for a text object).
    :param scored: documents scored by the read.
    :param skipped: documents already stored with the same content, or known failures.
    :param failed: documents that failed for their content (new or known).
    :param empty: empty documents.
    :param loaded_at: when the read completed (ISO-8601 text).
    :param run_id: the DAG run whose task read it (a retry of that run reads an object with failures again).
    """

    object: str
    reading: str
    key_namespace: str
    version: str
    records: int = 0
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    empty: int = 0
    loaded_at: str = field(default_factory=timestamp)
    run_id: str | None = None

    @classmethod
    def counted(cls, object: str, reading: str, key_namespace: str, version: str, counts: Mapping[str, int]) -> Load:
        """A load whose document counts are ``counts`` (by the names of :data:`DOCUMENT_COUNTS`)."""
        records, scored, skipped, failed, empty = (int(counts.get(what, 0)) for what in DOCUMENT_COUNTS)
        return cls(object, reading, key_namespace, version, records, scored, skipped, failed, empty)

    @property
    def outcome(self) -> str:
        """``"empty"``, ``"failed"``, ``"partly failed"`` or ``"loaded"``."""
        if self.failed:
            return FAILED if self.failed == self.records else "partly failed"
        return EMPTY if self.empty == self.records else "loaded"

    def describe(self) -> str:
        """For log lines and skip reasons: ``loaded at ...: 200 records, 198 scored, 2 failed``."""
        counts = [f"{self.records} document(s)"] + [
            f"{count} {what}"
            for count, what in ((self.scored, "scored"), (self.failed, "failed"), (self.empty, "empty"))
            if count
        ]
        return f"{self.outcome} at {self.loaded_at}: {', '.join(counts)}"


@dataclass(frozen=True)
class Unscored:
    """
    A document with no score: what ``deepgram_sentiment_unscored`` holds for it.

    :param source: its name (as the averages table would store it).
    :param status: ``"failed"`` or ``"empty"``.
    :param fingerprint: sha256 of its content (or of the cause of a read failure).
    :param error: why it failed (None when empty).
    :param record_key: its record key, if it is a record.
    :param location: where it was read.
    :param run_id: the DAG run that first recorded it so (this status and fingerprint).
    """

    source: str
    status: str
    fingerprint: str
    error: str | None = None
    record_key: str | None = None
    location: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class ReadPlan:
    """
    Which listed objects a run reads (:func:`plan_reads`).

    :param to_read: the objects to read, in listing order, with their listed versions.
    :param unchanged: the objects not read: listed with the version and reading of a complete read.
    :param known_records: documents the history knows in the objects to read (their last read).
    :param unknown_objects: objects to read that were never read with this reading.
    """

    to_read: dict[str, str | None]
    unchanged: dict[str, Load] = field(default_factory=dict)
    known_records: int = 0
    unknown_objects: int = 0


class HistoryStore(Protocol):
    """
    Where a load history lives: SQL tables (:class:`LoadHistory`) or objects beside the results
    (:class:`~airflow_provider_dgsentiment.storage.object_history.ObjectLoadHistory`). Both answer
    the same questions, so :func:`plan_reads` and the scoring run's ``decide`` decide the same way.
    """

    @property
    def run_id(self) -> str | None:
        """The DAG run recording (its own failures are not known failures to it)."""

    def prepare(self) -> None:
        """Make the history ready to read and write (tables created; objects read)."""

    def loads(self, objects: Sequence[str]) -> dict[str, list[Load]]:
        """The complete reads of ``objects``, by object."""

    def unscored(self, sources: Iterable[str]) -> dict[str, Unscored]:
        """The unscored documents among ``sources``."""

    def stored_documents(
        self, sources: Iterable[str], legacy_keys: dict[str, str] | None = None
    ) -> dict[str, StoredDocument]:
        """What was scored and stored of ``sources``, with which content fingerprint."""

    def record(self, loads: Sequence[Load], unscored: Sequence[Unscored], scored: Sequence[ScoredDocument]) -> None:
        """Record complete reads, unscored documents and scored ones (documents before loads)."""


def plan_reads(
    listing: Mapping[str, str | None],
    readings: Mapping[str, tuple[str, str | None]],
    history: HistoryStore | None,
    *,
    retry_failed: bool = False,
    force: bool = False,
) -> ReadPlan:
    """
    Decide which objects to read: the one decision, for the operator's run and the sensor's look.

    An object is read unless the history holds a complete read of it at the listed version, with
    the same reading and key namespace (a namespace of None matches any: a sensor given none),
    into the same averages table. An object whose last read had failures is read again with
    ``retry_failed``, and by a retry of the DAG run that read it (whose failures are not known
    failures to it: the retry fails as the first try did).

    :param listing: ``{object: version}`` in listing order (None: the store gave no version).
    :param readings: ``{object: (reading, key_namespace)}``.
    :param history: the load history, or None (read everything).
    :param retry_failed: read the objects with known failures again.
    :param force: read every object (``skip_scored=False``); what the history knows is still counted.
    """
    loads = history.loads(list(listing)) if history is not None else {}
    history_run = history.run_id if history is not None else None
    to_read: dict[str, str | None] = {}
    unchanged: dict[str, Load] = {}
    known_records = unknown = 0
    for name, version in listing.items():
        reading, namespace = readings[name]
        matching = [
            load
            for load in loads.get(name, ())
            if load.reading == reading and (namespace is None or load.key_namespace == namespace)
        ]
        current = next((load for load in matching if version is not None and load.version == version), None)
        # A failure this very DAG run recorded is not "known" to it: its retry reads the object again.
        retry = current is not None and current.failed and (retry_failed or current.run_id == history_run)
        if current is not None and not force and not retry:
            unchanged[name] = current
            continue
        to_read[name] = version
        if matching:
            known_records += max(load.records for load in matching)
        else:
            unknown += 1
    return ReadPlan(to_read=to_read, unchanged=unchanged, known_records=known_records, unknown_objects=unknown)


class LoadHistory:
    """
    Read and write the load history and the unscored documents, through a writer's connection.

    Call :meth:`ensure_tables` once (with the writer's ``check_tables``) before writing; reads
    of a database without the tables find nothing.

    :param writer: the results' writer (its connection, run identity and averages table).
    :param loads_table: table of complete object reads, ``name`` or ``schema.name``.
    :param unscored_table: table of documents without a score, ``name`` or ``schema.name``.
    """

    def __init__(
        self,
        writer: WarehouseWriter,
        *,
        loads_table: str = DEFAULT_LOADS_TABLE,
        unscored_table: str = DEFAULT_UNSCORED_TABLE,
    ) -> None:
        self.writer = writer
        self.loads_table = validate_table_name(loads_table, "loads_table")
        self.unscored_table = validate_table_name(unscored_table, "unscored_table")
        self.destination = writer.averages_table

    @property
    def run_id(self) -> str | None:
        """The DAG run the writer writes for."""
        return self.writer.run.run_id

    def ensure_tables(self) -> None:
        """Create both tables when missing."""
        self.writer.ensure_table(self.loads_table, LOADS_TABLE)
        self.writer.ensure_table(self.unscored_table, UNSCORED_TABLE)

    prepare = ensure_tables

    def stored_documents(
        self, sources: Iterable[str], legacy_keys: dict[str, str] | None = None
    ) -> dict[str, StoredDocument]:
        """What the averages table holds of ``sources`` (:meth:`WarehouseWriter.stored_documents`)."""
        return self.writer.stored_documents(sources, legacy_keys)

    # ------------------------------------------------------------------ reads

    def loads(self, objects: Sequence[str]) -> dict[str, list[Load]]:
        """Return the complete reads of ``objects`` into this averages table, by object."""
        found: dict[str, list[Load]] = {}
        columns = ("object", "reading", "key_namespace", "version", "records", "scored", "skipped", "failed", "empty")
        for row in self._select(self.loads_table, columns + ("loaded_at", "run_id"), "object", objects):
            name, reading, namespace, version, records, scored, skipped, failed, empty, loaded_at, run_id = row
            found.setdefault(name, []).append(
                Load(name, reading, namespace, version, records, scored, skipped, failed, empty, str(loaded_at), run_id)
            )
        return found

    def unscored(self, sources: Iterable[str]) -> dict[str, Unscored]:
        """Return the unscored documents among ``sources``."""
        columns = ("source", "status", "fingerprint", "error", "record_key", "location", "run_id")
        return {row[0]: Unscored(*row) for row in self._select(self.unscored_table, columns, "source", sources)}

    def _select(self, table: str, columns: Sequence[str], key: str, values: Iterable[str]) -> list[tuple]:
        wanted = list(dict.fromkeys(values))
        writer = self.writer
        if not wanted or not writer.table_exists(table):
            return []
        marks = writer.placeholder
        rows: list[tuple] = []
        with writer.reading() as cursor:
            for chunk in batched(wanted, LOOKUP_BATCH_SIZE):
                cursor.execute(
                    f"SELECT {', '.join(columns)} FROM {table} WHERE averages_table = {marks} "
                    f"AND {key} IN ({', '.join([marks] * len(chunk))})",
                    (self.destination, *chunk),
                )
                rows.extend(tuple(row) for row in cursor.fetchall())
        return rows

    # ------------------------------------------------------------------ writes

    def record(self, loads: Sequence[Load], unscored: Sequence[Unscored], scored: Sequence[ScoredDocument]) -> None:
        """
        Record complete reads, unscored documents and scored ones, in one transaction.

        A load replaces the earlier row of its object, reading and namespace; an unscored document
        keeps the ``first_seen`` of an earlier row with the same status and fingerprint; a scored
        document loses its unscored row.

        :param loads: the objects read completely (their documents already stored).
        :param unscored: the documents that failed for their content or were empty.
        :param scored: the documents stored in the averages table.
        """
        if not (loads or unscored or scored):
            return
        earlier = self.unscored(document.source for document in unscored)
        names = [document.source for document in scored]
        self.writer.run_in_transaction(lambda cursor: self._record(cursor, loads, unscored, names, earlier))

    def _record(
        self,
        cursor: Any,
        loads: Sequence[Load],
        unscored: Sequence[Unscored],
        scored: Sequence[str],
        earlier: dict[str, Unscored],
    ) -> None:
        writer, marks, run = self.writer, self.writer.placeholder, self.writer.run
        now = timestamp()
        latest = {document.source: document for document in unscored}
        same = [
            source
            for source, row in earlier.items()
            if (row.status, row.fingerprint) == (latest[source].status, latest[source].fingerprint)
        ]
        first_seen = self._first_seen(cursor, same)  # {source: (first_seen, run_id)} kept from the earlier row
        for load in loads:
            cursor.execute(
                f"DELETE FROM {self.loads_table} WHERE averages_table = {marks} AND object = {marks} "
                f"AND reading = {marks} AND key_namespace = {marks}",
                (self.destination, load.object, load.reading, load.key_namespace),
            )
        writer.insert_rows(
            cursor,
            self.loads_table,
            LOAD_COLUMNS,
            (
                (self.destination, load.object, load.reading, load.key_namespace, load.version, load.outcome)
                + (load.records, load.scored, load.skipped, load.failed, load.empty)
                + (run.dag_id, run.task_id, run.run_id, writer.bind_timestamp(load.loaded_at))
                for load in loads
            ),
        )
        gone = list(dict.fromkeys([*scored, *(document.source for document in unscored)]))
        for chunk in batched(gone, LOOKUP_BATCH_SIZE):
            cursor.execute(
                f"DELETE FROM {self.unscored_table} WHERE averages_table = {marks} "
                f"AND source IN ({', '.join([marks] * len(chunk))})",
                (self.destination, *chunk),
            )
        writer.insert_rows(
            cursor,
            self.unscored_table,
            UNSCORED_COLUMNS,
            (
                (self.destination, document.source, document.record_key, document.location, document.status)
                + (document.fingerprint, document.error)
                + (writer.bind_timestamp(first_seen.get(document.source, (now,))[0]), writer.bind_timestamp(now))
                + (run.dag_id, run.task_id, first_seen.get(document.source, (now, run.run_id))[1])
                for document in latest.values()
            ),
        )

    def _first_seen(self, cursor: Any, sources: list[str]) -> dict[str, tuple[Any, str | None]]:
        """``{source: (first_seen as the database gave it, run_id)}`` of the earlier rows kept."""
        marks = self.writer.placeholder
        found: dict[str, tuple[Any, str | None]] = {}
        for chunk in batched(sources, LOOKUP_BATCH_SIZE):
            cursor.execute(
                f"SELECT source, first_seen, run_id FROM {self.unscored_table} WHERE averages_table = {marks} "
                f"AND source IN ({', '.join([marks] * len(chunk))})",
                (self.destination, *chunk),
            )
            found.update((row[0], (row[1], row[2])) for row in cursor.fetchall())  # bound again as given
        return found
