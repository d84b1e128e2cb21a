"""Adaptive concurrency (AIMD) for batches sharing one Deepgram account.

On a 429 the window of requests in flight is halved; on each success it grows by
``1 / window`` (about one slot per window of successes), up to the configured
maximum. Several workers sharing one account so converge on the account's limit
instead of hammering it. Used by the hook's thread pool and by the trigger's
asyncio tasks; it is thread-safe.
"""

from __future__ import annotations

import threading

#: The window never shrinks below this many requests in flight.
MIN_WINDOW = 1.0
#: Multiplicative decrease on a 429.
DECREASE_FACTOR = 0.5


class AdaptiveConcurrency:
    """
    The number of requests a batch may have in flight right now.

    :param max_concurrency: the upper bound, e.g. the account's concurrency limit.
    """

    def __init__(self, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self._window = float(max_concurrency)
        self._lock = threading.Lock()
        self.rate_limited = 0

    @property
    def limit(self) -> int:
        """Requests allowed in flight now (at least 1)."""
        with self._lock:
            return max(int(self._window), 1)

    def on_success(self) -> None:
        """Grow the window additively after a request succeeded."""
        with self._lock:
            self._window = min(self._window + 1.0 / self._window, float(self.max_concurrency))

    def on_rate_limited(self) -> None:
        """Halve the window after a 429."""
        with self._lock:
            self.rate_limited += 1
            self._window = max(self._window * DECREASE_FACTOR, MIN_WINDOW)
