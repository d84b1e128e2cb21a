"""AdaptiveConcurrency: multiplicative decrease on 429, additive increase on success."""

from __future__ import annotations

import pytest

from airflow_provider_dgsentiment.concurrency import AdaptiveConcurrency


def test_halves_on_rate_limit_and_grows_back_slowly():
    window = AdaptiveConcurrency(10)
    assert window.limit == 10
    window.on_rate_limited()
    assert window.limit == 5
    window.on_rate_limited()
    window.on_rate_limited()
    window.on_rate_limited()
    assert window.limit == 1  # never below one
    successes = 0
    while window.limit < 10:
        window.on_success()
        successes += 1
    # Additive increase: growing from ~0.6 back to 10 takes dozens of successes, not a handful.
    assert 40 <= successes <= 60
    for _ in range(100):
        window.on_success()
    assert window.limit == 10  # capped at the maximum
    assert window.rate_limited == 4


def test_rejects_zero():
    with pytest.raises(ValueError, match="at least 1"):
        AdaptiveConcurrency(0)
