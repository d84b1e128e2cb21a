"""One task run's scoring, the same in the worker and in the triggerer.

:class:`ScoringRun` lists the documents, reads each one once, settles those that need no
request (unreadable, empty, already stored with the same content), scores the rest on the
hook's async engine, and stores results as they complete: SQL rows through the
:class:`~airflow_provider_dgsentiment.storage.warehouse.WarehouseWriter` and JSONL lines through
:class:`~airflow_provider_dgsentiment.storage.result_files.ResultFiles`, every
``WRITE_BATCH_SIZE`` documents or ``WRITE_INTERVAL`` seconds, whichever comes first, so a crash
loses at most the requests in flight plus a few seconds of results, and memory stays flat at
any size. A retry skips what earlier tries stored: documents in the averages table with the
same fingerprint (``skip_scored``), and documents whose scored line is in an earlier try's
result part (always: those parts are this task run's own). Without SQL, the load history
beside ``results_path`` (:mod:`~airflow_provider_dgsentiment.storage.object_history`) answers
for the averages table, so later DAG runs skip what earlier ones scored too.

Blocking work never runs on the event loop: listing and reading happen in a reader
thread, every SQL statement and result-file write in one storage thread (SQLite
connections belong to the thread that opened them). The worker drives a run with
``asyncio.run``; the trigger awaits it in the triggerer's loop.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.exceptions import (
    DeepgramAPIError,
    DeepgramBadRequestError,
    DeepgramConfigurationError,
    DeepgramError,
)
from airflow_provider_dgsentiment.run.metrics import RunMetrics
from airflow_provider_dgsentiment.run.outcome import SKIP_ALREADY_SCORED, ProgressLog, ScoringOutcome
from airflow_provider_dgsentiment.storage.lineage import input_locations
from airflow_provider_dgsentiment.storage.load_history import (
    DOCUMENT_COUNTS,
    EMPTY,
    FAILED,
    HistoryStore,
    Load,
    ReadPlan,
    Unscored,
)
from airflow_provider_dgsentiment.storage.object_history import load_history_of
from airflow_provider_dgsentiment.storage.result_files import ResultFiles, failed_line, scored_line, skipped_line
from airflow_provider_dgsentiment.storage.sources import (
    SKIP_EMPTY,
    Document,
    DocumentSource,
    fingerprint,
    plan_listed_reads,
    plan_object_reads,
)
from airflow_provider_dgsentiment.storage.warehouse import (
    ScoredDocument,
    StoredDocument,
    UnstoredDocument,
    WarehouseWriter,
    batched,
)
from airflow_provider_dgsentiment.storage.work_claims import ClaimedNames

if TYPE_CHECKING:
    from logging import Logger as StdLogger

    # The task's or trigger's logger: a stdlib logger or Airflow's structlog logger.
    Logger = StdLogger | Any

    from airflow_provider_dgsentiment.client.results import SentimentResult
    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

#: Documents read, fingerprinted and looked up in the averages table at once.
READ_BATCH_SIZE = 200
#: Read batches waiting for the scorer at most (the read-ahead of the whole run).
QUEUED_READ_BATCHES = 4
#: Scored documents per SQL transaction and per result part at most (the count bound of a store).
WRITE_BATCH_SIZE = 200
#: Seconds a settled document waits for its store at most (the time bound: a slow run stores this often).
WRITE_INTERVAL = 2.0
#: Times per ``WRITE_INTERVAL`` the run looks for results waiting too long while none arrive.
STORE_CHECKS_PER_INTERVAL = 4
#: Writes waiting for the storage thread at most before scoring waits for them.
PENDING_WRITES = 4
#: Seconds between two checks of a blocked hand-over from the reader thread.
HAND_OVER_POLL = 0.5
#: Seconds a stopped run waits for the requests in flight to answer (stored, not paid again) before
#: it cancels the rest; the answers already received are stored either way.
STOP_GRACE = 5.0
DEFAULT_PROGRESS_INTERVAL = 30.0


def too_many_for_the_event(what: str, bound: int) -> DeepgramConfigurationError:
    """
    The one refusal of a deferred run that would carry more per-document results back than its event may.

    :param what: the start of the sentence, naming the source (``"<source> holds more than"``).
    :param bound: how many documents the event may carry.
    """
    return DeepgramConfigurationError(
        f"{what} the {bound} documents a deferred run that stores nowhere can carry back in its event: give "
        "sql_conn_id or results_path and xcom_output='manifest' (or 'none'), or score them with deferrable=False"
    )


@dataclass(frozen=True)
class ScoringOptions:
    """
    How a run scores: plain values, the same in the worker and in the trigger's kwargs.

    :param language: the language code of the texts.
    :param max_concurrency: requests in flight at most; None for the connection's setting.
    :param skip_scored: skip documents stored with the same content fingerprint.
    :param fail_on_empty_source: a ``source`` matching nothing fails the run; False succeeds with zero documents.
    :param max_documents: refuse a run of more documents than this (None: no bound).
    :param progress_interval: seconds between progress log lines.
    :param tags: Deepgram ``tag`` query parameters of every request.
    :param max_input_tokens: stop before a request would pass this many input tokens for the
        task run (tokens its rows already stored in the tables count, so a retry keeps to it).
    :param retry_failed: read and send known failures again (documents whose content failed before).
    :param metric_tags: tags of the run's Airflow metrics (``dag_id``, ``task_id``).
    """

    language: str = "en"
    max_concurrency: int | None = None
    skip_scored: bool = True
    fail_on_empty_source: bool = True
    max_documents: int | None = None
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    tags: tuple[str, ...] = ()
    max_input_tokens: int | None = None
    retry_failed: bool = False
    metric_tags: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "metric_tags": dict(self.metric_tags),
            "tags": list(self.tags),
            "max_input_tokens": self.max_input_tokens,
            "language": self.language,
            "max_concurrency": self.max_concurrency,
            "skip_scored": self.skip_scored,
            "fail_on_empty_source": self.fail_on_empty_source,
            "max_documents": self.max_documents,
            "progress_interval": self.progress_interval,
            "retry_failed": self.retry_failed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoringOptions:
        values = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        values["tags"] = tuple(values.get("tags") or ())
        values["metric_tags"] = tuple(sorted(dict(values.get("metric_tags") or {}).items()))
        return cls(**values)


#: What becomes of a document that was read (:func:`decide`).
SEND = "send"
FAIL = "fail"
KNOWN_FAILURE = "known failure"
EMPTY_DOCUMENT = "empty"
ALREADY_STORED = "already stored"


@dataclass(frozen=True)
class DocumentRead:
    """
    A document read, with what the tables know about it.

    :param position: its place in the run.
    :param document: the document.
    :param key: sha256 of its text; of its failure's cause when it could not be read; None when empty.
    :param stored: its row in the averages table (or its 0.2 row), or None.
    :param unscored: its row among the unscored documents, or None.
    """

    position: int
    document: Document
    key: str | None
    stored: StoredDocument | None = None
    unscored: Unscored | None = None


def decide(read: DocumentRead, *, retry_failed: bool, run_id: str | None = None) -> str:
    """
    The one decision of what a document read costs: :data:`SEND` it, or settle it without a request.

    A document that could not be read fails (:data:`FAIL`), unless the same failure of the same
    content is recorded (:data:`KNOWN_FAILURE`; never for a storage error, which the next run
    retries). Empty text is :data:`EMPTY_DOCUMENT`; text stored with the same fingerprint is
    :data:`ALREADY_STORED`; text the API refused before (a 400) with the same fingerprint is a
    :data:`KNOWN_FAILURE`. ``retry_failed`` turns known failures back into new ones, and so does
    ``run_id`` for the failures that DAG run itself recorded (a retry fails as its first try did).
    """
    document = read.document
    unscored = read.unscored
    known = (
        not retry_failed
        and unscored is not None
        and unscored.status == FAILED
        and unscored.fingerprint == read.key
        and (run_id is None or unscored.run_id != run_id)
    )
    if document.error is not None:
        return KNOWN_FAILURE if known and not document.transient else FAIL
    if read.key is None:
        return EMPTY_DOCUMENT
    if read.stored is not None and read.stored.fingerprint == read.key:
        return ALREADY_STORED
    return KNOWN_FAILURE if known else SEND


def failure_fingerprint(document: Document) -> str:
    """The fingerprint of why a document could not be read (its content's fault), without where it is."""
    return fingerprint(f"failure: {document.cause or document.error}")


@dataclass(frozen=True)
class _Unchanged:
    """An object the run does not read (the load history holds a complete read of this version)."""

    position: int
    name: str
    load: Load


@dataclass(frozen=True)
class _ObjectRead:
    """Every document of the object ``name`` has been handed over."""

    name: str


@dataclass
class _ObjectTally:
    """What became of one object's documents so far: a complete read goes into the load history."""

    version: str
    #: Documents by what became of them (:data:`DOCUMENT_COUNTS`), as the load history records them.
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DOCUMENT_COUNTS, 0))
    in_request: int = 0
    read: bool = False
    #: A document failed for a reason that is not its content's (429, 5xx, storage): read it again.
    transient: bool = False


class ScoringRun:
    """
    Score one task's documents and store the results as they complete.

    :param source: what to score.
    :param hook: the Deepgram hook (its async engine sends the requests).
    :param keep: the XCom shape (``"full"``, ``"summary"``, ``"manifest"``, ``"none"``).
    :param options: how to score.
    :param log: the task's or trigger's logger.
    :param writer: where SQL rows go, or None.
    :param result_files: where JSONL result lines go, or None.
    """

    def __init__(
        self,
        *,
        source: DocumentSource,
        hook: DeepgramSentimentHook,
        keep: str,
        options: ScoringOptions,
        log: Logger,
        writer: WarehouseWriter | None = None,
        result_files: ResultFiles | None = None,
    ) -> None:
        self.source = source
        self.hook = hook
        self.keep = keep
        self.options = options
        self.log = log
        self.writer = writer
        #: The load history: in the SQL database, else beside the results in object storage, else None.
        self.history: HistoryStore | None = load_history_of(
            writer,
            result_files.root if result_files is not None else None,
            result_files.run if result_files is not None else None,
        )
        self.result_files = result_files
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stop_reason: str | None = None
        #: Set when the scorer no longer takes documents: the reader thread then stops.
        self._abandoned = threading.Event()
        self._to_store: list[ScoredDocument] = []
        self._lines: list[dict[str, Any]] = []
        #: Complete object reads and unscored documents to record, after the scored documents before them.
        self._loads: list[Load] = []
        self._unscored: list[Unscored] = []
        #: Objects being read whose reads the load history records, by name.
        self._objects: dict[str, _ObjectTally] = {}
        self._pending: list[tuple[asyncio.Future, int]] = []
        #: Loop time the oldest result waiting for its store was seen at (None: nothing waits).
        self._waiting_since: float | None = None
        #: A write failed: the database (or storage) is broken, so nothing more is written.
        self._write_failed = False
        #: Input tokens this task run already stored (an earlier try), counted against ``max_input_tokens``.
        self._used_input_tokens = 0
        self.metrics = RunMetrics(dict(options.metric_tags))
        #: The hook's counters when the run started (a worker's hook may have sent requests before).
        self._counters_at_start = (0, 0, 0)

    # ------------------------------------------------------------------ control

    def stop(self, reason: str) -> None:
        """
        Stop sending at once, store what was scored, and end the run (thread- and signal-safe).

        :param reason: why, for the task's error message.
        """
        self._stop_reason = reason
        self._abandoned.set()
        loop, event = self._loop, self._stop_requested
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop has closed: the run is over anyway
                pass

    # ------------------------------------------------------------------ the run

    async def run(self) -> ScoringOutcome:
        """Score every document; return what happened to each (systemic errors are recorded, not raised)."""
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        if self._stop_reason is not None:
            self._stop_requested.set()
        outcome = ScoringOutcome(keep=self.keep, started_at=datetime.now(timezone.utc).isoformat())
        self._counters_at_start = (self.hook.request_count, self.hook.rate_limited_count, self.hook.retry_count)
        progress = ProgressLog(self.log, float(self.options.progress_interval))
        storage = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepgram-storage")
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepgram-reader")
        consume: asyncio.Future | None = None
        try:
            await self._loop.run_in_executor(storage, self._prepare_storage)
            # In the storage thread: the load history is read on its connection (SQLite connections are per thread).
            names, plan = await self._loop.run_in_executor(storage, self._list_names)
            # Record files and queries hold an unknown number of documents: count them as they come.
            outcome.streaming = self.source.holds_records(names)  # claimed batches are counted as they come too
            outcome.total = 0 if outcome.streaming or isinstance(names, ClaimedNames) else len(names)
            if isinstance(names, ClaimedNames):
                outcome.inputs = input_locations(self.source.entries)
            elif self.source.reads_objects:
                outcome.inputs = input_locations(names)
            self._log_start(names, plan, outcome)
            if names:
                consume = asyncio.ensure_future(self._consume(names, plan, outcome, progress, storage, reader))
                stopper = asyncio.ensure_future(self._stop_requested.wait())
                try:
                    await asyncio.wait({consume, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                if not consume.done():
                    # Nothing new is sent (texts() ends); what is in flight may answer within the grace.
                    self.log.warning("Stopping: %s", self._stop_reason)
                    outcome.stopped = self._stop_reason
                    await asyncio.wait({consume}, timeout=STOP_GRACE)
                if consume.done():
                    consume.result()  # raises what went wrong
                else:
                    await _cancelled(consume)
            await self._drain(outcome, storage)
            if isinstance(names, ClaimedNames) and outcome.stopped is None and not self._write_failed:
                # In the reader's thread, which claimed them on its connection (SQLite binds one to a thread).
                done = await self._loop.run_in_executor(reader, names.finish)
                self.log.info(
                    "Claimed %d batch(es) of listing %s; %d marked done", names.batches, self.source.claims, done
                )
        finally:
            self._abandoned.set()
            if consume is not None and not consume.done():
                await _cancelled(consume)  # the run itself was cancelled (task timeout, triggerer shutdown)
            await self._close_storage(outcome, storage)
            storage.shutdown(wait=False)
            reader.shutdown(wait=False)
            outcome.ended_at = datetime.now(timezone.utc).isoformat()
            self._report_usage(outcome)
        progress.update(outcome, final=True)
        return outcome

    def _report_usage(self, outcome: ScoringOutcome) -> None:
        """Put the engine's counters for this run into ``outcome`` and report what grew to Airflow's metrics."""
        requests, rate_limited, retries = self._counters_at_start
        outcome.requests = self.hook.request_count - requests
        outcome.rate_limited = self.hook.rate_limited_count - rate_limited
        outcome.retries = self.hook.retry_count - retries
        windows = [engine.window.limit for engine in self.hook.engines]
        self.metrics.report(outcome.counts(), max(windows) if windows else None)

    def _prepare_storage(self) -> None:
        """Check the tables and clear earlier result files, before the first request (storage thread)."""
        if self.writer is not None:
            self.writer.check_tables()
        if self.history is not None:
            self.history.prepare()
        if self.writer is not None and self.options.max_input_tokens is not None:
            self._used_input_tokens = self.writer.stored_input_tokens()
            if self._used_input_tokens:
                self.log.info(
                    "%d input tokens already stored by this task run count against max_input_tokens=%d",
                    self._used_input_tokens,
                    self.options.max_input_tokens,
                )
        if self.result_files is not None:
            held = self.result_files.begin()
            if held:
                self.log.info(
                    "Earlier tries' result parts in %s hold %d scored document(s): they are not scored again",
                    self.result_files.folder,
                    held,
                )

    def _list_names(self) -> tuple[list[str] | ClaimedNames, ReadPlan | None]:
        """List what to score; for objects, decide with the load history which to read (storage thread)."""
        plan: ReadPlan | None = None
        if self.source.claims is not None:
            # The listing was made (and decided over the load history) by whoever published it:
            # batches are claimed as the reader reaches them, their versions recorded as they come.
            claimed, _ = self.source.list_names(log=self.log)
            assert isinstance(claimed, ClaimedNames)
            return claimed, None
        if self.source.reads_objects:
            plan, unmatched, matched = plan_object_reads(
                self.source,
                self.history,
                retry_failed=self.options.retry_failed,
                force=not self.options.skip_scored,
                log=self.log,
            )
            names = sorted([*plan.to_read, *plan.unchanged])
            self._objects = {
                name: _ObjectTally(version=version) for name, version in plan.to_read.items() if version is not None
            }
            if self.history is None:
                self._objects = {}
        else:
            listed, unmatched = self.source.list_names(log=self.log)
            assert not isinstance(listed, ClaimedNames)  # claims are handled above
            names, matched = listed, len(listed)
        self.source.check_record_fields(names, self.log)
        for entry in unmatched:
            if names:
                self.log.warning("source entry %s matched no objects", entry)
        if not matched and not self.source.is_inline:
            message = f"{self.source.describe()} matched no objects"
            if self.options.fail_on_empty_source:
                raise DeepgramError(f"{message} (set fail_on_empty_source=False to succeed with zero documents)")
            self.log.warning("%s; nothing to score", message)
        elif not names:
            self.log.info("%s: no object of %d falls in this shard; nothing to score", self.source.describe(), matched)
        bound = self.options.max_documents
        if bound is not None and len(names) > bound:
            raise too_many_for_the_event(f"{self.source.describe()} names {len(names)} documents, more than", bound)
        return names, plan

    def _decide_claimed(self, versions: dict[str, str | None]) -> dict[str, Load]:
        """
        A batch of the listing was claimed: decide over the load history which of its objects to
        read, as the run decides over a listing (storage thread). Return the unchanged ones: a
        retried task's objects stored by its first try are not read again.
        """
        plan = plan_listed_reads(
            self.source,
            versions,
            self.history,
            retry_failed=self.options.retry_failed,
            force=not self.options.skip_scored,
        )
        self._objects.update(
            {name: _ObjectTally(version=version) for name, version in plan.to_read.items() if version is not None}
        )
        return plan.unchanged

    def _log_start(self, names: list[str] | ClaimedNames, plan: ReadPlan | None, outcome: ScoringOutcome) -> None:
        settings = (
            self.options.language,
            self.options.max_concurrency or "from connection",
            self._looks_up,
        )
        if isinstance(names, ClaimedNames):
            self.log.info(
                "Scoring the objects of listing %s, claimed in batches (language=%s, max_concurrency=%s, "
                "skip_scored=%s)",
                self.source.claims,
                *settings,
            )
        elif outcome.streaming:
            what = "the rows of" if self.source.is_sql else f"the records of {len(names)} object(s) from"
            self.log.info(
                "Scoring %s %s (language=%s, max_concurrency=%s, skip_scored=%s)",
                what,
                self.source.describe(),
                *settings,
            )
        else:
            self.log.info(
                "Scoring %d document(s) from %s (language=%s, max_concurrency=%s, skip_scored=%s)",
                outcome.total,
                self.source.describe(),
                *settings,
            )
        if plan is not None and plan.unchanged and not isinstance(names, ClaimedNames):
            self.log.info(
                "%d of %d object(s) are unchanged since their last complete read (load history): not read again",
                len(plan.unchanged),
                len(names),
            )

    async def _consume(
        self,
        names: list[str] | ClaimedNames,
        plan: ReadPlan | None,
        outcome: ScoringOutcome,
        progress: ProgressLog,
        storage: ThreadPoolExecutor,
        reader: ThreadPoolExecutor,
    ) -> None:
        """Feed the documents to the engine and record each result as it completes."""
        assert self._loop is not None
        queue: asyncio.Queue[list[DocumentRead | _Unchanged | _ObjectRead] | None] = asyncio.Queue(QUEUED_READ_BATCHES)
        producing = self._loop.run_in_executor(reader, self._produce, names, plan, queue, self._loop, storage)
        in_request: dict[int, DocumentRead] = {}
        bound = self.options.max_documents
        ticking = asyncio.ensure_future(self._store_on_time(storage, outcome))

        async def texts() -> AsyncIterator[str]:
            sent = 0
            while True:
                batch = await queue.get()
                if batch is None:
                    return
                for entry in batch:
                    if self._stop_requested is not None and self._stop_requested.is_set():
                        return  # stopped: the engine ends once the requests in flight answer
                    if isinstance(entry, _ObjectRead):
                        self._object_settled(entry.name, read=True)
                        continue
                    if bound is not None and entry.position >= bound:
                        raise too_many_for_the_event(f"{self.source.describe()} holds more than", bound)
                    outcome.total = max(outcome.total, entry.position + 1)
                    if isinstance(entry, _Unchanged):
                        outcome.record_unchanged(entry.position, entry.name, entry.load.describe())
                        continue
                    if self._settle_read(entry, outcome) == SEND:
                        in_request[sent] = entry
                        sent += 1
                        yield entry.document.text or ""
                progress.update(outcome)

        results = self.hook.aanalyze_many(
            texts(),
            language=self.options.language,
            max_concurrency=self.options.max_concurrency,
            tags=self.options.tags,
            max_input_tokens=self.options.max_input_tokens,
            used_input_tokens=self._used_input_tokens,
        )
        try:
            async with aclosing(results):
                async for index, result in results:
                    read = in_request.pop(index)
                    if isinstance(result, DeepgramAPIError):
                        self._settle_refused(read, result, outcome)
                    else:
                        self._settle_scored(read, result, outcome)
                    if self._store_due():
                        await self._flush(outcome, storage)
                    progress.update(outcome)
        finally:
            self._abandoned.set()
            ticking.cancel()
            await asyncio.wait({producing})
        producing.result()  # a listing or reading failure that is not one document's

    # ------------------------------------------------------------------ settling

    def _settle_read(self, read: DocumentRead, outcome: ScoringOutcome) -> str:
        """Settle a document read without a request where :func:`decide` says so; return the decision."""
        document = read.document
        name = document.source
        where = {"record_key": document.record_key, "location": document.location}
        tally = self._objects.get(document.container or "")
        if tally is not None:
            tally.counts["records"] += 1
        run_id = self.history.run_id if self.history is not None else None
        decision = decide(read, retry_failed=self.options.retry_failed, run_id=run_id)
        if decision in (SEND, ALREADY_STORED) and self._held_by_an_earlier_try(read):
            # An earlier try's result part holds it (and the table too, when there is one): its line stands.
            outcome.record_skipped(read.position, name, SKIP_ALREADY_SCORED)
            self._object_settled(document.container, skipped=1)
            return ALREADY_STORED
        if decision in (FAIL, KNOWN_FAILURE):
            error = document.error or (read.unscored.error if read.unscored is not None else None) or "failed"
            outcome.record_failed(read.position, name, error, known=decision == KNOWN_FAILURE)
            self._lines.append(failed_line(name, error, **where))
            if document.transient:
                self._object_settled(document.container, transient=True)
            else:
                self._record_unscored(read, FAILED, error)
                self._object_settled(document.container, failed=1)
        elif decision == EMPTY_DOCUMENT:
            outcome.record_skipped(read.position, name, SKIP_EMPTY)
            self._lines.append(skipped_line(name, SKIP_EMPTY, **where))
            self._record_unscored(read, EMPTY, None)
            self._object_settled(document.container, empty=1)
        elif decision == ALREADY_STORED:
            stored = read.stored
            outcome.record_skipped(
                read.position,
                name,
                SKIP_ALREADY_SCORED,
                sentiment=stored.sentiment if stored is not None else None,
                sentiment_score=stored.sentiment_score if stored is not None else None,
            )
            self._lines.append(skipped_line(name, SKIP_ALREADY_SCORED, **where))
            self._object_settled(document.container, skipped=1)
        elif tally is not None:
            tally.in_request += 1
        return decision

    def _held_by_an_earlier_try(self, read: DocumentRead) -> bool:
        """An earlier try's result part holds ``read`` with its content, and so does the table (when it is looked up)."""
        if self.result_files is None or read.key is None:
            return False
        if self.result_files.held_fingerprint(read.document.source) != read.key:
            return False
        # With SQL the table must hold it too (a kill between the part and the rows); the history
        # beside the results is written after the parts, so a part's line alone is enough there.
        looked_up = self.writer is not None and self.options.skip_scored
        return not looked_up or (read.stored is not None and read.stored.fingerprint == read.key)

    @property
    def _looks_up(self) -> bool:
        """Documents are looked up in the load history (and the averages table) before they are sent."""
        return self.history is not None and self.options.skip_scored

    def _settle_scored(self, read: DocumentRead, result: SentimentResult, outcome: ScoringOutcome) -> None:
        document = read.document
        outcome.record_scored(read.position, document.source, result)
        if self.history is not None:
            self._to_store.append(
                ScoredDocument(
                    self.source.stored_prefix + document.source,
                    read.key or "",
                    result,
                    self.options.language,
                    record_key=document.record_key,
                    location=document.location,
                    entity=document.entity,
                    position=read.position,
                )
            )
        if self.result_files is not None:
            self._lines.append(
                scored_line(
                    document.source,
                    read.key or "",
                    result.to_dict(),
                    record_key=document.record_key,
                    location=document.location,
                )
            )
        self._object_settled(document.container, scored=1, answered=True)

    def _settle_refused(self, read: DocumentRead, error: DeepgramAPIError, outcome: ScoringOutcome) -> None:
        document = read.document
        outcome.record_failed(read.position, document.source, str(error), error.request_id)
        self._lines.append(
            failed_line(document.source, str(error), record_key=document.record_key, location=document.location)
        )
        if error.systemic and outcome.systemic_error is None:
            outcome.systemic_error = error
            self.log.error("Stopping: %s", error)
        # A request the API refuses for what it is (400) fails the same way until the content changes.
        if isinstance(error, DeepgramBadRequestError) and not error.systemic:
            self._record_unscored(read, FAILED, str(error))
            self._object_settled(document.container, failed=1, answered=True)
        else:
            self._object_settled(document.container, transient=True, answered=True)

    def _record_unscored(self, read: DocumentRead, status: str, error: str | None) -> None:
        if self.history is None:
            return
        document = read.document
        self._unscored.append(
            Unscored(
                source=self.source.stored_prefix + document.source,
                status=status,
                fingerprint=read.key or fingerprint(document.text or ""),
                error=error,
                record_key=document.record_key,
                location=document.location,
            )
        )

    def _object_settled(
        self,
        name: str | None,
        *,
        read: bool = False,
        answered: bool = False,
        transient: bool = False,
        **counts: int,
    ) -> None:
        """Count a settled document of object ``name``; once all are, record its read as complete."""
        tally = self._objects.get(name or "")
        if tally is None:
            return
        tally.read = tally.read or read
        tally.transient = tally.transient or transient
        tally.in_request -= 1 if answered else 0
        for what, count in counts.items():
            tally.counts[what] += count
        if not tally.read or tally.in_request > 0:
            return
        del self._objects[name or ""]
        if tally.transient:
            return  # read again by the next run
        reading, namespace = self.source.reading_of(name or "")
        self._loads.append(Load.counted(name or "", reading, namespace or "", tally.version, tally.counts))

    # ------------------------------------------------------------------ reading

    def _produce(
        self,
        names: list[str] | ClaimedNames,
        plan: ReadPlan | None,
        queue: asyncio.Queue,
        loop: asyncio.AbstractEventLoop,
        storage: ThreadPoolExecutor,
    ) -> None:
        """Read the documents in order and hand them over in batches, with what the tables know (reader thread)."""
        unchanged = dict(plan.unchanged) if plan is not None else {}
        if isinstance(names, ClaimedNames) and self.history is not None:
            # Each batch is decided as it is claimed, before its names are read.
            names.on_batch = lambda versions: unchanged.update(storage.submit(self._decide_claimed, versions).result())
        # Claimed names come once, as they are claimed: the reads and the listing order share them.
        listing, to_read = itertools.tee(names) if isinstance(names, ClaimedNames) else (names, names)
        documents = self.source.documents(name for name in to_read if name not in unchanged)
        lookup = self._looks_up
        try:
            entries = self._in_listing_order(listing, unchanged, documents)
            for batch in batched(entries, READ_BATCH_SIZE):
                if self._abandoned.is_set():
                    return
                read = [entry for entry in batch if isinstance(entry, DocumentRead)]
                if lookup and read:
                    stored, unscored = storage.submit(self._lookup, [entry.document for entry in read]).result()
                    prefix = self.source.stored_prefix
                    batch = [
                        DocumentRead(
                            entry.position,
                            entry.document,
                            entry.key,
                            stored.get(prefix + entry.document.source),
                            unscored.get(prefix + entry.document.source),
                        )
                        if isinstance(entry, DocumentRead)
                        else entry
                        for entry in batch
                    ]
                if not self._hand_over(queue, loop, batch):
                    return
        finally:
            documents.close()
            self._hand_over(queue, loop, None)

    def _in_listing_order(
        self, names: Iterable[str], unchanged: dict[str, Load], documents: Iterator[Document]
    ) -> Iterator[DocumentRead | _Unchanged | _ObjectRead]:
        """The run's entries in listing order: unchanged objects, documents read, ends of objects."""
        position = 0
        pending = next(documents, None)
        for name in names:
            if name in unchanged:
                yield _Unchanged(position, name, unchanged[name])
                position += 1
                continue
            while pending is not None and pending.container == name:
                yield DocumentRead(position, pending, _content_key(pending))
                position += 1
                pending = next(documents, None)
            if self.source.reads_objects:
                yield _ObjectRead(name)
        while pending is not None:  # inline texts and SQL rows
            yield DocumentRead(position, pending, _content_key(pending))
            position += 1
            pending = next(documents, None)

    def _lookup(self, documents: list[Document]) -> tuple[dict[str, StoredDocument], dict[str, Unscored]]:
        """What the load history holds for a batch of documents (storage thread)."""
        assert self.history is not None
        prefix = self.source.stored_prefix
        with_text = [document for document in documents if document.text is not None and document.text.strip()]
        stored = self.history.stored_documents(
            [prefix + document.source for document in with_text],
            {prefix + document.source: document.record_key or "" for document in with_text if document.entity},
        )
        unscored = self.history.unscored(prefix + document.source for document in documents)
        return stored, unscored

    def _hand_over(self, queue: asyncio.Queue, loop: asyncio.AbstractEventLoop, item: Any) -> bool:
        """Put ``item`` on the scorer's queue, waiting while it is full; False once the scorer is gone."""
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                future.result(timeout=HAND_OVER_POLL)
                return True
            except TimeoutError:
                if self._abandoned.is_set():
                    future.cancel()
                    return False
            except Exception:  # the loop is gone
                return False

    # ------------------------------------------------------------------ storing

    def _store_due(self) -> bool:
        """``WRITE_BATCH_SIZE`` documents wait for their store, or the oldest has waited ``WRITE_INTERVAL`` seconds."""
        assert self._loop is not None
        waiting = max(len(self._to_store), len(self._lines), len(self._unscored))
        if not waiting:
            return False
        now = self._loop.time()
        if self._waiting_since is None:
            self._waiting_since = now
        return waiting >= WRITE_BATCH_SIZE or now - self._waiting_since >= WRITE_INTERVAL

    async def _store_on_time(self, storage: ThreadPoolExecutor, outcome: ScoringOutcome) -> None:
        """
        Look a few times per ``WRITE_INTERVAL``: results that stop coming (a slow API, 429s) still get
        stored; the metrics are reported as the run goes.
        """
        while True:
            await asyncio.sleep(WRITE_INTERVAL / STORE_CHECKS_PER_INTERVAL)
            if self._store_due() and not self._write_failed:
                self._hand_over_writes(storage)
            self._report_usage(outcome)

    def _hand_over_writes(self, storage: ThreadPoolExecutor) -> None:
        """Give what waits to be stored to the storage thread (no await: never interleaved with another hand-over)."""
        assert self._loop is not None
        self._waiting_since = None
        documents, lines, loads, unscored = self._to_store, self._lines, self._loads, self._unscored
        self._to_store, self._lines, self._loads, self._unscored = [], [], [], []
        if documents or lines or loads or unscored:
            future = self._loop.run_in_executor(storage, self._write, documents, lines, loads, unscored)
            self._pending.append((future, len(documents) if self.writer is not None else 0))

    async def _flush(self, outcome: ScoringOutcome, storage: ThreadPoolExecutor) -> None:
        """Hand what waits to be stored to the storage thread; settle finished writes."""
        self._hand_over_writes(storage)
        while self._pending and (self._pending[0][0].done() or len(self._pending) > PENDING_WRITES):
            await self._settle_oldest_write(outcome)

    async def _settle_oldest_write(self, outcome: ScoringOutcome) -> None:
        future, count = self._pending.pop(0)
        try:
            refused = await future
        except BaseException:
            self._write_failed = True
            raise  # what the write raised: the task fails with it
        outcome.stored += count - len(refused)
        prefix = len(self.source.stored_prefix)
        for unstored in refused:
            document = unstored.document
            name = document.source[prefix:]
            self.log.error("%s: %s", name, unstored.error)
            outcome.record_unstored(document.position if document.position is not None else -1, name, unstored.error)

    def _write(
        self,
        documents: list[ScoredDocument],
        lines: list[dict[str, Any]],
        loads: list[Load],
        unscored: list[Unscored],
    ) -> list[UnstoredDocument]:
        """
        Store one batch (storage thread); after a failed write, refuse to write more.

        The scored documents go first, in the tables and in the result parts: a load is recorded only
        once its documents are stored in both (a retry does not read an object its load marks complete,
        so a kill between the two must leave the load unrecorded, not the lines missing). A
        document the database refused (the rest of its batch is stored) is returned, and recorded
        as unscored (failed, with the database's error) so its object's load does not hide it.
        """
        if self._write_failed:
            raise _WriteRefused("not stored: an earlier write failed")
        try:
            refused = self.writer.write(documents) if self.writer is not None and documents else []
            if self.result_files is not None and lines:
                self.result_files.write(lines)
            if self.history is not None:
                unstored = {item.document.source for item in refused}
                unscored = unscored + [
                    Unscored(
                        item.document.source,
                        FAILED,
                        item.document.fingerprint,
                        item.error,
                        item.document.record_key,
                        item.document.location,
                    )
                    for item in refused
                ]
                stored = [document for document in documents if document.source not in unstored]
                self.history.record(loads, unscored, stored)
        except BaseException:
            self._write_failed = True
            raise
        return refused

    async def _drain(self, outcome: ScoringOutcome, storage: ThreadPoolExecutor) -> None:
        """Store everything still buffered and wait for every pending write."""
        if not self._write_failed:
            await self._flush(outcome, storage)
        while self._pending:
            future, _ = self._pending[0]
            await asyncio.wait({future})
            if isinstance(future.exception(), _WriteRefused):
                self._pending.pop(0)  # handed over after the failure that stopped writing: nothing to say
                continue
            await self._settle_oldest_write(outcome)

    async def _close_storage(self, outcome: ScoringOutcome, storage: ThreadPoolExecutor) -> None:
        """Store what was scored (also after a failure or a stop), finish the result files, close the database."""
        assert self._loop is not None
        try:
            try:
                await self._drain(outcome, storage)
            finally:
                if self.result_files is not None:
                    outcome.results_uris = await self._loop.run_in_executor(storage, self.result_files.close)
        finally:
            if self.writer is not None:
                await self._loop.run_in_executor(storage, self.writer.close)


def _content_key(document: Document) -> str | None:
    """sha256 of a document's text (None when empty), or of its failure's cause when it could not be read."""
    if document.error is not None:
        return failure_fingerprint(document)
    text = document.text or ""
    return fingerprint(text) if text.strip() else None


class _WriteRefused(DeepgramError):
    """A write handed over after an earlier write failed, refused (the earlier failure is the one raised)."""


async def _cancelled(task: asyncio.Future) -> None:
    """Cancel ``task`` and wait until it has finished."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:  # its own failure is raised by whoever reads its result
        pass
