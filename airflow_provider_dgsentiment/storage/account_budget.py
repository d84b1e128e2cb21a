"""The account budget kept in a SQL database every host reaches (the protocol is ``client.account_budget``).

One row per lease in ``dgsentiment_account_leases`` (``account`` is a hash of the API URL and key,
never the key). Each ``lease`` is one short transaction that first updates the account's lock
row, so the database serializes the holders of one account (a row lock on PostgreSQL and MySQL,
the write lock on SQLite); then it drops expired leases, reads the others and writes its own
(:func:`~airflow_provider_dgsentiment.client.account_budget.next_share`). Meant for a small
transactional database next to the deployment (PostgreSQL, MySQL, SQLite), not a warehouse
billed per query: a holder renews every 0.1 s while it scores.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.client.account_budget import LEASE_TTL, Lease, next_share

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

LEASES_TABLE = "dgsentiment_account_leases"
#: The holder name of an account's lock row (never a real holder: those hold ``host:pid:random``).
_LOCK = "#lock"
_DDL = f"""CREATE TABLE IF NOT EXISTS {LEASES_TABLE} (
    account VARCHAR(64) NOT NULL,
    holder VARCHAR(250) NOT NULL,
    held INTEGER NOT NULL,
    want INTEGER NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, holder)
)"""


class SqlAccountBudget:
    """
    Leases of one account in a SQL table: an ``AccountBudget`` shared by every host.

    :param hook: the database's SQL hook (e.g. the results database's).
    :param limit: requests in flight the account allows (the connection's ``max_concurrency``).
    :param account: what identifies the account, e.g. ``base_url + key``; only its hash is stored.
    :param ttl: seconds a lease lives without renewal.
    """

    #: A database round trip: called in a thread, off the engine's loop.
    quick = False

    def __init__(self, hook: DbApiHook, limit: int, account: str, *, ttl: float = LEASE_TTL) -> None:
        if limit < 1:
            raise ValueError(f"the account limit must be at least 1, got {limit}")
        self.hook = hook
        self.limit = limit
        self.ttl = ttl
        self.account = hashlib.sha256(account.encode()).hexdigest()[:32]
        # One connection per thread: the engine calls from its executor's threads, and SQLite
        # binds a connection to the thread that opened it.
        self._local = threading.local()
        self._ready = False

    def _transaction(self, work: Any) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.hook.get_conn()
        mark = self.hook.placeholder
        cursor = connection.cursor()

        def execute(sql: str, parameters: tuple[Any, ...] = ()) -> Any:
            cursor.execute(sql.replace("?", mark), parameters)
            return cursor

        try:
            if not self._ready:
                execute(_DDL)
                connection.commit()
                if not execute(
                    f"SELECT 1 FROM {LEASES_TABLE} WHERE account = ? AND holder = ?", (self.account, _LOCK)
                ).fetchall():
                    try:
                        execute(
                            f"INSERT INTO {LEASES_TABLE} (account, holder, held, want, expires) VALUES (?, ?, 0, 0, 0)",
                            (self.account, _LOCK),
                        )
                        connection.commit()
                    except Exception:  # another holder created it at the same moment
                        connection.rollback()
                self._ready = True
            result = work(execute)
            connection.commit()
            return result
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()

    def _lock(self, execute: Any) -> None:
        """Take the account's lock row (created on first use) for the rest of the transaction."""
        execute(f"UPDATE {LEASES_TABLE} SET expires = expires WHERE account = ? AND holder = ?", (self.account, _LOCK))

    def lease(self, holder: str, want: int, in_flight: int) -> int:
        def work(execute: Any) -> int:
            self._lock(execute)
            now = time.time()
            execute(
                f"DELETE FROM {LEASES_TABLE} WHERE account = ? AND holder <> ? AND (expires < ? OR holder = ?)",
                (self.account, _LOCK, now, holder),
            )
            rows = execute(
                f"SELECT holder, held, want, expires FROM {LEASES_TABLE} WHERE account = ? AND holder <> ?",
                (self.account, _LOCK),
            ).fetchall()
            others = {str(name): Lease(int(held), int(wanted), float(until)) for name, held, wanted, until in rows}
            share, held = next_share(self.limit, holder, want, in_flight, others)
            execute(
                f"INSERT INTO {LEASES_TABLE} (account, holder, held, want, expires) VALUES (?, ?, ?, ?, ?)",
                (self.account, holder, held, want, now + self.ttl),
            )
            return share

        return int(self._transaction(work))

    def release(self, holder: str) -> None:
        self._transaction(
            lambda execute: execute(
                f"DELETE FROM {LEASES_TABLE} WHERE account = ? AND holder = ?", (self.account, holder)
            )
        )
