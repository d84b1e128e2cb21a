"""Adaptive concurrency (AIMD) for runs sharing one Deepgram account.

The window is how many requests one engine may have in flight. A 429 shrinks it
multiplicatively, but one burst of 429s counts once: a 429 for a request that was
sent before the last decrease (it was in flight when the window shrank, so the
decrease already answered it) does not shrink the window again. Successes grow it
additively, by ``increase`` slots per window of successes, up to the maximum.

The increase is slow on purpose. Several workers share one account: each
overshoot of the account's limit costs one 429, and together they grow by
``workers * increase`` slots per round trip, so the share of 429s is about
``workers * increase / (requests per round trip * slots one decrease gives back)``.
Measured with 4 workers on a limit of 10 (``make benchmark``): 1/16 slot per window gave
2.0-2.3% 429s, 1/64 gave 0.7% but left the account idler; 1/32 sits between.

Pure state, no I/O and no clock of its own: the engine passes the send time of the
request that got the 429, so the tests walk it as a table. Used from one event loop,
it needs no lock.
"""

from __future__ import annotations

from airflow_provider_dgsentiment.client.tuning import DEFAULT_TUNING, EngineTuning

#: The window never shrinks below this many requests in flight.
MIN_WINDOW = 1.0


class AdaptiveConcurrency:
    """
    The number of requests an engine may have in flight right now.

    :param max_concurrency: the upper bound, e.g. the account's concurrency limit.
    :param tuning: the decrease, increase and slow start (:class:`~.tuning.EngineTuning`).
    """

    def __init__(self, max_concurrency: int, *, tuning: EngineTuning = DEFAULT_TUNING) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.tuning = tuning
        self.decrease_factor = tuning.decrease_factor
        self.increase = tuning.additive_increase
        self._accelerate_after = tuning.accelerate_after_windows
        #: While True the window grows by one slot per success (doubling per round trip)
        #: until the maximum or the first 429: workers starting together on one account
        #: then overshoot its limit by a little, not by all their windows at once.
        self.slow_start = tuning.slow_start
        start = min(tuning.slow_start_window, max_concurrency) if self.slow_start else max_concurrency
        self._window = float(start)
        self._last_decrease: float | None = None
        self._successes_since_decrease = 0
        #: 429s reported (each one, including those a cooldown did not count).
        self.rate_limited = 0
        #: Decreases made (one per burst).
        self.decreases = 0
        #: The slots an account budget (:mod:`.account_budget`) grants, when there is one.
        self.share: int | None = None
        self.limit = max(int(self._window), 1)

    def _set_limit(self) -> None:
        limit = max(int(self._window), 1)
        share = self.share
        self.limit = limit if share is None or share >= limit else share

    def set_share(self, share: int | None) -> None:
        """Cap the requests in flight at ``share`` (the account budget's grant; None: no cap, 0: wait)."""
        self.share = share
        self._set_limit()

    def raise_maximum(self, max_concurrency: int) -> None:
        """
        Allow up to ``max_concurrency`` in flight (a run of the engine asked for more).

        A window at its old maximum (no 429 is holding it down) moves up to the new one at
        once; a window shrunk by 429s keeps growing from where it is.
        """
        if max_concurrency > self.max_concurrency:
            if self._window >= self.max_concurrency and not self.slow_start:
                self._window = float(max_concurrency)
                self._set_limit()
            self.max_concurrency = max_concurrency

    def on_success(self) -> None:
        """Grow the window additively after a request succeeded."""
        window = self._window
        if window < self.max_concurrency:
            if self.slow_start:
                step = 1.0
            else:
                # The longer no 429 came, the faster it grows: slow near the limit last found,
                # quick to take up what other workers left (e.g. when one of them finished).
                self._successes_since_decrease += 1
                windows_since = self._successes_since_decrease / window
                step = self.increase * (1.0 + windows_since / self._accelerate_after) / window
            window = min(window + step, float(self.max_concurrency))
            self._window = window
            self._set_limit()

    def on_rate_limited(self, sent_at: float, now: float) -> bool:
        """
        Shrink the window after a 429 to a request sent at ``sent_at``, answered at ``now``.

        Both in seconds of one monotonic clock.

        :return: True when the window shrank; False when the request was sent before the
            last decrease (its burst was already counted).
        """
        self.rate_limited += 1
        last = self._last_decrease
        if last is not None and sent_at <= last:
            return False
        self._last_decrease = now
        self.decreases += 1
        self.slow_start = False
        self._successes_since_decrease = 0
        self._window = max(self._window * self.decrease_factor, MIN_WINDOW)
        self._set_limit()
        return True

    @property
    def window(self) -> float:
        """The window as a float (``limit`` is its whole part, at least 1)."""
        return self._window
