"""Triggers for the deferrable modes: score and store documents with async I/O, and wait for objects to appear.

Both triggers take plain JSON keyword arguments (connection ids, URIs, options; never
the API key, never document text) and yield exactly one terminal event (the contract
lives in :mod:`airflow_provider_dgsentiment.run.events`). They never raise out of ``run()``:
an unexpected failure becomes an ``"error"`` event that says what went wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dgsentiment.exceptions import DeepgramError
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook
from airflow_provider_dgsentiment.run.events import OUTCOME_KEY, error_event, success_event, timeout_event
from airflow_provider_dgsentiment.run.scoring import ScoringOptions, ScoringRun
from airflow_provider_dgsentiment.storage.result_files import ResultFiles
from airflow_provider_dgsentiment.storage.sources import DocumentSource, find_objects
from airflow_provider_dgsentiment.storage.warehouse import DEFAULT_AVERAGES_TABLE, RunIdentity, WarehouseWriter
from airflow_provider_dgsentiment.triggers.termination import stopping_on_sigterm

#: Default seconds between two looks at the storage in :class:`DeepgramObjectsTrigger`.
DEFAULT_POKE_INTERVAL = 60.0
#: Why a trigger told to stop by SIGTERM stopped.
SIGTERM_REASON = "the process running the trigger got SIGTERM (a triggerer shutting down, or airflow dags test stopped)"


class DeepgramSentimentTrigger(BaseTrigger):
    """
    List, read, score and store a task's documents with async I/O, in the triggerer.

    Used by ``DeepgramSentimentOperator(deferrable=True)``: the same
    :class:`~airflow_provider_dgsentiment.run.scoring.ScoringRun` as in the worker, so
    each document is read once (here) and the results go to SQL and ``results_path``
    from here. The one event is ``{"status": "success", "message", "outcome"}`` where
    ``outcome`` is ``ScoringOutcome.to_state()``: counts, token totals, the first
    failures, the result file URIs, and per-document items only for
    ``xcom_output="full"``/``"summary"`` (which the operator limits to 1,000 documents).
    An unexpected failure (no key, unknown connection, a source matching nothing, ...)
    gives ``{"status": "error", "message", "error", "error_class"}`` instead.

    :param deepgram_conn_id: the ``deepgram`` connection holding the API key.
    :param source: ``DocumentSource.to_json()``: the ``source`` entries, storage
        connection, shard and stored-name prefix.
    :param xcom_output: the operator's XCom shape (which per-document items to keep).
    :param options: ``ScoringOptions.to_json()``.
    :param warehouse: the SQL destination (``sql_conn_id``, ``segments_table``,
        ``averages_table``, ``dag_id``, ``task_id``, ``run_id``), or None.
    :param results: the ``results_path`` destination (``results_path``, ``conn_id``,
        ``dag_id``, ``run_id``, ``task_id``, ``map_index``), or None.
    :param sql: 0.2's name of ``warehouse``, accepted so a task deferred under 0.2 resumes.
    """

    def __init__(
        self,
        *,
        deepgram_conn_id: str,
        source: dict[str, Any],
        xcom_output: str = "manifest",
        options: dict[str, Any] | None = None,
        warehouse: dict[str, Any] | None = None,
        results: dict[str, Any] | None = None,
        sql: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.deepgram_conn_id = deepgram_conn_id
        self.source = dict(source)
        self.xcom_output = xcom_output
        self.options = dict(options or {})
        warehouse = warehouse or sql
        self.warehouse = dict(warehouse) if warehouse else None
        self.results = dict(results) if results else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return (
            f"{cls.__module__}.{cls.__qualname__}",
            {
                "deepgram_conn_id": self.deepgram_conn_id,
                "source": self.source,
                "xcom_output": self.xcom_output,
                "options": self.options,
                "warehouse": self.warehouse,
                "results": self.results,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        source = DocumentSource.from_json(self.source)
        try:
            payload = await self._score(source)
        except Exception as exc:  # never raise out of run(): the one event says what went wrong
            self.log.error("Scoring %s failed: %s", source.describe(), exc)
            payload = error_event(exc)
        yield TriggerEvent(payload)

    async def _score(self, source: DocumentSource) -> dict[str, Any]:
        options = ScoringOptions.from_json(self.options)
        hook = DeepgramSentimentHook(deepgram_conn_id=self.deepgram_conn_id, max_concurrency=options.max_concurrency)
        await hook.aget_settings()  # a missing key or connection fails here, before any read
        # A thread: it looks up the storage connection (blocking), before any request.
        result_files = await asyncio.to_thread(ResultFiles.for_task, **self.results) if self.results else None
        run = ScoringRun(
            source=source,
            hook=hook,
            keep=self.xcom_output,
            options=options,
            log=self.log,
            writer=self._writer(),
            result_files=result_files,
        )
        with stopping_on_sigterm(lambda: run.stop(SIGTERM_REASON)):
            outcome = await run.run()
        message = (
            f"Scored {outcome.scored} of {outcome.total} document(s): {outcome.failed} failed, "
            f"{outcome.skipped} skipped, {outcome.stored} stored"
        )
        if outcome.systemic_error is not None:
            message += f"; stopped after: {outcome.systemic_error}"
        return success_event(message, **{OUTCOME_KEY: outcome.to_state()})

    def _writer(self) -> WarehouseWriter | None:
        if not self.warehouse:
            return None
        destination = self.warehouse
        return WarehouseWriter(
            destination["sql_conn_id"],
            segments_table=destination["segments_table"],
            averages_table=destination["averages_table"],
            run=RunIdentity(
                dag_id=destination.get("dag_id"), task_id=destination.get("task_id"), run_id=destination.get("run_id")
            ),
        )


class DeepgramObjectsTrigger(BaseTrigger):
    """
    Wait until at least ``min_objects`` objects match ``source``; for ``DeepgramSentimentSensor(deferrable=True)``.

    Every ``poke_interval`` seconds it looks at the storage (and, with ``sql_conn_id``,
    the operator's load history) once, in a thread, with the same
    :func:`~airflow_provider_dgsentiment.storage.sources.find_objects` as the sensor. The one
    event is ``{"status": "success", "message", "uris", "matched", "scored"}`` when enough
    objects count (``uris`` sorted, without connection id; omitted when ``return_uris`` is
    False), or an ``"error"`` event when looking fails. It keeps waiting otherwise; the
    sensor's ``timeout`` bounds the wait.

    :param source: a URI glob, prefix or object, or a list of those (strings).
    :param source_conn_id: the storage connection; None uses the one named in each URI.
    :param min_objects: how many objects must count.
    :param sql_conn_id: a SQL connection with the averages table; when set, only objects
        not yet scored count.
    :param averages_table: the averages table, ``name`` or ``schema.name``.
    :param poke_interval: seconds between two looks.
    :param return_uris: put the URIs in the event (False: counts only, for big listings).
    :param deadline: an ISO-8601 UTC time (the sensor's ``timeout`` from its start): when it
        passes, the trigger ends with an ``"error"`` event of ``error_class``
        ``"AirflowSensorTimeout"`` by itself, wherever it runs (triggerer, ``airflow dags test``).
        None waits without end.
    :param reading: the operator's reading options (``format``, ``text_field``, ``id_field``,
        ``key_namespace``), for the load history's decision; with ``results_path`` (and
        ``results_conn_id``) when that history lives beside the results (no ``sql_conn_id``).
    :param conn_id: 0.2's name of ``source_conn_id``, accepted so a sensor deferred under 0.2 resumes.
    """

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        source_conn_id: str | None = None,
        min_objects: int = 1,
        sql_conn_id: str | None = None,
        averages_table: str = DEFAULT_AVERAGES_TABLE,
        poke_interval: float = DEFAULT_POKE_INTERVAL,
        return_uris: bool = True,
        deadline: str | None = None,
        reading: dict[str, Any] | None = None,
        conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.deadline = deadline
        self.source = str(source) if isinstance(source, str) else [str(entry) for entry in source]
        self.source_conn_id = source_conn_id or conn_id
        self.min_objects = min_objects
        self.sql_conn_id = sql_conn_id
        self.averages_table = averages_table
        self.poke_interval = float(poke_interval)
        self.return_uris = return_uris
        self.reading = dict(reading or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return (
            f"{cls.__module__}.{cls.__qualname__}",
            {
                "source": self.source,
                "source_conn_id": self.source_conn_id,
                "min_objects": self.min_objects,
                "sql_conn_id": self.sql_conn_id,
                "averages_table": self.averages_table,
                "poke_interval": self.poke_interval,
                "return_uris": self.return_uris,
                "deadline": self.deadline,
                "reading": self.reading,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        try:
            with stopping_on_sigterm(lambda: loop.call_soon_threadsafe(stopped.set)):
                payload = await self._wait(stopped)
        except Exception as exc:  # never raise out of run(): the one event says what went wrong
            self.log.error("Looking for objects at %s failed: %s", self.source, exc)
            payload = error_event(exc)
        yield TriggerEvent(payload)

    async def _wait(self, stopped: asyncio.Event) -> dict[str, Any]:
        deadline = datetime.fromisoformat(self.deadline) if self.deadline else None
        while True:
            sensed = await asyncio.to_thread(
                find_objects,
                self.source,
                self.source_conn_id or None,
                sql_conn_id=self.sql_conn_id or None,
                averages_table=self.averages_table,
                log=self.log,
                **self.reading,
            )
            count = len(sensed.uris)
            if count >= self.min_objects:
                return success_event(
                    f"{count} object(s) to score at {self.source} (needed {self.min_objects})",
                    uris=list(sensed.uris) if self.return_uris else None,
                    matched=sensed.matched,
                    scored=sensed.scored,
                    to_score=count,
                    records=sensed.records,
                    unknown=sensed.unknown,
                )
            self.log.info(
                "%s: %d object(s) match, %d to score (need %d); looking again in %.0fs",
                self.source,
                sensed.matched,
                count,
                self.min_objects,
                self.poke_interval,
            )
            pause = self.poke_interval
            if deadline is not None:
                left = (deadline - datetime.now(timezone.utc)).total_seconds()
                if left <= 0:
                    return timeout_event(
                        f"{self.source}: {count} object(s) to score, not {self.min_objects}, by {self.deadline}"
                    )
                pause = min(pause, left)
            try:
                await asyncio.wait_for(stopped.wait(), timeout=pause)
            except asyncio.TimeoutError:
                continue
            raise DeepgramError(f"Stopped waiting for objects at {self.source}: {SIGTERM_REASON}")


__all__ = ["DeepgramObjectsTrigger", "DeepgramSentimentTrigger"]
