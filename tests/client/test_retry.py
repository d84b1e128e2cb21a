"""The retry policy's pure functions, walked as tables."""

from __future__ import annotations

import random

import pytest

from airflow_provider_dgsentiment.client.retry import RetryPolicy, parse_retry_after
from airflow_provider_dgsentiment.exceptions import make_api_error


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (0, True),
        (301, False),
        (302, False),
        (307, False),
        (400, False),
        (401, False),
        (402, False),
        (403, False),
        (404, False),
        (405, False),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
    ],
)
def test_retryable_statuses(status, retryable):
    """What is retried is decided once, by the class the one status mapping picks."""
    error = make_api_error(status, {"err_code": "X", "err_msg": "x"})
    assert error.retryable is retryable
    policy = RetryPolicy(max_retries=3)
    assert policy.should_retry(0, retryable=error.retryable) is retryable


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("0.5", 0.5),
        ("-2", 0.0),
        ("soon", None),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),
    ],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=40.0) == expected


def test_delay_doubles_up_to_cap_with_jitter():
    policy = RetryPolicy(max_retries=10, initial_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    delays = [policy.delay(n, rng=rng) for n in range(6)]
    for n, delay in enumerate(delays):
        cap = min(0.5 * 2**n, 4.0)
        assert cap / 2 <= delay <= cap


def test_retry_after_wins_but_is_capped():
    policy = RetryPolicy(max_retry_after=10.0)
    assert policy.delay(0, 3.0) == 3.0
    assert policy.delay(0, 3600.0) == 10.0


def test_should_retry_respects_budget_and_kind():
    policy = RetryPolicy(max_retries=2)
    assert policy.should_retry(0, retryable=True)
    assert policy.should_retry(1, retryable=True)
    assert not policy.should_retry(2, retryable=True)
    assert not policy.should_retry(0, retryable=False)
