"""List once, claim as you go: a run's objects listed once into SQL, handed out in small batches.

The sensor's look (``claims=``, :func:`publish_names`) or a planning step
(:func:`~.sources.publish_listing`) lists the source once into the ``dgsentiment_work_claims``
table of the results database: one row per batch of object names. Scoring tasks given that
listing (the operator's ``claims`` argument) never list the source again; each takes the next
batch nobody holds (:class:`ClaimedNames`, iterated lazily by the scorer's reader thread), so a
fast or early task takes more batches and the tasks finish together.

Crash-safe:

- a claim names its holder (the task: dag, run, task, map index) and expires ``ttl`` seconds
  after it was taken or last renewed (every claim renews the holder's others);
- a retried task is the same holder: it takes its own unfinished batches back first, at once;
  documents of those already stored are skipped by their fingerprint, so nothing is paid twice;
- a batch is marked done when its holder's run ended with its results stored
  (:meth:`ClaimedNames.finish`); done batches are never handed out again;
- a holder that died and is not retried loses its claims when they expire: any task of the
  listing then takes them.

The table sits beside the results tables (and, in 0.3, the load history): plain SQL on the
connection's DB-API hook, one compare-and-set ``UPDATE`` per claim, so SQLite, PostgreSQL and
MySQL all serve.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.storage.warehouse import sql_hook

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

#: The claims table (in the database of ``sql_conn_id``).
CLAIMS_TABLE = "dgsentiment_work_claims"
#: Object names per batch: small enough that tasks finish within a batch of each other.
DEFAULT_BATCH_SIZE = 200
#: Seconds a claim lives without renewal (a dead task's batches go back to the pool after this).
CLAIM_TTL = 600.0

_DDL = f"""CREATE TABLE IF NOT EXISTS {CLAIMS_TABLE} (
    listing VARCHAR(250) NOT NULL,
    batch INTEGER NOT NULL,
    names TEXT NOT NULL,
    holder VARCHAR(250),
    expires DOUBLE PRECISION,
    done INTEGER NOT NULL,
    PRIMARY KEY (listing, batch)
)"""


class WorkClaims:
    """
    The batches of one listing in the claims table.

    :param hook: the results database's SQL hook.
    :param listing: the listing's id, e.g. ``"<dag_id>/<run_id>"``.
    :param ttl: seconds a claim lives without renewal.
    """

    def __init__(self, hook: DbApiHook, listing: str, *, ttl: float = CLAIM_TTL) -> None:
        if not listing or len(listing) > 250:
            raise DeepgramConfigurationError(f"claims must name a listing of 1-250 characters, got {listing!r}")
        self.hook = hook
        self.listing = listing
        self.ttl = ttl
        self._connection: Any = None
        #: Batches this object claimed (a holder's own batches are taken back once per run).
        self._taken: set[int] = set()

    @property
    def _mark(self) -> str:
        return self.hook.placeholder

    def _run(self, sql: str, parameters: Sequence[Any] = (), *, fetch: bool = False) -> tuple[list[Any], int]:
        """Run one statement in its own transaction; return its rows (when ``fetch``) and rowcount."""
        if self._connection is None:
            self._connection = self.hook.get_conn()
        connection = self._connection
        cursor = connection.cursor()
        try:
            cursor.execute(sql.replace("?", self._mark), tuple(parameters))
            rows = cursor.fetchall() if fetch else []
            count = cursor.rowcount
            connection.commit()
            return rows, count
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def ensure_table(self) -> None:
        self._run(_DDL)

    def publish(self, names: Mapping[str, str | None] | Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """
        Store the listing as batches of ``batch_size`` names; return how many batches it has.

        ``names`` maps each object to its version as the listing gave it (or is a plain list): the
        version travels with the claim, so the load history records what was read.

        Idempotent: a listing already published (a retried planning step) is kept as it is.
        """
        if batch_size < 1:
            raise DeepgramConfigurationError(f"batch_size must be at least 1, got {batch_size}")
        self.ensure_table()
        existing = self.batches()
        if existing:
            return existing
        pairs = list(names.items()) if isinstance(names, Mapping) else [(name, None) for name in names]
        rows = [
            (self.listing, number, json.dumps(pairs[start : start + batch_size]), None, None, 0)
            for number, start in enumerate(range(0, len(pairs), batch_size))
        ]
        if self._connection is None:
            self._connection = self.hook.get_conn()
        cursor = self._connection.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO {CLAIMS_TABLE} (listing, batch, names, holder, expires, done) "
                f"VALUES ({', '.join([self._mark] * 6)})",
                rows,
            )
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            cursor.close()
        return len(rows)

    def batches(self) -> int:
        rows, _ = self._run(f"SELECT COUNT(*) FROM {CLAIMS_TABLE} WHERE listing = ?", (self.listing,), fetch=True)
        return int(rows[0][0])

    def claim(self, holder: str) -> dict[str, str | None] | None:
        """
        Take the next batch for ``holder`` (its own unfinished ones first): ``{name: version}`` in
        listing order; None when none is left.

        Renews ``holder``'s other claims. Safe against other tasks claiming at once: the claim
        is a compare-and-set on the batch's holder and expiry.
        """
        now = time.time()
        expires = now + self.ttl
        self._run(
            f"UPDATE {CLAIMS_TABLE} SET expires = ? WHERE listing = ? AND holder = ? AND done = 0",
            (expires, self.listing, holder),
        )
        while True:
            rows, _ = self._run(
                f"SELECT batch, holder, expires FROM {CLAIMS_TABLE} WHERE listing = ? AND done = 0 "
                "AND (holder IS NULL OR holder = ? OR expires < ?) ORDER BY batch",
                (self.listing, holder, now),
                fetch=True,
            )
            rows = [row for row in rows if row[0] not in self._taken]
            if not rows:
                return None
            # Its own batches first (a retry picks up where it stopped), then the lowest free one.
            batch, previous, previous_expires = min(rows, key=lambda row: (row[1] != holder, row[0]))
            parameters: tuple[Any, ...] = ()
            condition = "holder IS NULL"
            if previous is not None:
                condition, parameters = "holder = ? AND expires = ?", (previous, previous_expires)
            _, count = self._run(
                f"UPDATE {CLAIMS_TABLE} SET holder = ?, expires = ? WHERE listing = ? AND batch = ? AND done = 0 "
                f"AND {condition}",
                (holder, expires, self.listing, batch, *parameters),
            )
            if count == 1:
                self._taken.add(batch)
                names, _ = self._run(
                    f"SELECT names FROM {CLAIMS_TABLE} WHERE listing = ? AND batch = ?",
                    (self.listing, batch),
                    fetch=True,
                )
                return {str(name): version for name, version in json.loads(names[0][0])}
            # Another task took it between the look and the claim: look again.

    def finish(self, holder: str) -> int:
        """Mark every batch ``holder`` claimed as done (its results are stored); return how many."""
        _, count = self._run(
            f"UPDATE {CLAIMS_TABLE} SET done = 1 WHERE listing = ? AND holder = ? AND done = 0",
            (self.listing, holder),
        )
        return max(count, 0)

    def progress(self) -> dict[str, int]:
        """Batches of the listing by state: ``{"done": n, "claimed": n, "free": n}``."""
        rows, _ = self._run(
            f"SELECT done, holder IS NOT NULL, COUNT(*) FROM {CLAIMS_TABLE} WHERE listing = ? "
            "GROUP BY done, holder IS NOT NULL",
            (self.listing,),
            fetch=True,
        )
        counts = {"done": 0, "claimed": 0, "free": 0}
        for done, held, count in rows:
            counts["done" if done else "claimed" if held else "free"] += int(count)
        return counts


class ClaimedNames:
    """
    The object names a task scores from a published listing, claimed batch by batch as it reads them.

    Iterate it once (the scorer's reader thread does); call :meth:`finish` once the results
    are stored.

    :param claims: the listing's batches.
    :param holder: who claims: the task (``dag_id/run_id/task_id/map_index``; the same on a retry).
    """

    def __init__(self, claims: WorkClaims, holder: str) -> None:
        self.claims = claims
        self.holder = holder
        #: Batches taken by this run.
        self.batches = 0
        #: Called with ``{name: version}`` of each batch claimed, before its names are handed out.
        self.on_batch: Callable[[dict[str, str | None]], None] | None = None

    def __iter__(self) -> Iterator[str]:
        while True:
            versions = self.claims.claim(self.holder)
            if versions is None:
                return
            self.batches += 1
            if self.on_batch is not None:
                self.on_batch(versions)
            yield from versions

    def finish(self) -> int:
        """Mark this holder's batches done; close the connection."""
        try:
            return self.claims.finish(self.holder)
        finally:
            self.claims.close()


def publish_names(
    names: Callable[[], Mapping[str, str | None] | Sequence[str]] | Mapping[str, str | None] | Sequence[str],
    *,
    sql_conn_id: str,
    listing: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """
    Publish object names already listed (e.g. by the sensor's look) as claimable batches.

    :param names: ``{name: version}`` (or plain names), or a function listing them (called only
        when the listing is new).
    :return: ``{"listing": id, "objects": n or None when it was published before, "batches": n}``.
    """
    claims = WorkClaims(sql_hook(sql_conn_id, "sql_conn_id"), listing)
    try:
        claims.ensure_table()
        published = claims.batches()
        if published:
            return {"listing": listing, "objects": None, "batches": published}
        listed = names() if callable(names) else names
        return {"listing": listing, "objects": len(listed), "batches": claims.publish(listed, batch_size)}
    finally:
        claims.close()
