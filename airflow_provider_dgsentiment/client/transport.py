"""The wire: connection settings, the request's query, masking, response parsing, the proxy.

Pure helpers of the request engine (:mod:`.engine`): what a request looks like and what
an answer means, with no state of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from airflow_provider_dgsentiment.client.results import SentimentResult
from airflow_provider_dgsentiment.client.retry import DEFAULT_MAX_RETRIES, parse_retry_after
from airflow_provider_dgsentiment.exceptions import (
    PLAIN_HTTP_SERVER,
    DeepgramAPIError,
    DeepgramPlainHTTPError,
    DeepgramRedirectError,
    DeepgramResponseError,
    make_api_error,
    summarize_body,
)
from airflow_provider_dgsentiment.get_provider_info import CONNECTION_NUMBERS

DEFAULT_BASE_URL = "https://api.deepgram.com"
#: The connection's defaults, defined once with the UI form (``get_provider_info.CONNECTION_NUMBERS``).
DEFAULT_TIMEOUT = float(CONNECTION_NUMBERS["timeout"][2])
DEFAULT_MAX_CONCURRENCY = int(CONNECTION_NUMBERS["max_concurrency"][2])
READ_PATH = "/v1/read"
PROJECTS_PATH = "/v1/projects"
USER_AGENT = "airflow-provider-dgsentiment"
#: What OpenSSL says when a TLS client hello is answered in plain HTTP.
TLS_TO_PLAIN_HTTP = "WRONG_VERSION_NUMBER"


@dataclass(frozen=True)
class DeepgramSettings:
    """
    Everything the engine needs from a ``deepgram`` connection.

    :param base_url: scheme and host, e.g. ``https://api.deepgram.com`` (no path, no trailing slash).
    :param api_key: the API key (sent as ``Authorization: Token <key>``).
    :param timeout: seconds for one whole response (connect, headers and body).
    :param max_retries: retries of one request after a retryable failure.
    :param max_concurrency: requests in flight at once.
    """

    base_url: str
    api_key: str
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY

    def __repr__(self) -> str:  # never show the key
        return (
            f"DeepgramSettings(base_url={self.base_url!r}, api_key='***', timeout={self.timeout}, "
            f"max_retries={self.max_retries}, max_concurrency={self.max_concurrency})"
        )

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Token {self.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    @property
    def read_url(self) -> str:
        return self.base_url + READ_PATH

    @property
    def projects_url(self) -> str:
        return self.base_url + PROJECTS_PATH


def read_query(language: str, tags: Iterable[str] | None = None) -> str:
    """The query string of a sentiment request: ``sentiment=true&language=en&tag=a&tag=b``."""
    pairs = [("sentiment", "true"), ("language", language)]
    pairs.extend(("tag", str(tag)) for tag in tags or ())
    return urlencode(pairs, quote_via=quote)


def masked_url(url: str | None) -> str:
    """
    Describe a URL without its secrets: credentials dropped, every query value ``***``.

    The result also goes through Airflow's secrets masker, so a registered key that
    still shows (e.g. in the path) is redacted too.
    """
    if not url:
        return "(none)"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unreadable URL)"
    shown = f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else parts.path
    if parts.query:
        names = [pair.split("=", 1)[0] for pair in parts.query.split("&") if pair]
        shown += "?" + "&".join(f"{name}=***" for name in names)
    if parts.fragment:
        shown += "#***"
    return redact_text(shown)


def plain_http_server(base_url: str) -> DeepgramPlainHTTPError:
    """
    The error for an ``https://`` base URL whose server answered in plain HTTP, naming the fix.

    :param base_url: the connection's base URL (``https://host[:port]``; it holds no secret).
    """
    parts = urlsplit(base_url)
    address = f"{parts.hostname}:{parts.port}" if parts.port else f"{parts.hostname}"
    return DeepgramPlainHTTPError(
        0,
        PLAIN_HTTP_SERVER,
        f"{masked_url(base_url)} answered in plain HTTP, not TLS ([SSL: {TLS_TO_PLAIN_HTTP}]): the server speaks "
        f"http. Use the base URL http://{address} (in a URI connection: the http schema, "
        f"deepgram://:KEY@{address}/http). Plain http is accepted for loopback hosts only, "
        "such as a local emulator; anything else must be https.",
    )


def redact_text(text: str) -> str:
    """Pass ``text`` through Airflow's secrets masker (registered secrets become ``***``)."""
    try:
        from airflow.providers.common.compat.sdk import redact
    except ImportError:  # pragma: no cover - every supported Airflow has it
        return text
    return str(redact(text))


def parse_success(status: int, body: bytes, request_id: str | None) -> SentimentResult:
    """Decode a 2xx body into a :class:`SentimentResult` or raise :class:`DeepgramResponseError`."""
    try:
        data = json.loads(body)
    except ValueError:
        raise DeepgramResponseError(
            f"the body is not JSON ({summarize_body(body.decode('utf-8', 'replace'))})",
            status=status,
            request_id=request_id,
        ) from None
    return SentimentResult.from_response(data, request_id=request_id)


def parse_error(status: int, body: bytes, headers: Any) -> DeepgramAPIError:
    """Decode an error (or redirect) response into the typed :class:`DeepgramAPIError`."""
    request_id = headers.get("dg-request-id")
    if 300 <= status < 400:
        return DeepgramRedirectError(
            status,
            "REDIRECT",
            f"the API answered with a redirect to {masked_url(headers.get('Location'))}; redirects are never "
            "followed (check the connection's Base URL)",
            request_id,
        )
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return make_api_error(
        status,
        parsed,
        request_id=request_id,
        retry_after=parse_retry_after(headers.get("Retry-After")),
        body_text=None if isinstance(parsed, dict) else text,
    )


def env_proxy(base_url: str) -> tuple[Any, Any]:
    """The proxy the environment names for ``base_url`` (``HTTPS_PROXY``, ``NO_PROXY``...), or None."""
    import yarl
    from aiohttp.helpers import get_env_proxy_for_url

    try:
        return get_env_proxy_for_url(yarl.URL(base_url))
    except LookupError:
        return None, None
