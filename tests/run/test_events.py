"""The trigger <-> task event contract: what a trigger yields is what the task raises or returns."""

from __future__ import annotations

import json

import pytest
from airflow.providers.common.compat.sdk import AirflowNotFoundException

from airflow_provider_dgsentiment.exceptions import (
    DeepgramAuthenticationError,
    DeepgramConfigurationError,
    DeepgramError,
    DeepgramRateLimitError,
    make_api_error,
)
from airflow_provider_dgsentiment.run.events import check_event, error_event, success_event


def test_a_success_event_is_plain_json_and_comes_back_as_it_went():
    event = success_event("3 scored", outcome={"total": 3}, uris=["file:///a.txt"])
    assert json.loads(json.dumps(event)) == event
    assert check_event(event, "scoring") == {
        "status": "success",
        "message": "3 scored",
        "outcome": {"total": 3},
        "uris": ["file:///a.txt"],
    }


def test_an_api_error_travels_typed_with_its_status_and_request_id():
    error = make_api_error(401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}, request_id="req-1")
    event = json.loads(json.dumps(error_event(error)))
    with pytest.raises(DeepgramAuthenticationError) as caught:
        check_event(event, "scoring")
    assert (caught.value.status, caught.value.err_code, caught.value.request_id) == (401, "INVALID_AUTH", "req-1")


def test_a_rate_limit_keeps_its_retry_after():
    error = make_api_error(429, {"err_code": "TOO_MANY_REQUESTS", "err_msg": "slow down"}, retry_after=2.5)
    with pytest.raises(DeepgramRateLimitError) as caught:
        check_event(json.loads(json.dumps(error_event(error))), "scoring")
    assert caught.value.retry_after == 2.5


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (DeepgramConfigurationError("source matched nothing"), DeepgramConfigurationError),
        (AirflowNotFoundException("The conn_id `x` isn't defined"), AirflowNotFoundException),
    ],
)
def test_plain_errors_come_back_as_their_own_class_with_their_message(raised, expected):
    with pytest.raises(expected, match=str(raised)):
        check_event(error_event(raised), "scoring")


def test_any_other_failure_names_what_failed_and_its_class():
    with pytest.raises(DeepgramError, match="Waiting for objects failed in the triggerer: ValueError: bad listing"):
        check_event(error_event(ValueError("bad listing")), "Waiting for objects")


@pytest.mark.parametrize("event", [None, "done", {"status": "maybe"}, {"message": "no status"}])
def test_an_event_of_another_shape_is_refused_clearly(event):
    with pytest.raises(DeepgramError, match="Unexpected event from the triggerer"):
        check_event(event, "scoring")
