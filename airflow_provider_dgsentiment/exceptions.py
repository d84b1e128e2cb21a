"""The whole error family of the provider, in one module.

Every error raised for an HTTP answer from Deepgram is a :class:`DeepgramAPIError`
carrying the HTTP ``status``, Deepgram's ``err_code`` and ``err_msg`` and the
``request_id`` to quote to Deepgram support. :func:`make_api_error` is the one
place that maps a status (and error code) to a subclass.

Errors that a task retry cannot fix (bad key, no credit, bad request, a
response we cannot read) also subclass :class:`AirflowFailException`, so Airflow
fails the task at once instead of retrying it.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

UNSUPPORTED_LANGUAGE_PREFIX = "Request specified unsupported language"


class DeepgramError(AirflowException):
    """Base class of every error raised by this provider."""


class DeepgramConfigurationError(DeepgramError, AirflowFailException):
    """The connection or the arguments are wrong (missing key, insecure URL, bad option)."""


class DeepgramAPIError(DeepgramError):
    """
    Deepgram answered with an HTTP error status, or the request to it failed.

    :param status: the HTTP status code (0 when no response arrived).
    :param err_code: Deepgram's ``err_code`` (e.g. ``INVALID_QUERY_PARAMETER``), or None.
    :param err_msg: Deepgram's ``err_msg``, or a short description of the body.
    :param request_id: Deepgram's ``request_id`` (body or ``dg-request-id`` header), or None.
    :param retry_after: seconds the server asked us to wait (``Retry-After``), when given.
    :param context: where it happened (e.g. the document), appended to the message after ``" -- "``.
    """

    #: True when repeating the same request later may succeed.
    retryable: bool = False
    #: True when every other request of the run would fail the same way (bad key, no credit).
    systemic: bool = False

    def __init__(
        self,
        status: int,
        err_code: str | None = None,
        err_msg: str | None = None,
        request_id: str | None = None,
        *,
        retry_after: float | None = None,
        context: str | None = None,
    ) -> None:
        self.status = status
        self.err_code = err_code
        self.err_msg = err_msg
        self.request_id = request_id
        self.retry_after = retry_after
        self.context = context
        super().__init__(self._message())

    def _message(self) -> str:
        described = self._describe()
        return f"{described} -- {self.context}" if self.context else described

    def _describe(self) -> str:
        parts = [f"Deepgram API error {self.status}" if self.status else "Deepgram request failed"]
        if self.err_code:
            parts.append(f" {self.err_code}")
        if self.err_msg:
            parts.append(f": {self.err_msg}")
        if self.request_id:
            parts.append(f" (request_id={self.request_id})")
        return "".join(parts)

    def _state(self) -> dict[str, Any]:
        """The constructor's arguments (the same for every subclass, see :meth:`_from_state`)."""
        return {
            "status": self.status,
            "err_code": self.err_code,
            "err_msg": self.err_msg,
            "request_id": self.request_id,
            "retry_after": self.retry_after,
            "context": self.context,
        }

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> DeepgramAPIError:
        return cls(
            int(state.get("status") or 0),
            state.get("err_code"),
            state.get("err_msg"),
            state.get("request_id"),
            retry_after=state.get("retry_after"),
            context=state.get("context"),
        )

    def __reduce__(self):
        return (_rebuild_api_error, (type(self), self._state()))

    def with_context(self, text: str) -> DeepgramAPIError:
        """Return a new error of the same class whose message ends with ``" -- " + text``."""
        state = self._state()
        state["context"] = f"{self.context} -- {text}" if self.context else text
        error = type(self)._from_state(state)
        error.__cause__ = self.__cause__
        return error

    def to_dict(self) -> dict[str, Any]:
        """Return the error as plain JSON-safe data (for trigger events and XCom); see :meth:`from_dict`."""
        data: dict[str, Any] = {
            "error_class": type(self).__name__,
            "status": self.status,
            "err_code": self.err_code,
            "err_msg": self.err_msg,
            "request_id": self.request_id,
        }
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        if self.context:
            data["context"] = self.context
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> DeepgramAPIError:
        """
        Rebuild the error :meth:`to_dict` described.

        The class is looked up by name in :data:`ERROR_CLASSES` only (never imported or
        found by walking subclasses); an unknown name falls back to the class
        :func:`make_api_error` picks for the status.
        """
        cls = ERROR_CLASSES.get(str(data.get("error_class")))
        if cls is None:
            status = int(data.get("status") or 0)
            error = make_api_error(
                status,
                {"err_code": data.get("err_code"), "err_msg": data.get("err_msg")},
                request_id=data.get("request_id"),
                retry_after=data.get("retry_after"),
            )
            return error.with_context(data["context"]) if data.get("context") else error
        return cls._from_state(data)


def _rebuild_api_error(cls: type[DeepgramAPIError], state: dict[str, Any]) -> DeepgramAPIError:
    return cls._from_state(state)


class DeepgramResponseError(DeepgramAPIError, AirflowFailException):
    """
    Deepgram answered, but the body is not the JSON shape the API documents.

    Not retried (the same request is likely to get the same answer) and not systemic:
    the document fails alone.

    :param message: what was wrong with the body.
    :param status: the HTTP status of the response.
    :param request_id: the ``dg-request-id`` header, when there was one.
    :param context: where it happened, appended to the message.
    """

    def __init__(
        self, message: str, *, status: int = 200, request_id: str | None = None, context: str | None = None
    ) -> None:
        super().__init__(status, "INVALID_RESPONSE", message, request_id, context=context)

    def _describe(self) -> str:
        suffix = f" (request_id={self.request_id})" if self.request_id else ""
        return f"Unreadable Deepgram response (HTTP {self.status}): {self.err_msg}{suffix}"

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> DeepgramAPIError:
        return cls(
            state.get("err_msg") or "",
            status=int(state.get("status") or 0),
            request_id=state.get("request_id"),
            context=state.get("context"),
        )


class DeepgramBadRequestError(DeepgramAPIError, AirflowFailException):
    """400 (or another 4xx without a class of its own): the request itself is wrong."""


class DeepgramUnsupportedLanguageError(DeepgramBadRequestError):
    """400 ``INVALID_QUERY_PARAMETER`` for a language the sentiment model does not support."""

    systemic = True


class DeepgramTokenLimitError(DeepgramBadRequestError):
    """400 ``TOKEN_LIMIT_EXCEEDED``: the text is over the per-request token limit."""


class DeepgramAuthenticationError(DeepgramAPIError, AirflowFailException):
    """401 (bad or missing key) or 403 (the key lacks a permission)."""

    systemic = True


class DeepgramPaymentRequiredError(DeepgramAPIError, AirflowFailException):
    """402: the project has no credit left."""

    systemic = True


class DeepgramNotFoundError(DeepgramAPIError, AirflowFailException):
    """404 or 405: wrong base URL or path."""

    systemic = True


class DeepgramRedirectError(DeepgramAPIError, AirflowFailException):
    """
    3xx: the API never redirects, so the base URL is wrong (or something intercepts it).

    Redirects are never followed (the document text would go elsewhere) nor retried,
    and every request of the run would get the same answer. ``err_msg`` names the
    ``Location`` with its query values and credentials masked.
    """

    systemic = True


class DeepgramRateLimitError(DeepgramAPIError):
    """429: over the project's concurrency or rate limit; retried with backoff."""

    retryable = True


class DeepgramTimeoutError(DeepgramAPIError):
    """408 from the server, or no whole response within the client's timeout."""

    retryable = True


class DeepgramServerError(DeepgramAPIError):
    """5xx: Deepgram (or a proxy in front of it) failed; retried with backoff."""

    retryable = True


class DeepgramConnectionError(DeepgramAPIError):
    """The connection failed or was dropped before a response arrived (status 0)."""

    retryable = True


class DeepgramEndpointUnreachableError(DeepgramConnectionError):
    """
    Several connection attempts in a row failed with no success in between: the run stops.

    Not an :class:`AirflowFailException`: the endpoint may be back for a task retry.
    """

    retryable = False
    systemic = True


class DeepgramPlainHTTPError(DeepgramConnectionError, AirflowFailException):
    """
    An ``https://`` base URL reached a server that answers in plain HTTP (TLS ``WRONG_VERSION_NUMBER``).

    Typically a local emulator behind ``https://`` or a URI connection without the ``http``
    schema. No retry can fix it, so the run stops at once; the message names the fix.
    """

    retryable = False
    systemic = True


class DeepgramTokenBudgetError(DeepgramAPIError, AirflowFailException):
    """
    The next request would pass the run's ``max_input_tokens``: nothing more is sent.

    Built with :meth:`for_budget`; status 0, ``err_code`` ``TOKEN_BUDGET_EXCEEDED``.
    """

    systemic = True

    @classmethod
    def for_budget(cls, cap: int, used: int, needed: int) -> DeepgramTokenBudgetError:
        """Describe a request needing ``needed`` tokens when ``used`` of ``cap`` are spent or reserved."""
        return cls(
            0,
            TOKEN_BUDGET_EXCEEDED,
            f"max_input_tokens={cap} would be passed: {used} input tokens used, the next request needs about {needed}",
        )


#: ``err_code`` of :class:`DeepgramPlainHTTPError`.
PLAIN_HTTP_SERVER = "PLAIN_HTTP_SERVER"

#: ``err_code`` of :class:`DeepgramTokenBudgetError`.
TOKEN_BUDGET_EXCEEDED = "TOKEN_BUDGET_EXCEEDED"

#: Every error class :meth:`DeepgramAPIError.from_dict` may rebuild, by name.
ERROR_CLASSES: dict[str, type[DeepgramAPIError]] = {
    cls.__name__: cls
    for cls in (
        DeepgramAPIError,
        DeepgramResponseError,
        DeepgramBadRequestError,
        DeepgramUnsupportedLanguageError,
        DeepgramTokenLimitError,
        DeepgramAuthenticationError,
        DeepgramPaymentRequiredError,
        DeepgramNotFoundError,
        DeepgramRedirectError,
        DeepgramRateLimitError,
        DeepgramTimeoutError,
        DeepgramServerError,
        DeepgramConnectionError,
        DeepgramEndpointUnreachableError,
        DeepgramPlainHTTPError,
        DeepgramTokenBudgetError,
    )
}


def make_api_error(
    status: int,
    body: Any = None,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    body_text: str | None = None,
) -> DeepgramAPIError:
    """
    Build the typed error for an HTTP error response: the one status -> class mapping.

    :param status: HTTP status code.
    :param body: the parsed JSON body, or None when it was not JSON.
    :param request_id: the ``dg-request-id`` header, used when the body has none.
    :param retry_after: parsed ``Retry-After`` seconds, if any.
    :param body_text: the raw body, summarised into ``err_msg`` when it is not Deepgram JSON
        (e.g. an HTML 502 page from a proxy).
    """
    err_code = err_msg = None
    if isinstance(body, dict):
        err_code = _str_or_none(body.get("err_code"))
        err_msg = _str_or_none(body.get("err_msg") or body.get("message") or body.get("error"))
        request_id = _str_or_none(body.get("request_id")) or request_id
    if err_msg is None and body_text is not None:
        err_msg = summarize_body(body_text)

    if status == 400:
        if err_code == "TOKEN_LIMIT_EXCEEDED":
            cls: type[DeepgramAPIError] = DeepgramTokenLimitError
        elif err_msg and err_msg.startswith(UNSUPPORTED_LANGUAGE_PREFIX):
            cls = DeepgramUnsupportedLanguageError
        else:
            cls = DeepgramBadRequestError
    elif 300 <= status < 400:
        cls = DeepgramRedirectError
    elif status in (401, 403):
        cls = DeepgramAuthenticationError
    elif status == 402:
        cls = DeepgramPaymentRequiredError
    elif status in (404, 405):
        cls = DeepgramNotFoundError
    elif status == 408:
        cls = DeepgramTimeoutError
    elif status == 429:
        cls = DeepgramRateLimitError
    elif status >= 500:
        cls = DeepgramServerError
    elif status == 0:
        cls = DeepgramConnectionError
    else:
        cls = DeepgramBadRequestError
    return cls(status, err_code, err_msg, request_id, retry_after=retry_after)


def summarize_body(text: str, limit: int = 200) -> str:
    """Describe a non-JSON body in one short line (an HTML error page becomes its title)."""
    stripped = text.strip()
    if not stripped:
        return "empty response body"
    lowered = stripped.lower()
    if lowered.startswith("<!doctype html") or lowered.startswith("<html") or "<title>" in lowered:
        start = lowered.find("<title>")
        end = lowered.find("</title>")
        title = stripped[start + 7 : end].strip() if 0 <= start < end else ""
        return f"non-JSON HTML response{': ' + title if title else ''}"
    one_line = " ".join(stripped.split())
    if len(one_line) > limit:
        one_line = one_line[:limit] + "..."
    return f"non-JSON response: {one_line}"


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


class DocumentReadError(DeepgramError):
    """
    A document could not be read: missing object, undecodable bytes, unreadable storage.

    :param source: the document's URI (or ``text[i]`` for inline text).
    :param reason: what was wrong, in one line.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self):
        return (DocumentReadError, (self.source, self.reason))


class RecordFileError(DocumentReadError):
    """
    A record file cannot be read as records: not gzip, not Parquet, no such column, unreadable.

    :param source: the object's URI.
    :param reason: what was wrong, in one line.
    """

    def __reduce__(self):
        return (RecordFileError, (self.source, self.reason))


#: How many names a message or log line lists before "and N more".
NAMED_IN_MESSAGES = 5


def first_and_more(
    names: list[str], *, total: int | None = None, limit: int = NAMED_IN_MESSAGES, separator: str = ", "
) -> str:
    """
    List the first ``limit`` of ``names``, then ``and N more`` for the rest of ``total``.

    :param names: what to name (already shortened to what the caller kept, or all of it).
    :param total: how many there are in all (default: ``len(names)``).
    :param limit: how many to name.
    :param separator: between the names (and before the ``and N more`` clause).
    """
    shown = [str(name) for name in names[:limit]]
    more = (len(names) if total is None else total) - len(shown)
    return separator.join(shown + ([f"and {more} more"] if more > 0 else []))
