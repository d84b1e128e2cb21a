"""Triggers for the deferrable modes: score objects with async I/O, and wait for objects to appear.

Both triggers take plain JSON keyword arguments (connection ids, URIs, options; never
the API key, never document text) and yield exactly one terminal event, a plain dict
with ``"status"`` ``"success"`` or ``"error"``. They never raise out of ``run()``:
an unexpected failure becomes an ``"error"`` event that says what went wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dgsentiment import exceptions
from airflow_provider_dgsentiment.documents import SKIP_EMPTY, fingerprint, read_document
from airflow_provider_dgsentiment.exceptions import (
    DeepgramAPIError,
    DeepgramResponseError,
    DocumentReadError,
    make_api_error,
)
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook
from airflow_provider_dgsentiment.warehouse import DEFAULT_AVERAGES_TABLE

#: Objects read at once (each in a thread, never on the event loop).
READ_CONCURRENCY = 8
#: Documents handed to one ``aanalyze_many`` call: this many per slot of ``max_concurrency``.
#: The next batch is read while this one is scored, so at most two batches of text are in memory.
SCORE_BATCH_PER_SLOT = 32
MIN_SCORE_BATCH = 64
#: The reason reported for an object not sent because a systemic error stopped the run.
NOT_SENT = "not sent: the run stopped at a systemic error"
#: Default seconds between two looks at the storage in :class:`DeepgramObjectsTrigger`.
DEFAULT_POKE_INTERVAL = 60.0


def api_error_from_dict(data: dict[str, Any]) -> DeepgramAPIError:
    """
    Rebuild the typed error that :meth:`DeepgramAPIError.to_dict` described.

    The class is looked up by name among the provider's own error classes only; an
    unknown name falls back to the class :func:`make_api_error` picks for the status.

    :param data: ``{"error_class", "status", "err_code", "err_msg", "request_id"}``.
    """
    status = int(data.get("status") or 0)
    err_code = data.get("err_code")
    err_msg = data.get("err_msg")
    request_id = data.get("request_id")
    cls = _api_error_classes().get(str(data.get("error_class")))
    if cls is None:
        return make_api_error(status, {"err_code": err_code, "err_msg": err_msg}, request_id=request_id)
    if issubclass(cls, DeepgramResponseError):
        return cls(err_msg or "", status=status, request_id=request_id)
    return cls(status, err_code, err_msg, request_id)


def _api_error_classes() -> dict[str, type[DeepgramAPIError]]:
    found: dict[str, type[DeepgramAPIError]] = {}
    pending: list[type[DeepgramAPIError]] = [DeepgramAPIError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == exceptions.__name__:
            found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def error_event(exc: BaseException) -> dict[str, Any]:
    """
    Describe an unexpected failure as a terminal ``"error"`` event payload.

    :return: ``{"status": "error", "message", "error": <to_dict()> or None, "error_class"}``.
    """
    if isinstance(exc, DeepgramAPIError):
        return {"status": "error", "message": str(exc), "error": exc.to_dict(), "error_class": type(exc).__name__}
    name = type(exc).__name__
    return {"status": "error", "message": str(exc) or name, "error": None, "error_class": name}


@dataclass(frozen=True)
class _ReadObject:
    """One object as the trigger read it: its text and fingerprint, or why it could not be read."""

    text: str | None = None
    fingerprint: str | None = None
    read_error: str | None = None

    @property
    def empty(self) -> bool:
        return self.text is not None and not self.text.strip()


def _read_object(uri: str, conn_id: str | None) -> _ReadObject:
    """Read one object and fingerprint it (blocking: run it in a thread)."""
    try:
        text = read_document(uri, conn_id)
    except DocumentReadError as error:
        return _ReadObject(read_error=error.reason)
    except Exception as exc:  # a URI the storage layer cannot even parse, for instance
        return _ReadObject(read_error=f"could not read object: {type(exc).__name__}: {exc}")
    return _ReadObject(text=text, fingerprint=fingerprint(text))


class DeepgramSentimentTrigger(BaseTrigger):
    """
    Score text objects with Deepgram's Sentiment Analysis, with async I/O, in the triggerer.

    Used by ``DeepgramSentimentOperator(deferrable=True)``. Objects are read in threads
    (``asyncio.to_thread``, a few at a time, the next batch while the current one is
    scored) and scored on one async HTTP client with the hook's retries, adaptive
    concurrency and chunking. A systemic error (bad key, no credit, unsupported
    language) stops sending, as in the worker.

    The one event is ``{"status": "success", "message", "documents", "systemic_error"}``
    with one entry in ``documents`` per URI, in the order of ``uris``, each ``{"source"}``
    plus exactly one of:

    - ``"fingerprint"`` and ``"result"``: scored; the result in the API's response shape;
    - ``"error"``: Deepgram's answer was an error, as ``DeepgramAPIError.to_dict()``;
    - ``"read_error"``: why the object could not be read (missing, not UTF-8, ...);
    - ``"skipped"``: ``"empty document"`` (empty or whitespace only, no request sent);
    - ``"not_sent"``: a systemic error stopped the run before this object was sent.

    ``systemic_error`` is the error that stopped the run (``to_dict()``) or None. An
    unexpected failure (no key, unknown connection, ...) gives instead
    ``{"status": "error", "message", "error": <to_dict()> or None, "error_class"}``.

    :param deepgram_conn_id: the ``deepgram`` connection holding the API key.
    :param uris: the objects to score (URIs without connection id, as the operator names them).
    :param source_conn_id: the storage connection to read them with.
    :param language: the language code of the texts.
    :param max_concurrency: requests in flight at most; None for the connection's setting.
    :param resume_state: JSON the deferring operator needs back (its outcome so far),
        returned unchanged in the event under the same key. It travels with the trigger
        because ``dag.test()`` (before apache/airflow#69942) drops ``defer(kwargs=...)``.
    """

    def __init__(
        self,
        *,
        deepgram_conn_id: str,
        uris: Sequence[str],
        source_conn_id: str | None = None,
        language: str = "en",
        max_concurrency: int | None = None,
        resume_state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.deepgram_conn_id = deepgram_conn_id
        self.uris = [str(uri) for uri in uris]
        self.source_conn_id = source_conn_id
        self.language = language
        self.max_concurrency = max_concurrency
        self.resume_state = resume_state

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return (
            f"{cls.__module__}.{cls.__qualname__}",
            {
                "deepgram_conn_id": self.deepgram_conn_id,
                "uris": list(self.uris),
                "source_conn_id": self.source_conn_id,
                "language": self.language,
                "max_concurrency": self.max_concurrency,
                "resume_state": self.resume_state,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            payload = await self._score()
        except Exception as exc:  # never raise out of run(): the one event says what went wrong
            self.log.error("Scoring %d object(s) failed: %s", len(self.uris), exc)
            payload = error_event(exc)
        if self.resume_state is not None:
            payload["resume_state"] = self.resume_state
        yield TriggerEvent(payload)

    async def _score(self) -> dict[str, Any]:
        hook = DeepgramSentimentHook(deepgram_conn_id=self.deepgram_conn_id, max_concurrency=self.max_concurrency)
        settings = await hook.aget_settings()  # a missing key or connection fails here, before any read
        bound = self.max_concurrency or settings.max_concurrency
        batch_size = max(MIN_SCORE_BATCH, SCORE_BATCH_PER_SLOT * bound)
        total = len(self.uris)
        batches = [range(start, min(start + batch_size, total)) for start in range(0, total, batch_size)]
        documents: list[dict[str, Any] | None] = [None] * total
        counts = {"scored": 0, "failed": 0, "skipped": 0}
        stopped_by: DeepgramAPIError | None = None
        self.log.info(
            "Scoring %d object(s) in %d batch(es) (language=%s, max_concurrency=%d)",
            total,
            len(batches),
            self.language,
            bound,
        )
        reading: asyncio.Future[list[_ReadObject]] | None = None  # the next batch, read while this one is scored
        try:
            for number, batch in enumerate(batches):
                loaded = await (reading if reading is not None else self._read_batch(batch))
                reading = None
                if number + 1 < len(batches):
                    reading = asyncio.ensure_future(self._read_batch(batches[number + 1]))
                stopped_by = await self._score_batch(hook, batch, loaded, documents, counts)
                self.log.info(
                    "Processed %d/%d object(s) (scored %d, failed %d, skipped %d)",
                    batch.stop,
                    total,
                    counts["scored"],
                    counts["failed"],
                    counts["skipped"],
                )
                if stopped_by is not None:
                    self.log.error("Stopping: %s", stopped_by)
                    break
        finally:
            if reading is not None:
                reading.cancel()
        not_sent = 0
        for index, document in enumerate(documents):
            if document is None:
                documents[index] = {"source": self.uris[index], "not_sent": NOT_SENT}
                not_sent += 1
        message = (
            f"Scored {counts['scored']} of {total} object(s): {counts['failed']} failed, "
            f"{counts['skipped']} skipped" + (f", {not_sent} not sent after: {stopped_by}" if stopped_by else "")
        )
        return {
            "status": "success",
            "message": message,
            "documents": documents,
            "systemic_error": stopped_by.to_dict() if stopped_by is not None else None,
        }

    async def _read_batch(self, batch: range) -> list[_ReadObject]:
        """Read the objects of ``batch`` in threads, ``READ_CONCURRENCY`` at a time, in order."""
        slots = asyncio.Semaphore(READ_CONCURRENCY)

        async def read(index: int) -> _ReadObject:
            async with slots:
                return await asyncio.to_thread(_read_object, self.uris[index], self.source_conn_id)

        return list(await asyncio.gather(*(read(index) for index in batch)))

    async def _score_batch(
        self,
        hook: DeepgramSentimentHook,
        batch: range,
        loaded: list[_ReadObject],
        documents: list[dict[str, Any] | None],
        counts: dict[str, int],
    ) -> DeepgramAPIError | None:
        """Score the readable, non-empty objects of one batch; fill their ``documents`` entries."""
        to_send: list[tuple[int, _ReadObject]] = []
        for index, read in zip(batch, loaded):
            source = self.uris[index]
            if read.read_error is not None:
                documents[index] = {"source": source, "read_error": read.read_error}
                counts["failed"] += 1
            elif read.empty:
                documents[index] = {"source": source, "skipped": SKIP_EMPTY}
                counts["skipped"] += 1
            else:
                to_send.append((index, read))
        stopped_by: DeepgramAPIError | None = None
        if not to_send:
            return None
        texts = (read.text or "" for _, read in to_send)
        results = hook.aanalyze_many(texts, language=self.language, max_concurrency=self.max_concurrency)
        async with aclosing(results):
            async for sent, result in results:
                index, read = to_send[sent]
                source = self.uris[index]
                if isinstance(result, DeepgramAPIError):
                    documents[index] = {"source": source, "error": result.to_dict()}
                    counts["failed"] += 1
                    if result.systemic and stopped_by is None:
                        stopped_by = result
                else:
                    documents[index] = {"source": source, "fingerprint": read.fingerprint, "result": result.to_dict()}
                    counts["scored"] += 1
        return stopped_by


class DeepgramObjectsTrigger(BaseTrigger):
    """
    Wait until at least ``min_objects`` objects match ``path``; for ``DeepgramSentimentSensor(deferrable=True)``.

    Every ``poke_interval`` seconds it looks at the storage (and, with ``sql_conn_id``,
    the averages table) once, in a thread, with the sensor's own ``find_objects``. The
    one event is ``{"status": "success", "message", "uris", "matched", "scored"}`` when
    enough objects count (``uris`` sorted, without connection id), or
    ``{"status": "error", "message", "error": None, "error_class"}`` when looking fails.
    It keeps waiting otherwise; the sensor's ``timeout`` bounds the wait.

    :param path: a URI glob, prefix or object, or a list of those (strings).
    :param conn_id: the storage connection; None uses the one named in each URI.
    :param min_objects: how many objects must count.
    :param sql_conn_id: a SQL connection with the averages table; when set, only objects
        not yet scored count.
    :param averages_table: the averages table, ``name`` or ``schema.name``.
    :param poke_interval: seconds between two looks.
    """

    def __init__(
        self,
        *,
        path: str | Sequence[str],
        conn_id: str | None = None,
        min_objects: int = 1,
        sql_conn_id: str | None = None,
        averages_table: str = DEFAULT_AVERAGES_TABLE,
        poke_interval: float = DEFAULT_POKE_INTERVAL,
    ) -> None:
        super().__init__()
        self.path = str(path) if isinstance(path, str) or not isinstance(path, Sequence) else [str(p) for p in path]
        self.conn_id = conn_id
        self.min_objects = min_objects
        self.sql_conn_id = sql_conn_id
        self.averages_table = averages_table
        self.poke_interval = float(poke_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return (
            f"{cls.__module__}.{cls.__qualname__}",
            {
                "path": self.path,
                "conn_id": self.conn_id,
                "min_objects": self.min_objects,
                "sql_conn_id": self.sql_conn_id,
                "averages_table": self.averages_table,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            payload = await self._wait()
        except Exception as exc:  # never raise out of run(): the one event says what went wrong
            self.log.error("Looking for objects at %s failed: %s", self.path, exc)
            payload = error_event(exc)
        yield TriggerEvent(payload)

    async def _wait(self) -> dict[str, Any]:
        # The sensor module imports this one to defer; import it here to avoid a cycle.
        from airflow_provider_dgsentiment.sensors.sentiment import find_objects

        while True:
            sensed = await asyncio.to_thread(
                find_objects,
                self.path,
                self.conn_id or None,
                sql_conn_id=self.sql_conn_id or None,
                averages_table=self.averages_table,
            )
            count = len(sensed.uris)
            if count >= self.min_objects:
                return {
                    "status": "success",
                    "message": f"{count} object(s) to score at {self.path} (needed {self.min_objects})",
                    "uris": list(sensed.uris),
                    "matched": sensed.matched,
                    "scored": sensed.scored,
                }
            self.log.info(
                "%s: %d object(s) match, %d to score (need %d); looking again in %.0fs",
                self.path,
                sensed.matched,
                count,
                self.min_objects,
                self.poke_interval,
            )
            await asyncio.sleep(self.poke_interval)


__all__ = [
    "DeepgramObjectsTrigger",
    "DeepgramSentimentTrigger",
    "api_error_from_dict",
    "error_event",
]
