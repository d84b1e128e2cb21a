"""The contract between the triggers and the tasks that defer to them: event builders and checks, both sides.

Every trigger yields exactly one terminal event, a plain JSON dict:

- ``{"status": "success", "message": str, ...}`` with the trigger's own payload
  (:data:`OUTCOME_KEY` for the scoring trigger, ``"uris"``/``"matched"``/``"scored"`` for
  the objects trigger);
- ``{"status": "error", "message": str, "error": <DeepgramAPIError.to_dict()> or None,
  "error_class": str}`` when it could not do its work, or (``error_class``
  ``"AirflowSensorTimeout"``) when its deadline passed.

The task side calls :func:`check_event`, which returns a success payload or raises the
typed error the worker would have raised for the same failure.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException, AirflowSensorTimeout

from airflow_provider_dgsentiment.exceptions import DeepgramAPIError, DeepgramConfigurationError, DeepgramError

SUCCESS = "success"
ERROR = "error"
#: Where the scoring trigger's success event carries the run's outcome (``ScoringOutcome.to_state()``).
OUTCOME_KEY = "outcome"
#: Errors that are not Deepgram API errors, rebuilt by name on the task side.
_PLAIN_ERRORS: dict[str, type[Exception]] = {
    DeepgramConfigurationError.__name__: DeepgramConfigurationError,
    AirflowNotFoundException.__name__: AirflowNotFoundException,
    AirflowSensorTimeout.__name__: AirflowSensorTimeout,
}


def success_event(message: str, **payload: Any) -> dict[str, Any]:
    """A terminal success event with the trigger's payload (plain JSON values only)."""
    return {"status": SUCCESS, "message": message, **payload}


def error_event(exc: BaseException) -> dict[str, Any]:
    """
    Describe a failure as a terminal ``"error"`` event.

    :return: ``{"status": "error", "message", "error": <to_dict()> or None, "error_class"}``.
    """
    if isinstance(exc, DeepgramAPIError):
        return {"status": ERROR, "message": str(exc), "error": exc.to_dict(), "error_class": type(exc).__name__}
    name = type(exc).__name__
    return {"status": ERROR, "message": str(exc) or name, "error": None, "error_class": name}


def timeout_event(message: str) -> dict[str, Any]:
    """The ``"error"`` event of a trigger whose deadline passed: the task side raises ``AirflowSensorTimeout``."""
    return {"status": ERROR, "message": message, "error": None, "error_class": AirflowSensorTimeout.__name__}


def check_event(event: Any, what: str) -> dict[str, Any]:
    """
    Return a success event's payload; raise the error an error event describes.

    :param event: what the trigger yielded.
    :param what: what the trigger was doing, for the message of an unexpected failure.
    :raises DeepgramError: (or the typed subclass the event names) for an error or unexpected event.
    """
    if not isinstance(event, dict) or event.get("status") not in (SUCCESS, ERROR):
        shape = f"a dict with keys {sorted(event)}" if isinstance(event, dict) else type(event).__name__
        raise DeepgramError(f"Unexpected event from the triggerer: {shape}, not a status success/error event")
    if event["status"] == ERROR:
        raise error_from_event(event, what)
    return event


def error_from_event(event: dict[str, Any], what: str) -> Exception:
    """The typed error an ``"error"`` event describes (the one the worker would have raised)."""
    message = str(event.get("message") or "no message")
    error = event.get("error")
    if isinstance(error, dict):
        return DeepgramAPIError.from_dict(error)
    error_class = event.get("error_class")
    plain = _PLAIN_ERRORS.get(str(error_class))
    if plain is not None:
        return plain(message)
    return DeepgramError(f"{what} failed in the triggerer: {f'{error_class}: ' if error_class else ''}{message}")
