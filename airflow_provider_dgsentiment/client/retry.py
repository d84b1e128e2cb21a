"""The retry policy, as pure functions used by the one request engine (``engine.py``).

Retried: 408, 429, every 5xx, timeouts and connection errors (what is retryable is a
property of the error class ``make_api_error`` picks, ``DeepgramAPIError.retryable``).
Never retried: 3xx, 400, 401, 402, 403 (and other 4xx): the same request would get
the same answer.
The wait before retry ``n`` (0-based) is the server's ``Retry-After`` when it
gives one (capped), else ``min(BASE * 2**n, CAP)`` with full jitter.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from airflow_provider_dgsentiment.get_provider_info import CONNECTION_NUMBERS

DEFAULT_MAX_RETRIES = int(CONNECTION_NUMBERS["max_retries"][2])
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 30.0
MAX_RETRY_AFTER = 60.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """
    Parse a ``Retry-After`` header: delta-seconds or an HTTP-date.

    :return: seconds to wait (never negative), or None when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class RetryPolicy:
    """
    How often and how long to wait before sending a failed request again.

    :param max_retries: retries after the first attempt (0 disables retrying).
    :param initial_delay: the base of the exponential backoff, in seconds.
    :param max_delay: the cap of the exponential backoff, in seconds.
    :param max_retry_after: the cap on a server-given ``Retry-After``, in seconds.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_delay: float = INITIAL_RETRY_DELAY
    max_delay: float = MAX_RETRY_DELAY
    max_retry_after: float = MAX_RETRY_AFTER

    def should_retry(self, attempt: int, *, retryable: bool) -> bool:
        """Return True when a failure on 0-based ``attempt`` should be retried."""
        return retryable and attempt < self.max_retries

    def delay(self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
        """Return the seconds to wait after the failure of 0-based ``attempt``."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        backoff = min(self.initial_delay * (2**attempt), self.max_delay)
        jitter = (rng or random).uniform(0.5, 1.0)
        return float(backoff * jitter)
