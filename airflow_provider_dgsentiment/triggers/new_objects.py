"""An event trigger for ``AssetWatcher``: fire when new or changed objects to score appear under a source."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import TriggerEvent

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.run.events import success_event
from airflow_provider_dgsentiment.storage.announcements import (
    DEFAULT_ANNOUNCED_TABLE,
    announce,
    new_unannounced_objects,
)
from airflow_provider_dgsentiment.storage.warehouse import DEFAULT_AVERAGES_TABLE
from airflow_provider_dgsentiment.triggers.termination import stopping_on_sigterm

#: Default seconds between two looks.
DEFAULT_POLL_INTERVAL = 60.0
#: Object URIs an event names at most (the count is always there).
MAX_EVENT_URIS = 100


class DeepgramNewObjectsTrigger(BaseEventTrigger):
    """
    Watch ``source`` and fire once per batch of new or changed objects, for ``AssetWatcher`` scheduling.

    Every ``poll_interval`` seconds it lists ``source`` and asks the load history of
    ``averages_table`` (in ``sql_conn_id``, the operator's database; or, for an operator with
    ``results_path`` alone, the history beside its results) which objects the operator would read:
    new ones, or ones changed since a complete read. Those not yet announced at that version become
    one event ``{"status": "success", "message", "source", "count", "uris"}`` (``uris``: the first
    100), recorded first in ``announced_table`` (or ``<results_path>/_load_history/announced/``), so a triggerer restart, or
    the next look before the scheduled run has scored them, never fires for them again. Its
    kwargs are plain JSON; SIGTERM stops it.

    :param source: a URI glob, prefix or object, or a list of those.
    :param sql_conn_id: the SQL connection of the operator's tables (the load history; the announcements).
    :param results_path: without ``sql_conn_id``: the operator's ``results_path``, where its load history is.
    :param results_conn_id: the operator's ``results_conn_id``.
    :param source_conn_id: the storage connection; None uses the one named in each URI.
    :param averages_table: the operator's averages table, whose load history decides what is new.
    :param poll_interval: seconds between two looks.
    :param watch: the name announcements are kept under; default one derived from ``source``.
    :param announced_table: the table of announcements.
    """

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        sql_conn_id: str | None = None,
        source_conn_id: str | None = None,
        averages_table: str = DEFAULT_AVERAGES_TABLE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        watch: str | None = None,
        announced_table: str = DEFAULT_ANNOUNCED_TABLE,
        results_path: str | None = None,
        results_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        if not (sql_conn_id or results_path):
            raise DeepgramConfigurationError(
                "DeepgramNewObjectsTrigger needs the operator's sql_conn_id or, without one, its results_path"
            )
        self.source = str(source) if isinstance(source, str) else [str(entry) for entry in source]
        self.sql_conn_id = sql_conn_id
        self.source_conn_id = source_conn_id
        self.averages_table = averages_table
        self.poll_interval = float(poll_interval)
        self.watch = watch or "source:" + hashlib.sha256(repr(self.source).encode()).hexdigest()[:16]
        self.announced_table = announced_table
        self.results_path = results_path
        self.results_conn_id = results_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return (
            f"{cls.__module__}.{cls.__qualname__}",
            {
                "source": self.source,
                "sql_conn_id": self.sql_conn_id,
                "source_conn_id": self.source_conn_id,
                "averages_table": self.averages_table,
                "poll_interval": self.poll_interval,
                "watch": self.watch,
                "announced_table": self.announced_table,
                "results_path": self.results_path,
                "results_conn_id": self.results_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        with stopping_on_sigterm(lambda: loop.call_soon_threadsafe(stopped.set)):
            while not stopped.is_set():
                try:
                    new = await asyncio.to_thread(self._new_objects)
                except Exception as exc:  # a storage or database hiccup: look again next time
                    self.log.warning("Looking for new objects at %s failed: %s; looking again", self.source, exc)
                    new = {}
                if new:
                    uris = sorted(new)
                    yield TriggerEvent(
                        success_event(
                            f"{len(uris)} new or changed object(s) at {self.source}",
                            source=self.source,
                            count=len(uris),
                            uris=uris[:MAX_EVENT_URIS],
                        )
                    )
                try:
                    await asyncio.wait_for(stopped.wait(), timeout=self.poll_interval)
                except asyncio.TimeoutError:
                    continue

    def _new_objects(self) -> dict[str, str]:
        """List, decide, and record the objects to announce (blocking: runs in a thread)."""
        where: dict[str, Any] = {
            "sql_conn_id": self.sql_conn_id,
            "announced_table": self.announced_table,
            "results_path": self.results_path,
            "results_conn_id": self.results_conn_id,
        }
        new = new_unannounced_objects(
            self.watch, self.source, self.source_conn_id, averages_table=self.averages_table, **where
        )
        if new:
            announce(self.watch, new, **where)
        return new


__all__ = ["DeepgramNewObjectsTrigger"]
