"""The error family: one status mapping, to_dict/from_dict through an explicit registry, pickling, context."""

from __future__ import annotations

import json
import pickle

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_dgsentiment import exceptions
from airflow_provider_dgsentiment.exceptions import (
    ERROR_CLASSES,
    TOKEN_BUDGET_EXCEEDED,
    DeepgramAPIError,
    DeepgramAuthenticationError,
    DeepgramBadRequestError,
    DeepgramConnectionError,
    DeepgramEndpointUnreachableError,
    DeepgramNotFoundError,
    DeepgramPaymentRequiredError,
    DeepgramRateLimitError,
    DeepgramRedirectError,
    DeepgramResponseError,
    DeepgramServerError,
    DeepgramTimeoutError,
    DeepgramTokenBudgetError,
    DeepgramTokenLimitError,
    DeepgramUnsupportedLanguageError,
    make_api_error,
)


def sample(cls: type[DeepgramAPIError]) -> DeepgramAPIError:
    if cls is DeepgramResponseError:
        return DeepgramResponseError("results should be an object, got NoneType", status=200, request_id="r-1")
    if cls is DeepgramTokenBudgetError:
        return DeepgramTokenBudgetError.for_budget(1000, 990, 22)
    return cls(429 if cls is DeepgramRateLimitError else 500, "SOME_CODE", "some message", "r-1", retry_after=2.5)


def test_registry_is_explicit_and_complete():
    """Every DeepgramAPIError class of the module is registered by its own name, and nothing else."""
    in_module = {
        name
        for name, value in vars(exceptions).items()
        if isinstance(value, type) and issubclass(value, DeepgramAPIError)
    }
    assert set(ERROR_CLASSES) == in_module
    assert all(cls.__name__ == name for name, cls in ERROR_CLASSES.items())


@pytest.mark.parametrize("cls", list(ERROR_CLASSES.values()), ids=list(ERROR_CLASSES))
def test_every_class_round_trips_through_json_and_pickle(cls):
    error = sample(cls)
    data = json.loads(json.dumps(error.to_dict()))
    assert data["error_class"] == cls.__name__
    for rebuilt in (DeepgramAPIError.from_dict(data), pickle.loads(pickle.dumps(error))):
        assert type(rebuilt) is cls
        assert (rebuilt.status, rebuilt.err_code, rebuilt.err_msg, rebuilt.request_id) == (
            error.status,
            error.err_code,
            error.err_msg,
            error.request_id,
        )
        assert rebuilt.retry_after == error.retry_after
        assert str(rebuilt) == str(error)
        assert (rebuilt.retryable, rebuilt.systemic) == (error.retryable, error.systemic)


def test_unknown_class_name_falls_back_to_the_status_mapping():
    data = {"error_class": "os.system", "status": 401, "err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}
    error = DeepgramAPIError.from_dict(data)
    assert type(error) is DeepgramAuthenticationError
    assert str(error) == "Deepgram API error 401 INVALID_AUTH: Invalid credentials."
    assert type(DeepgramAPIError.from_dict({"status": 503})) is DeepgramServerError
    assert type(DeepgramAPIError.from_dict({})) is DeepgramConnectionError


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (0, None, DeepgramConnectionError),
        (301, None, DeepgramRedirectError),
        (302, None, DeepgramRedirectError),
        (308, None, DeepgramRedirectError),
        (400, {"err_code": "INVALID_QUERY_PARAMETER", "err_msg": "missing field `language`"}, DeepgramBadRequestError),
        (400, {"err_code": "TOKEN_LIMIT_EXCEEDED", "err_msg": "too long"}, DeepgramTokenLimitError),
        (
            400,
            {"err_code": "INVALID_QUERY_PARAMETER", "err_msg": "Request specified unsupported language: es."},
            DeepgramUnsupportedLanguageError,
        ),
        (401, {"err_code": "INVALID_AUTH"}, DeepgramAuthenticationError),
        (402, {"err_code": "ASR_PAYMENT_REQUIRED"}, DeepgramPaymentRequiredError),
        (403, {"err_code": "INSUFFICIENT_PERMISSIONS"}, DeepgramAuthenticationError),
        (404, None, DeepgramNotFoundError),
        (405, None, DeepgramNotFoundError),
        (408, None, DeepgramTimeoutError),
        (409, None, DeepgramBadRequestError),
        (413, None, DeepgramBadRequestError),
        (429, None, DeepgramRateLimitError),
        (500, None, DeepgramServerError),
        (502, None, DeepgramServerError),
        (503, None, DeepgramServerError),
        (504, None, DeepgramServerError),
    ],
)
def test_status_mapping(status, body, cls):
    error = make_api_error(status, body, request_id="hdr")
    assert type(error) is cls
    assert error.status == status and error.request_id == "hdr"


@pytest.mark.parametrize(
    ("cls", "retryable", "systemic", "fail_task"),
    [
        (DeepgramBadRequestError, False, False, True),
        (DeepgramTokenLimitError, False, False, True),
        (DeepgramUnsupportedLanguageError, False, True, True),
        (DeepgramAuthenticationError, False, True, True),
        (DeepgramPaymentRequiredError, False, True, True),
        (DeepgramNotFoundError, False, True, True),
        (DeepgramRedirectError, False, True, True),
        (DeepgramResponseError, False, False, True),
        (DeepgramTokenBudgetError, False, True, True),
        (DeepgramRateLimitError, True, False, False),
        (DeepgramTimeoutError, True, False, False),
        (DeepgramServerError, True, False, False),
        (DeepgramConnectionError, True, False, False),
        (DeepgramEndpointUnreachableError, False, True, False),
    ],
)
def test_what_each_class_means(cls, retryable, systemic, fail_task):
    error = sample(cls)
    assert (error.retryable, error.systemic, isinstance(error, AirflowFailException)) == (
        retryable,
        systemic,
        fail_task,
    )


def test_token_budget_error():
    error = DeepgramTokenBudgetError.for_budget(1000, 990, 22)
    assert (error.status, error.err_code) == (0, TOKEN_BUDGET_EXCEEDED)
    assert "max_input_tokens=1000" in str(error) and "990" in str(error) and "22" in str(error)
    assert isinstance(error, AirflowFailException) and error.systemic


def test_with_context_returns_a_new_error_of_the_same_class():
    error = DeepgramAuthenticationError(401, "INVALID_AUTH", "Invalid credentials.", "r-1")
    error.__cause__ = ValueError("x")
    described = error.with_context("stopped the run: 7 of 10 document(s) left unscored")
    assert type(described) is DeepgramAuthenticationError and described is not error
    assert str(error) == "Deepgram API error 401 INVALID_AUTH: Invalid credentials. (request_id=r-1)"
    assert error.args == (str(error),)  # the original is untouched
    assert str(described) == f"{error} -- stopped the run: 7 of 10 document(s) left unscored"
    assert described.args == (str(described),)
    assert (described.status, described.err_code, described.request_id) == (401, "INVALID_AUTH", "r-1")
    assert described.__cause__ is error.__cause__
    again = described.with_context("in task score")
    assert str(again).endswith("left unscored -- in task score")
    assert str(DeepgramAPIError.from_dict(again.to_dict())) == str(again)
    assert str(pickle.loads(pickle.dumps(again))) == str(again)
    response = DeepgramResponseError("the body is not JSON", request_id="r-2").with_context("doc.txt")
    assert type(response) is DeepgramResponseError
    assert str(response) == "Unreadable Deepgram response (HTTP 200): the body is not JSON (request_id=r-2) -- doc.txt"
