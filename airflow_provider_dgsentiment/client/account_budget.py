"""One account shared fairly: a budget of requests in flight that every engine on the account leases from.

Deepgram limits requests in flight per account (a project's key). Engines that share a
key learn of each other only through 429s when each adapts alone (the AIMD window of
:mod:`.concurrency`); a shared budget lets them split the limit up front instead:

- every engine with a run going holds a **lease**: a row ``(holder, held, want, expires)``
  in a place all of them reach (a file on this host, a SQL table, ...);
- the account's limit is the connection's ``max_concurrency`` (or more, when a run asks for more:
  :func:`next_share`);
- every ``renew_interval`` it renews the lease and reads the others': its share is its fair
  part of the limit (:func:`fair_shares`: water-filling over what each holder wants), but
  it only grows into slots nobody else holds (``limit - sum(others' held)``), so a holder
  joining takes free slots at once and the rest as the others give theirs back at their next
  renewal; the sum of the slots held never passes the limit;
- ``held`` is written as ``max(share, slots in use)`` (the requests in flight, or the limit the
  engine sends up to until the new share applies), so slots given back are free only once their
  requests answered;
- a holder that stops deletes its lease; one that died stops renewing and its lease expires
  after ``ttl`` seconds, so its slots go back to the others.

The budget is a small protocol (:class:`AccountBudget`: ``lease`` and ``release``, both
short and blocking; the engine calls them off its loop). :class:`HostAccountBudget` keeps the
leases in a file per account in the temporary folder (processes of one host: a Celery
worker's slots, the triggerer, tasks of a LocalExecutor); a deployment with several hosts
passes a budget kept in its SQL database (``storage.account_budget.SqlAccountBudget``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: Seconds between renewals of a lease (a joining holder gets its fair share within two or three).
RENEW_INTERVAL = 0.1
#: Seconds a lease lives without renewal (a dead process's slots come back after this).
LEASE_TTL = 3.0


@dataclass(frozen=True)
class Lease:
    """
    One holder's row: the slots it holds now and the most it can use.

    :param held: slots held (its share, or more while requests above a shrunk share still run).
    :param want: the most slots it would use (its run's ``max_concurrency``).
    :param expires: wall-clock time (``time.time()``) the lease ends unless renewed.
    """

    held: int
    want: int
    expires: float


class AccountBudget(Protocol):
    """A place every engine on one account leases its requests in flight from (see the module docstring)."""

    #: True when ``lease`` and ``release`` take microseconds (a local file): the engine calls them on
    #: its loop; False (a database): in a thread, off the loop.
    quick: bool

    def lease(self, holder: str, want: int, in_flight: int) -> int:
        """Renew ``holder``'s lease and return the slots it may use now (0 while none is free)."""
        ...

    def release(self, holder: str) -> None:
        """Delete ``holder``'s lease (its slots go to the others at their next renewal)."""
        ...


def fair_shares(limit: int, wants: Mapping[str, int]) -> dict[str, int]:
    """
    Split ``limit`` slots over holders wanting ``wants`` slots (max-min fair, whole slots).

    Holders wanting less than an equal part get what they want; the others split the rest
    equally, the odd slots going to the first holders in name order (every holder computes
    the same split from the same leases).
    """
    shares = dict.fromkeys(wants, 0)
    left = limit
    hungry = sorted(holder for holder, want in wants.items() if want > 0)
    while left > 0 and hungry:
        part, odd = divmod(left, len(hungry))
        still_hungry = []
        for position, holder in enumerate(hungry):
            give = min(part + (1 if position < odd else 0), wants[holder] - shares[holder])
            shares[holder] += give
            left -= give
            if shares[holder] < wants[holder]:
                still_hungry.append(holder)
        if len(still_hungry) == len(hungry) or part == 0:
            break
        hungry = still_hungry
    return shares


def next_share(limit: int, holder: str, want: int, in_flight: int, others: Mapping[str, Lease]) -> tuple[int, int]:
    """
    A holder's share after reading the others' live leases: ``(share, held)`` to write back.

    The fair part, but never more than the slots the others leave free. ``limit`` is the
    connection's ``max_concurrency``; a holder that asks for more (a run's own
    ``max_concurrency`` above the connection's) says the account allows that many, so the
    limit is the largest of them (one engine alone is never held below what its run asked).
    """
    wants = {name: lease.want for name, lease in others.items()}
    wants[holder] = want
    limit = max(limit, *wants.values())
    fair = fair_shares(limit, wants)[holder]
    free = max(0, limit - sum(lease.held for lease in others.values()))
    share = min(fair, free)
    return share, max(share, in_flight)


def holder_name() -> str:
    """A name unique to one engine's lease: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


class HostAccountBudget:
    """
    The leases of one account kept in a file of this host's temporary folder (``flock`` guards it).

    The file is named by a hash of the API base URL and key (never the key itself) and is
    readable by its owner only.

    :param limit: requests in flight the account allows (the connection's ``max_concurrency``).
    :param account: what identifies the account, e.g. ``base_url + key``; only its hash is used.
    :param folder: where the file is kept (default: the temporary folder).
    :param ttl: seconds a lease lives without renewal.
    """

    #: A local file and a lock: called on the engine's loop (a thread per renewal cost more CPU).
    quick = True

    def __init__(self, limit: int, account: str, *, folder: str | Path | None = None, ttl: float = LEASE_TTL) -> None:
        if limit < 1:
            raise ValueError(f"the account limit must be at least 1, got {limit}")
        self.limit = limit
        self.ttl = ttl
        digest = hashlib.sha256(account.encode()).hexdigest()[:24]
        self.path = Path(folder or tempfile.gettempdir()) / f"dgsentiment-account-{digest}.leases"

    @contextlib.contextmanager
    def _leases(self) -> Iterator[dict[str, Lease]]:
        """The live leases, locked; what the block leaves in the dict is written back."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+", encoding="utf-8") as file:
                raw = file.read()
                try:
                    rows = json.loads(raw) if raw else {}
                except ValueError:  # a torn write of a process killed mid-write: start over
                    rows = {}
                now = time.time()
                leases = {name: Lease(*row) for name, row in rows.items() if row[2] > now}
                yield leases
                file.seek(0)
                file.truncate()
                file.write(json.dumps({name: [le.held, le.want, le.expires] for name, le in leases.items()}))
        finally:
            os.close(fd)  # also releases the lock

    def lease(self, holder: str, want: int, in_flight: int) -> int:
        with self._leases() as leases:
            leases.pop(holder, None)
            share, held = next_share(self.limit, holder, want, in_flight, leases)
            leases[holder] = Lease(held, want, time.time() + self.ttl)
        return share

    def release(self, holder: str) -> None:
        with self._leases() as leases:
            leases.pop(holder, None)
