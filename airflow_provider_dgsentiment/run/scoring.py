"""One task run's scoring, the same in the worker and in the triggerer.

:class:`ScoringRun` lists the documents, reads each one once, settles those that need no
request (unreadable, empty, already stored with the same content), scores the rest on the
hook's async engine, and stores results as they complete: SQL rows through the
:class:`~airflow_provider_dgsentiment.storage.warehouse.WarehouseWriter` and JSONL lines through
:class:`~airflow_provider_dgsentiment.storage.result_files.ResultFiles`, a few hundred documents at
a time, so a crash loses at most one batch and memory stays flat at any size.

Blocking work never runs on the event loop: listing and reading happen in a reader
thread, every SQL statement and result-file write in one storage thread (SQLite
connections belong to the thread that opened them). The worker drives a run with
``asyncio.run``; the trigger awaits it in the triggerer's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.exceptions import DeepgramAPIError, DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.run.outcome import SKIP_ALREADY_SCORED, ProgressLog, ScoringOutcome
from airflow_provider_dgsentiment.storage.lineage import input_locations
from airflow_provider_dgsentiment.storage.result_files import ResultFiles, failed_line, scored_line, skipped_line
from airflow_provider_dgsentiment.storage.sources import SKIP_EMPTY, Document, DocumentSource, fingerprint
from airflow_provider_dgsentiment.storage.warehouse import ScoredDocument, WarehouseWriter, batched
from airflow_provider_dgsentiment.storage.work_claims import ClaimedNames

if TYPE_CHECKING:
    from logging import Logger as StdLogger

    # The task's or trigger's logger: a stdlib logger or Airflow's structlog logger.
    Logger = StdLogger | Any

    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

#: Documents read, fingerprinted and looked up in the averages table at once.
READ_BATCH_SIZE = 200
#: Read batches waiting for the scorer at most (the read-ahead of the whole run).
QUEUED_READ_BATCHES = 4
#: Scored documents per SQL transaction and per result-file write.
WRITE_BATCH_SIZE = 200
#: Writes waiting for the storage thread at most before scoring waits for them.
PENDING_WRITES = 4
#: Seconds between two checks of a blocked hand-over from the reader thread.
HAND_OVER_POLL = 0.5
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
    """

    language: str = "en"
    max_concurrency: int | None = None
    skip_scored: bool = True
    fail_on_empty_source: bool = True
    max_documents: int | None = None
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    tags: tuple[str, ...] = ()
    max_input_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tags": list(self.tags),
            "max_input_tokens": self.max_input_tokens,
            "language": self.language,
            "max_concurrency": self.max_concurrency,
            "skip_scored": self.skip_scored,
            "fail_on_empty_source": self.fail_on_empty_source,
            "max_documents": self.max_documents,
            "progress_interval": self.progress_interval,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoringOptions:
        values = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        values["tags"] = tuple(values.get("tags") or ())
        return cls(**values)


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
        self.result_files = result_files
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stop_reason: str | None = None
        #: Set when the scorer no longer takes documents: the reader thread then stops.
        self._abandoned = threading.Event()
        self._to_store: list[ScoredDocument] = []
        self._lines: list[dict[str, Any]] = []
        self._pending: list[tuple[asyncio.Future, int]] = []
        #: A write failed: the database (or storage) is broken, so nothing more is written.
        self._write_failed = False
        #: Input tokens this task run already stored (an earlier try), counted against ``max_input_tokens``.
        self._used_input_tokens = 0

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
        outcome = ScoringOutcome(keep=self.keep)
        progress = ProgressLog(self.log, float(self.options.progress_interval))
        storage = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepgram-storage")
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepgram-reader")
        consume: asyncio.Future | None = None
        try:
            await self._loop.run_in_executor(storage, self._prepare_storage)
            names = await self._loop.run_in_executor(reader, self._list_names)
            # Record files and queries hold an unknown number of documents: count them as they come.
            outcome.total = 0 if isinstance(names, ClaimedNames) or self.source.holds_records(names) else len(names)
            if isinstance(names, ClaimedNames):
                outcome.inputs = input_locations(self.source.entries)
            elif not self.source.is_inline and not self.source.is_sql:
                outcome.inputs = input_locations(names)
            self.log.info(
                "Scoring %d document(s) from %s (language=%s, max_concurrency=%s, skip_scored=%s)",
                outcome.total,
                self.source.describe(),
                self.options.language,
                self.options.max_concurrency or "from connection",
                self.options.skip_scored and self.writer is not None,
            )
            if names:
                consume = asyncio.ensure_future(self._consume(names, outcome, progress, storage, reader))
                stopper = asyncio.ensure_future(self._stop_requested.wait())
                try:
                    await asyncio.wait({consume, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                if consume.done():
                    consume.result()  # raises what went wrong
                else:
                    self.log.warning("Stopping: %s", self._stop_reason)
                    outcome.stopped = self._stop_reason
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
        progress.update(outcome, final=True)
        return outcome

    def _prepare_storage(self) -> None:
        """Check the tables and clear earlier result files, before the first request (storage thread)."""
        if self.writer is not None:
            self.writer.check_tables()
            if self.options.max_input_tokens is not None:
                self._used_input_tokens = self.writer.stored_input_tokens()
                if self._used_input_tokens:
                    self.log.info(
                        "%d input tokens already stored by this task run count against max_input_tokens=%d",
                        self._used_input_tokens,
                        self.options.max_input_tokens,
                    )
        if self.result_files is not None:
            deleted = self.result_files.begin()
            if deleted:
                self.log.info("Deleted %d result part(s) of an earlier try in %s", deleted, self.result_files.folder)

    def _list_names(self) -> list[str] | ClaimedNames:
        names, unmatched = self.source.list_names(log=self.log)
        for entry in unmatched:
            if names:
                self.log.warning("source entry %s matched no objects", entry)
        if not names and not self.source.is_inline:
            message = f"{self.source.describe()} matched no objects"
            if self.options.fail_on_empty_source:
                raise DeepgramError(f"{message} (set fail_on_empty_source=False to succeed with zero documents)")
            self.log.warning("%s; nothing to score", message)
        bound = self.options.max_documents
        if bound is not None and isinstance(names, list) and len(names) > bound:
            raise too_many_for_the_event(f"{self.source.describe()} names {len(names)} documents, more than", bound)
        return names

    async def _consume(
        self,
        names: list[str] | ClaimedNames,
        outcome: ScoringOutcome,
        progress: ProgressLog,
        storage: ThreadPoolExecutor,
        reader: ThreadPoolExecutor,
    ) -> None:
        """Feed the documents to the engine and record each result as it completes."""
        assert self._loop is not None
        queue: asyncio.Queue[list[tuple[int, Document, str | None, str | None]] | None] = asyncio.Queue(
            QUEUED_READ_BATCHES
        )
        producing = self._loop.run_in_executor(reader, self._produce, names, queue, self._loop, storage)
        in_request: dict[int, tuple[int, str, str]] = {}
        prefix = self.source.stored_prefix
        bound = self.options.max_documents

        async def texts() -> AsyncIterator[str]:
            sent = 0
            while True:
                batch = await queue.get()
                if batch is None:
                    return
                for position, document, content_key, stored_key in batch:
                    if bound is not None and position >= bound:
                        raise too_many_for_the_event(f"{self.source.describe()} holds more than", bound)
                    outcome.total = max(outcome.total, position + 1)
                    name = document.source
                    if document.error is not None:
                        outcome.record_failed(position, name, document.error)
                        self._lines.append(failed_line(name, document.error))
                    elif content_key is None:
                        outcome.record_skipped(position, name, SKIP_EMPTY)
                        self._lines.append(skipped_line(name, SKIP_EMPTY))
                    elif stored_key == content_key:
                        outcome.record_skipped(position, name, SKIP_ALREADY_SCORED)
                        self._lines.append(skipped_line(name, SKIP_ALREADY_SCORED))
                    else:
                        in_request[sent] = (position, name, content_key)
                        sent += 1
                        yield document.text or ""
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
                    position, name, content_key = in_request.pop(index)
                    if isinstance(result, DeepgramAPIError):
                        outcome.record_failed(position, name, str(result), result.request_id)
                        self._lines.append(failed_line(name, str(result)))
                        if result.systemic and outcome.systemic_error is None:
                            outcome.systemic_error = result
                            self.log.error("Stopping: %s", result)
                    else:
                        outcome.record_scored(position, name, result)
                        if self.writer is not None:
                            self._to_store.append(
                                ScoredDocument(prefix + name, content_key, result, self.options.language)
                            )
                        if self.result_files is not None:
                            self._lines.append(scored_line(name, content_key, result.to_dict()))
                    if len(self._to_store) >= WRITE_BATCH_SIZE or len(self._lines) >= WRITE_BATCH_SIZE:
                        await self._flush(outcome, storage)
                    progress.update(outcome)
        finally:
            self._abandoned.set()
            await asyncio.wait({producing})
        producing.result()  # a listing or reading failure that is not one document's

    def _produce(
        self,
        names: list[str] | ClaimedNames,
        queue: asyncio.Queue,
        loop: asyncio.AbstractEventLoop,
        storage: ThreadPoolExecutor,
    ) -> None:
        """Read the documents in order and hand them over in batches, with their stored fingerprints (reader thread)."""
        documents = self.source.documents(names)
        lookup = self.writer is not None and self.options.skip_scored
        prefix = self.source.stored_prefix
        try:
            for batch in batched(enumerate(documents), READ_BATCH_SIZE):
                if self._abandoned.is_set():
                    return
                keys = {
                    position: fingerprint(document.text)
                    for position, document in batch
                    if document.text is not None and document.text.strip()
                }
                stored: dict[str, str] = {}
                if lookup and keys:
                    wanted = [prefix + document.source for position, document in batch if position in keys]
                    assert self.writer is not None  # lookup implies a writer
                    stored = storage.submit(self.writer.stored_fingerprints, wanted).result()
                entries = [
                    (position, document, keys.get(position), stored.get(prefix + document.source))
                    for position, document in batch
                ]
                if not self._hand_over(queue, loop, entries):
                    return
        finally:
            documents.close()
            self._hand_over(queue, loop, None)

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

    async def _flush(self, outcome: ScoringOutcome, storage: ThreadPoolExecutor) -> None:
        """Hand the scored documents and result lines so far to the storage thread."""
        assert self._loop is not None
        documents, lines = self._to_store, self._lines
        self._to_store, self._lines = [], []
        if documents or lines:
            future = self._loop.run_in_executor(storage, self._write, documents, lines)
            self._pending.append((future, len(documents)))
        while self._pending and (self._pending[0][0].done() or len(self._pending) > PENDING_WRITES):
            await self._settle_oldest_write(outcome)

    async def _settle_oldest_write(self, outcome: ScoringOutcome) -> None:
        future, count = self._pending.pop(0)
        try:
            await future
        except BaseException:
            self._write_failed = True
            raise  # what the write raised: the task fails with it
        outcome.stored += count

    def _write(self, documents: list[ScoredDocument], lines: list[dict[str, Any]]) -> None:
        """Store one batch (storage thread); after a failed write, refuse to write more."""
        if self._write_failed:
            raise _WriteRefused("not stored: an earlier write failed")
        try:
            if self.writer is not None and documents:
                self.writer.write(documents)
            if self.result_files is not None and lines:
                self.result_files.write(lines)
        except BaseException:
            self._write_failed = True
            raise

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
