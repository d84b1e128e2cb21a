"""AdaptiveConcurrency: multiplicative decrease on 429 (once per burst), additive increase on success."""

from __future__ import annotations

import pytest

from airflow_provider_dgsentiment.client.concurrency import AdaptiveConcurrency
from airflow_provider_dgsentiment.client.tuning import DEFAULT_TUNING, EngineTuning

STEADY = EngineTuning(slow_start=False)


def test_halves_on_rate_limit_and_grows_back_slowly():
    window = AdaptiveConcurrency(10, tuning=EngineTuning(decrease_factor=0.5, additive_increase=1.0, slow_start=False))
    assert window.limit == 10
    # Each 429 is to a request sent after the previous decrease: each one counts.
    assert window.on_rate_limited(sent_at=1.0, now=1.1)
    assert window.limit == 5
    assert window.on_rate_limited(sent_at=1.2, now=1.3)
    assert window.on_rate_limited(sent_at=1.4, now=1.5)
    assert window.on_rate_limited(sent_at=1.6, now=1.7)
    assert window.limit == 1  # never below one
    successes = 0
    while window.limit < 10:
        window.on_success()
        successes += 1
    # Additive increase: growing from 1 back to 10 takes dozens of successes, not a handful.
    assert 40 <= successes <= 60
    for _ in range(100):
        window.on_success()
    assert window.limit == 10  # capped at the maximum
    assert window.rate_limited == 4
    assert window.decreases == 4


def test_a_burst_of_429s_counts_once():
    window = AdaptiveConcurrency(10, tuning=EngineTuning(decrease_factor=0.5, slow_start=False))
    # Ten requests sent at t=0..0.09 all get 429 at t=0.1..0.19: one decrease.
    shrank = [window.on_rate_limited(sent_at=i / 100, now=0.1 + i / 100) for i in range(10)]
    assert shrank == [True] + [False] * 9
    assert window.limit == 5 and window.rate_limited == 10 and window.decreases == 1
    # A request sent after that decrease that still gets a 429 counts again.
    assert window.on_rate_limited(sent_at=0.15, now=0.3)
    assert window.limit == 2


def test_default_policy_is_gentle_and_slow():
    """Defaults for workers sharing one account: give back a quarter, take 1/32 slot per window."""
    assert (DEFAULT_TUNING.decrease_factor, DEFAULT_TUNING.additive_increase) == (0.75, 1 / 32)
    window = AdaptiveConcurrency(4, tuning=STEADY)
    window.on_rate_limited(sent_at=0.0, now=0.1)
    assert window.window == 3.0
    successes = 0
    while window.limit < 4:
        window.on_success()
        successes += 1
    # One more slot after about 20 windows of successes (1/32 slot per window at first, growing
    # by its own size every 16 windows without a 429), not after one window.
    assert 55 <= successes <= 90


def test_slow_start_doubles_per_window_until_the_first_429():
    window = AdaptiveConcurrency(10)
    assert window.slow_start and window.limit == DEFAULT_TUNING.slow_start_window == 2
    for _ in range(2):  # one window of 2 successes: 2 -> 4
        window.on_success()
    assert window.limit == 4
    for _ in range(4):  # the next window of 4: 4 -> 8
        window.on_success()
    assert window.limit == 8
    assert window.on_rate_limited(sent_at=1.0, now=1.1)
    assert not window.slow_start and window.window == 6.0
    for _ in range(6):  # now additive: a window of 6 successes adds about 1/32 slot, not 6
        window.on_success()
    assert window.limit == 6 and window.window < 6.1


def test_additive_increase_accelerates_while_no_429_comes():
    window = AdaptiveConcurrency(100, tuning=EngineTuning(decrease_factor=0.5, slow_start=False))
    window.on_rate_limited(sent_at=0.0, now=0.1)  # 100 -> 50
    grown = []
    for _ in range(4):  # four stretches of 16 windows (16 * ~50 successes each)
        before = window.window
        for _ in range(800):
            window.on_success()
        grown.append(window.window - before)
    # Each stretch of 16 windows adds more than the one before (about 3/4 slot, then more).
    assert all(later > earlier for earlier, later in zip(grown, grown[1:]))
    assert 0.5 < grown[0] < 1.0


def test_raise_maximum_only_grows():
    window = AdaptiveConcurrency(5, tuning=STEADY)
    window.raise_maximum(3)
    assert (window.max_concurrency, window.limit) == (5, 5)
    window.raise_maximum(20)
    assert (window.max_concurrency, window.limit) == (20, 20)  # a window at its maximum moves up at once
    window.on_rate_limited(sent_at=0.0, now=0.1)
    window.raise_maximum(50)
    assert (window.max_concurrency, window.limit) == (50, 15)  # one held down by a 429 keeps growing from there


def test_rejects_zero():
    with pytest.raises(ValueError, match="at least 1"):
        AdaptiveConcurrency(0)


def test_tuning_is_checked():
    with pytest.raises(ValueError, match="decrease_factor"):
        EngineTuning(decrease_factor=1.5)
    with pytest.raises(ValueError, match="additive_increase"):
        EngineTuning(additive_increase=0)
