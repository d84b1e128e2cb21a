"""DeepgramSentimentHook: Deepgram's ``POST /v1/read?sentiment=true`` with pooling, retries and typed errors."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook, mask_secret

from airflow_provider_dgsentiment.chunking import DEFAULT_CHUNK_TOKENS, chunk_text, merge_results
from airflow_provider_dgsentiment.concurrency import AdaptiveConcurrency
from airflow_provider_dgsentiment.exceptions import (
    DeepgramAPIError,
    DeepgramConfigurationError,
    DeepgramConnectionError,
    DeepgramRateLimitError,
    DeepgramResponseError,
    DeepgramTimeoutError,
    DeepgramTokenLimitError,
    make_api_error,
    summarize_body,
)
from airflow_provider_dgsentiment.results import SentimentResult
from airflow_provider_dgsentiment.retry import DEFAULT_MAX_RETRIES, RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    import httpx
    import requests
    from airflow.providers.common.compat.sdk import Connection

DEFAULT_BASE_URL = "https://api.deepgram.com"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_CONCURRENCY = 10
API_KEY_ENV_VAR = "DEEPGRAM_API_KEY"
READ_PATH = "/v1/read"
PROJECTS_PATH = "/v1/projects"
USER_AGENT = "airflow-provider-dgsentiment"
#: Below this part size, a TOKEN_LIMIT_EXCEEDED answer is not retried with smaller parts.
MIN_CHUNK_TOKENS = 1000


@dataclass(frozen=True)
class DeepgramSettings:
    """
    Everything a client needs from a ``deepgram`` connection.

    :param base_url: scheme and host, e.g. ``https://api.deepgram.com`` (no trailing slash).
    :param api_key: the API key (sent as ``Authorization: Token <key>``).
    :param timeout: seconds to wait for one response.
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


def settings_from_connection(
    conn: Connection | None,
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
    max_concurrency: int | None = None,
) -> DeepgramSettings:
    """
    Build :class:`DeepgramSettings` from a ``deepgram`` connection (or None for env-only setup).

    The key comes from the password field, else from ``DEEPGRAM_API_KEY``. Extras
    ``timeout``, ``max_retries``, ``max_concurrency`` and ``allow_insecure_http`` are read;
    the keyword arguments, when not None, win over the extras.

    :raises DeepgramConfigurationError: no key anywhere, a bad extra, or plain http to a
        non-loopback host without ``allow_insecure_http``.
    """
    extras: dict[str, Any] = dict(conn.extra_dejson) if conn is not None else {}
    conn_id = conn.conn_id if conn is not None else None
    api_key = (conn.password if conn is not None else None) or os.environ.get(API_KEY_ENV_VAR)
    if not api_key:
        where = f"connection {conn_id!r}" if conn_id else "no connection"
        raise DeepgramConfigurationError(
            f"No Deepgram API key: set the password (API Key) of {where} or the {API_KEY_ENV_VAR} environment variable"
        )
    mask_secret(api_key)
    base_url = _base_url(conn)
    allow_insecure = _as_bool(extras.get("allow_insecure_http", False), "allow_insecure_http")
    _check_scheme(base_url, allow_insecure)

    values = {
        "timeout": _number(extras.get("timeout"), "timeout", float, DEFAULT_TIMEOUT, minimum=0.001),
        "max_retries": _number(extras.get("max_retries"), "max_retries", int, DEFAULT_MAX_RETRIES, minimum=0),
        "max_concurrency": _number(
            extras.get("max_concurrency"), "max_concurrency", int, DEFAULT_MAX_CONCURRENCY, minimum=1
        ),
    }
    if timeout is not None:
        values["timeout"] = _number(timeout, "timeout", float, DEFAULT_TIMEOUT, minimum=0.001)
    if max_retries is not None:
        values["max_retries"] = _number(max_retries, "max_retries", int, DEFAULT_MAX_RETRIES, minimum=0)
    if max_concurrency is not None:
        values["max_concurrency"] = _number(max_concurrency, "max_concurrency", int, DEFAULT_MAX_CONCURRENCY, minimum=1)
    return DeepgramSettings(base_url=base_url, api_key=api_key, **values)


def _base_url(conn: Connection | None) -> str:
    host = (conn.host or "").strip() if conn is not None else ""
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        schema = (conn.schema or "").strip() if conn is not None else ""
        host = f"{schema or 'https'}://{host}"
    if conn is not None and conn.port and urlsplit(host).port is None:
        host = f"{host.rstrip('/')}:{conn.port}"
    return host.rstrip("/")


def is_loopback_host(hostname: str | None) -> bool:
    """Return True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if not hostname:
        return False
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _check_scheme(base_url: str, allow_insecure: bool) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeepgramConfigurationError(f"Deepgram base URL must be http(s)://host, got {base_url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname) and not allow_insecure:
        raise DeepgramConfigurationError(
            f"Refusing plain http to {parts.hostname}: the API key would travel unencrypted. "
            "Use https, or set extra allow_insecure_http=true on the connection."
        )


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.strip().lower() in ("true", "1", "yes")
    if value is None:
        return False
    raise DeepgramConfigurationError(f"Connection extra {name} must be true or false, got {value!r}")


def _number(value: Any, name: str, kind: type, default: Any, *, minimum: float) -> Any:
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise DeepgramConfigurationError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise DeepgramConfigurationError(f"{name} must be at least {minimum}, got {value!r}")
    return number


def build_read_params(language: str) -> dict[str, str]:
    """Query parameters of a sentiment request."""
    return {"sentiment": "true", "language": language}


def parse_success(status: int, body_text: str, request_id: str | None) -> SentimentResult:
    """Decode a 2xx body into a :class:`SentimentResult` or raise :class:`DeepgramResponseError`."""
    try:
        data = json.loads(body_text)
    except ValueError:
        raise DeepgramResponseError(
            f"the body is not JSON ({summarize_body(body_text)})",
            status=status,
            request_id=request_id,
        ) from None
    return SentimentResult.from_response(data, request_id=request_id)


def parse_error(
    status: int, body_text: str, request_id: str | None, retry_after_header: str | None
) -> DeepgramAPIError:
    """Decode an error response into the typed :class:`DeepgramAPIError`."""
    try:
        body = json.loads(body_text) if body_text else None
    except ValueError:
        body = None
    return make_api_error(
        status,
        body,
        request_id=request_id,
        retry_after=parse_retry_after(retry_after_header),
        body_text=None if isinstance(body, dict) else body_text,
    )


class DeepgramSentimentHook(BaseHook):
    """
    Score text with Deepgram's Sentiment Analysis.

    One pooled HTTP session per hook, retries with exponential backoff and jitter
    (honouring ``Retry-After``) on 429, 408, 5xx and connection errors, typed
    :class:`~airflow_provider_dgsentiment.exceptions.DeepgramAPIError` on failure,
    and texts over the token limit scored in parts and merged.

    :param deepgram_conn_id: the ``deepgram`` connection; its password is the API key.
    :param timeout: seconds per response; overrides the connection's ``timeout`` extra.
    :param max_retries: retries per request; overrides the ``max_retries`` extra.
    :param max_concurrency: requests in flight in ``analyze_many``; overrides the extra.
    :param max_chunk_tokens: texts with more estimated tokens are split before sending.
    """

    conn_name_attr = "deepgram_conn_id"
    default_conn_name = "deepgram_default"
    conn_type = "deepgram"
    hook_name = "Deepgram"

    def __init__(
        self,
        deepgram_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_concurrency: int | None = None,
        max_chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deepgram_conn_id = deepgram_conn_id
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.max_chunk_tokens = max_chunk_tokens
        #: 429 answers seen by this hook (including ones that a retry then got through).
        self.rate_limited_count = 0
        #: Retries this hook made.
        self.retry_count = 0
        self._counter_lock = threading.Lock()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form's field behaviour (for Airflow versions without ``conn-fields``)."""
        from airflow_provider_dgsentiment.get_provider_info import get_provider_info

        behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
        # The hook-level form uses underscores (customized_form_field_behaviours.schema.json).
        return {
            "hidden_fields": list(behaviour["hidden-fields"]),
            "relabeling": dict(behaviour["relabeling"]),
            "placeholders": dict(behaviour["placeholders"]),
        }

    @cached_property
    def settings(self) -> DeepgramSettings:
        """The resolved connection settings (loaded once)."""
        try:
            conn = self.get_connection(self.deepgram_conn_id)
        except AirflowNotFoundException:
            conn = self._env_only_fallback()
        return self._settings_for(conn)

    async def aget_settings(self) -> DeepgramSettings:
        """Resolve the connection settings without blocking the event loop (for triggers)."""
        if "settings" in self.__dict__:
            return self.__dict__["settings"]
        from airflow.providers.common.compat.connection import get_async_connection
        from asgiref.sync import sync_to_async

        try:
            conn = await get_async_connection(self.deepgram_conn_id, self)
        except AirflowNotFoundException:
            conn = self._env_only_fallback()
        # Reading extras and registering the key with the secrets masker may call the
        # supervisor synchronously: do it in a worker thread, off the event loop.
        self.__dict__["settings"] = settings = await sync_to_async(self._settings_for)(conn)
        return settings

    def _env_only_fallback(self) -> None:
        """Without a ``deepgram_default`` connection, use ``DEEPGRAM_API_KEY`` and the default host."""
        if self.deepgram_conn_id != self.default_conn_name or not os.environ.get(API_KEY_ENV_VAR):
            raise AirflowNotFoundException(
                f"The conn_id `{self.deepgram_conn_id}` isn't defined (and {API_KEY_ENV_VAR} is not set)"
            )
        return None

    def _settings_for(self, conn: Connection | None) -> DeepgramSettings:
        return settings_from_connection(
            conn, timeout=self.timeout, max_retries=self.max_retries, max_concurrency=self.max_concurrency
        )

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.settings.max_retries)

    @cached_property
    def session(self) -> requests.Session:
        """The pooled HTTP session, sized for ``max_concurrency`` connections."""
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        pool = max(self.settings.max_concurrency, 1)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool, max_retries=0, pool_block=False)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(self.settings.headers)
        return session

    def get_conn(self) -> requests.Session:
        """Return the pooled session (Airflow's hook protocol)."""
        return self.session

    def close(self) -> None:
        """Close the pooled session, if one was opened."""
        session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()

    def __enter__(self) -> DeepgramSentimentHook:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ scoring

    def analyze(self, text: str, language: str = "en") -> SentimentResult:
        """
        Score one text; a text over the token limit is scored in parts and merged.

        :param text: the text to score.
        :param language: the language code (Deepgram supports ``en`` only).
        :raises DeepgramAPIError: the typed error of the failed request.
        """
        return self._analyze(text, language, window=None)

    def analyze_url(self, url: str, language: str = "en") -> SentimentResult:
        """
        Score the text Deepgram fetches from ``url`` (a ``{"url": ...}`` request body).

        :param url: a public http(s) URL of a text file.
        :param language: the language code.
        """
        return self._post({"url": url}, language)

    def analyze_many(
        self,
        texts: Iterable[str],
        *,
        language: str = "en",
        max_concurrency: int | None = None,
    ) -> Iterator[tuple[int, SentimentResult | DeepgramAPIError]]:
        """
        Score many texts concurrently, yielding ``(index, result_or_error)`` as each completes.

        At most ``max_concurrency`` requests are in flight, fewer after a 429 (the window
        halves, then grows back by about one slot per window of successes). ``texts`` is
        consumed lazily, so only the texts in flight are held in memory. A failed text
        yields its :class:`DeepgramAPIError` instead of a result. After a systemic error
        (bad key, no credit, unsupported language) no further texts are sent: the generator
        ends once the requests in flight complete.

        :param texts: the texts, e.g. a generator reading documents one by one.
        :param language: the language code.
        :param max_concurrency: the upper bound of requests in flight; default from the connection.
        """
        bound = max_concurrency or self.settings.max_concurrency
        window = AdaptiveConcurrency(bound)
        iterator = iter(enumerate(texts))
        in_flight: dict[Future, int] = {}
        stop_sending = False
        executor = ThreadPoolExecutor(max_workers=bound, thread_name_prefix="deepgram")
        try:
            while True:
                while not stop_sending and len(in_flight) < window.limit:
                    item = next(iterator, None)
                    if item is None:
                        stop_sending = True
                        break
                    index, text = item
                    in_flight[executor.submit(self._analyze_in_window, text, language, window)] = index
                if not in_flight:
                    return
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    index = in_flight.pop(future)
                    try:
                        outcome: SentimentResult | DeepgramAPIError = future.result()
                    except DeepgramAPIError as error:
                        outcome = error
                        if error.systemic:
                            stop_sending = True
                    yield index, outcome
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _analyze_in_window(self, text: str, language: str, window: AdaptiveConcurrency) -> SentimentResult:
        result = self._analyze(text, language, window=window)
        window.on_success()
        return result

    def _analyze(self, text: str, language: str, window: AdaptiveConcurrency | None) -> SentimentResult:
        parts = chunk_text(text, self.max_chunk_tokens)
        if len(parts) > 1:
            self.log.info(
                "Text of %d characters is over the token limit; scoring it in %d parts", len(text), len(parts)
            )
        try:
            results = [self._post({"text": part}, language, window) for part in parts]
        except DeepgramTokenLimitError:
            if self.max_chunk_tokens <= MIN_CHUNK_TOKENS:
                raise
            # Deepgram counted more tokens than our estimate: split finer and try once more.
            parts = chunk_text(text, self.max_chunk_tokens // 4)
            self.log.info("Deepgram counted more tokens than estimated; scoring the text in %d parts", len(parts))
            results = [self._post({"text": part}, language, window) for part in parts]
        return merge_results(results, parts)

    # ------------------------------------------------------------------ HTTP

    def _post(self, body: dict[str, str], language: str, window: AdaptiveConcurrency | None = None) -> SentimentResult:
        """Send one sentiment request with retries; return its result or raise its typed error."""
        policy = self.retry_policy
        attempt = 0
        while True:
            try:
                return self._send_once(body, language)
            except DeepgramAPIError as error:
                if not self._count_failure(error, attempt, window):
                    raise
                delay = policy.delay(attempt, error.retry_after)
                attempt += 1
                self._log_retry(error, attempt, delay)
                time.sleep(delay)

    def _count_failure(self, error: DeepgramAPIError, attempt: int, window: AdaptiveConcurrency | None) -> bool:
        """Record a failed attempt (429s shrink the window); return True when it should be retried."""
        rate_limited = isinstance(error, DeepgramRateLimitError)
        if rate_limited and window is not None:
            window.on_rate_limited()
        retry = self.retry_policy.should_retry(attempt, retryable=error.retryable)
        with self._counter_lock:
            self.rate_limited_count += rate_limited
            self.retry_count += retry
        return retry

    def _log_retry(self, error: DeepgramAPIError, attempt: int, delay: float) -> None:
        self.log.warning("%s; retry %d/%d in %.2fs", error, attempt, self.retry_policy.max_retries, delay)

    def _send_once(self, body: dict[str, str], language: str) -> SentimentResult:
        import requests

        settings = self.settings
        try:
            response = self.session.post(
                settings.read_url,
                params=build_read_params(language),
                json=body,
                timeout=settings.timeout,
            )
        except requests.Timeout as exc:
            raise DeepgramTimeoutError(
                0, "CLIENT_TIMEOUT", f"no response within {settings.timeout}s: {type(exc).__name__}"
            ) from None
        except requests.RequestException as exc:
            raise DeepgramConnectionError(0, "CONNECTION_ERROR", f"{type(exc).__name__}: {exc}") from None
        request_id = response.headers.get("dg-request-id")
        text = response.text
        if response.status_code >= 400:
            raise parse_error(response.status_code, text, request_id, response.headers.get("Retry-After"))
        return parse_success(response.status_code, text, request_id)

    # ------------------------------------------------------------------ async (triggers)

    async def aanalyze_many(
        self,
        texts: Iterable[str],
        *,
        language: str = "en",
        max_concurrency: int | None = None,
    ) -> AsyncIterator[tuple[int, SentimentResult | DeepgramAPIError]]:
        """
        Async twin of :meth:`analyze_many` on one ``httpx.AsyncClient``, for the triggerer.

        Same window, retries, errors and chunking; waits with ``asyncio.sleep``, never blocks.
        """
        import httpx

        settings = await self.aget_settings()
        bound = max_concurrency or settings.max_concurrency
        window = AdaptiveConcurrency(bound)
        source = texts.__aiter__() if hasattr(texts, "__aiter__") else None
        plain = None if source is not None else iter(texts)
        counter = 0

        async def next_item() -> tuple[int, str] | None:
            nonlocal counter
            try:
                text = await source.__anext__() if source is not None else next(plain)
            except (StopIteration, StopAsyncIteration):
                return None
            counter += 1
            return counter - 1, text

        tasks: dict[asyncio.Task, int] = {}
        stop_sending = False
        limits = httpx.Limits(max_connections=bound, max_keepalive_connections=bound)
        async with httpx.AsyncClient(headers=settings.headers, timeout=settings.timeout, limits=limits) as client:
            try:
                while True:
                    while not stop_sending and len(tasks) < window.limit:
                        item = await next_item()
                        if item is None:
                            stop_sending = True
                            break
                        index, text = item
                        tasks[asyncio.ensure_future(self._aanalyze(client, text, language, window))] = index
                    if not tasks:
                        return
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        index = tasks.pop(task)
                        try:
                            outcome: SentimentResult | DeepgramAPIError = task.result()
                            window.on_success()
                        except DeepgramAPIError as error:
                            outcome = error
                            if error.systemic:
                                stop_sending = True
                        yield index, outcome
            finally:
                for task in tasks:
                    task.cancel()

    async def _aanalyze(
        self, client: httpx.AsyncClient, text: str, language: str, window: AdaptiveConcurrency
    ) -> SentimentResult:
        parts = chunk_text(text, self.max_chunk_tokens)
        try:
            results = [await self._apost(client, {"text": part}, language, window) for part in parts]
        except DeepgramTokenLimitError:
            if self.max_chunk_tokens <= MIN_CHUNK_TOKENS:
                raise
            parts = chunk_text(text, self.max_chunk_tokens // 4)
            results = [await self._apost(client, {"text": part}, language, window) for part in parts]
        return merge_results(results, parts)

    async def _apost(
        self, client: httpx.AsyncClient, body: dict[str, str], language: str, window: AdaptiveConcurrency
    ) -> SentimentResult:
        policy = self.retry_policy
        attempt = 0
        while True:
            try:
                return await self._asend_once(client, body, language)
            except DeepgramAPIError as error:
                if not self._count_failure(error, attempt, window):
                    raise
                delay = policy.delay(attempt, error.retry_after)
                attempt += 1
                self._log_retry(error, attempt, delay)
                await asyncio.sleep(delay)

    async def _asend_once(self, client: httpx.AsyncClient, body: dict[str, str], language: str) -> SentimentResult:
        import httpx

        settings = self.settings
        try:
            response = await client.post(settings.read_url, params=build_read_params(language), json=body)
        except httpx.TimeoutException as exc:
            raise DeepgramTimeoutError(
                0, "CLIENT_TIMEOUT", f"no response within {settings.timeout}s: {type(exc).__name__}"
            ) from None
        except httpx.TransportError as exc:
            raise DeepgramConnectionError(0, "CONNECTION_ERROR", f"{type(exc).__name__}: {exc}") from None
        request_id = response.headers.get("dg-request-id")
        if response.status_code >= 400:
            raise parse_error(response.status_code, response.text, request_id, response.headers.get("Retry-After"))
        return parse_success(response.status_code, response.text, request_id)

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the key with ``GET /v1/projects`` (free, authenticated); never raises.

        :return: ``(True, message)`` when the key works, else ``(False, reason)``.
        """
        import requests

        try:
            settings = self.settings
            response = self.session.get(settings.projects_url, timeout=min(settings.timeout, 30.0))
        except DeepgramConfigurationError as exc:
            return False, str(exc)
        except AirflowNotFoundException as exc:
            return False, str(exc)
        except requests.RequestException as exc:
            return False, f"Could not reach Deepgram: {type(exc).__name__}"
        if response.status_code == 200:
            try:
                projects = response.json().get("projects", [])
            except ValueError:
                return False, "Deepgram answered, but not with JSON: is the Base URL right?"
            return True, f"Connection to Deepgram works: the key sees {len(projects)} project(s)."
        error = parse_error(response.status_code, response.text, response.headers.get("dg-request-id"), None)
        return False, str(error)
