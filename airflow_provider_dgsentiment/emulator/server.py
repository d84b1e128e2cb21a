"""A local Deepgram-compatible ``/v1/read`` server for tests, demos and benchmarks.

:class:`EmulatorServer` runs the aiohttp app in a background thread with its own
event loop; :func:`serve` runs it in the calling thread until told to stop (the
CLI uses it). Both take an :class:`EmulatorConfig`.

Endpoints:

- ``POST /v1/read?sentiment=true&language=en`` with ``{"text": ...}`` or
  ``{"url": ...}``: the API's response shape, errors and headers
  (``dg-request-id``), scored by :mod:`.scoring`.
- ``GET /v1/projects``: the key's one project, for connection tests.
- ``GET /_emulator/stats``: the counters since start or the last reset, no key
  needed: ``{"requests", "rate_limited", "peak_in_flight", "tags": {tag: count},
  ...}`` (see :class:`_Stats`). ``POST /_emulator/stats/reset`` zeroes them
  (``POST /_emulator/reset`` too, its older name).

Requests to ``/v1/read`` beyond ``max_concurrency`` in flight get 429, like the
live API. Faults (latency with jitter, latency spikes, 500/503, 429 storms,
dropped connections) are drawn from a seeded RNG so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import json
import os
import random
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from airflow_provider_dgsentiment.emulator.scoring import score_text
from airflow_provider_dgsentiment.emulator.tokens import TOKEN_LIMIT, count_tokens

#: The emulator's sentiment model id (fixed; not a live Deepgram model).
MODEL_UUID = "23808647-67d2-5a4a-a2ba-4819ebb374e9"
#: The one project every accepted key belongs to.
PROJECT_ID = "2be6b4bd-dc7d-5b48-bfc8-cbb6ceee59e8"
PROJECT_NAME = "Deepgram Emulator"

#: Environment variable holding the key the emulator accepts, and the key used when unset.
API_KEY_ENV = "DEEPGRAM_EMULATOR_API_KEY"
DEFAULT_API_KEY = "emulator-key"

#: Texts longer than this many characters are scored in a worker thread.
THREAD_SCORING_CHARS = 20_000
#: Request bodies and fetched ``url`` texts larger than this are refused.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: How long a ``url`` body may take to download.
URL_FETCH_TIMEOUT = 10.0
#: Deepgram's limit on one ``tag`` value ("Tags are limited to 128 characters per tag").
MAX_TAG_CHARS = 128

_FEATURE_PARAMS = (
    "summarize",
    "topics",
    "intents",
    "custom_topic",
    "custom_topic_mode",
    "custom_intent",
    "custom_intent_mode",
    "detect_language",
    "callback",
    "callback_method",
)
_BOOLEAN_FEATURES = frozenset({"summarize", "topics", "intents", "detect_language"})
_KNOWN_PARAMS = ("sentiment", "language", "tag", *_FEATURE_PARAMS)
_REPEATABLE_PARAMS = frozenset({"tag", "custom_topic", "custom_intent"})

_TOO_MANY_REQUESTS = "Too many requests. Please try again later."
_TOKEN_LIMIT_MSG = (
    "Text input for Sentiment Analysis currently supports up to 150K tokens. Please revise your "
    "text input to fit within the defined token limit. For more information, please visit our "
    "API documentation."
)
_SERVER_ERRORS = {
    500: ("INTERNAL_SERVER_ERROR", "The server encountered an internal error. Please try again later."),
    503: ("SERVICE_UNAVAILABLE", "The service is temporarily unavailable. Please try again later."),
}


def _default_api_key() -> str:
    return os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY


@dataclass(frozen=True)
class EmulatorConfig:
    """
    How the emulator listens, whom it lets in and which faults it injects.

    :param host: interface to bind.
    :param port: port to bind; 0 picks a free one.
    :param api_key: the key accepted in ``Authorization: Token <key>``; defaults to
        ``$DEEPGRAM_EMULATOR_API_KEY`` or ``"emulator-key"``.
    :param accept_any_key: accept any non-empty key instead.
    :param max_concurrency: requests to ``/v1/read`` in flight before it answers 429.
    :param latency: seconds added to every admitted ``/v1/read`` request.
    :param latency_jitter: the added latency varies uniformly by this fraction (0.2 = ±20%).
    :param error_rate: share of requests answered 500 or 503.
    :param rate_limit_rate: share of requests answered 429 with ``Retry-After``.
    :param retry_after: seconds sent in ``Retry-After`` with every 429.
    :param drop_rate: share of requests whose connection is closed without a response.
    :param spike_rate: share of requests given ``spike_latency`` extra seconds.
    :param spike_latency: the extra seconds of a spike.
    :param seed: seed of the fault RNG, for repeatable runs; None seeds from the OS.
    :param token_limit: tokens per text (counted by :func:`.tokens.count_tokens`)
        before ``TOKEN_LIMIT_EXCEEDED``.
    :param shutdown_timeout: seconds in-flight requests get to finish when stopping.
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = field(default_factory=_default_api_key)
    accept_any_key: bool = False
    max_concurrency: int = 10
    latency: float = 0.0
    latency_jitter: float = 0.2
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    drop_rate: float = 0.0
    spike_rate: float = 0.0
    spike_latency: float = 0.0
    seed: int | None = None
    token_limit: int = TOKEN_LIMIT
    shutdown_timeout: float = 1.0

    def __post_init__(self) -> None:
        if not self.accept_any_key and not self.api_key:
            raise ValueError("api_key must be non-empty (or set accept_any_key=True)")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        for name in ("latency", "spike_latency", "retry_after", "shutdown_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.latency_jitter <= 1:
            raise ValueError(f"latency_jitter must be within [0, 1], got {self.latency_jitter}")
        for name in ("error_rate", "rate_limit_rate", "drop_rate", "spike_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        fault_share = self.error_rate + self.rate_limit_rate + self.drop_rate
        if fault_share > 1 + 1e-9:
            raise ValueError(f"error_rate + rate_limit_rate + drop_rate must not exceed 1, got {fault_share:g}")


class _Stats:
    """
    Counters shared between the event loop (writer) and any thread (reader).

    The contract's four (SPEC 7), all about ``/v1/read``:

    - ``requests``: requests that arrived, whatever their answer;
    - ``rate_limited``: 429s sent (over ``max_concurrency`` or injected);
    - ``peak_in_flight``: the most requests admitted and in flight at once;
    - ``tags``: ``{tag: requests that carried it}`` from the ``tag`` query
      parameter (repeatable; a tag repeated in one request counts once).

    Beside them: ``by_status`` answers sent (keyed by the status as a string),
    ``server_errors`` 5xx sent, ``dropped`` connections closed without an answer,
    ``in_flight`` now, ``scored_texts`` and their ``input_tokens``,
    ``project_requests`` to ``/v1/projects``, and ``max_in_flight`` (the older
    name of ``peak_in_flight``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self._reset()

    def _reset(self) -> None:
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.rate_limited = 0
        self.server_errors = 0
        self.dropped = 0
        self.peak_in_flight = self.in_flight
        self.tags: dict[str, int] = {}
        self.scored_texts = 0
        self.input_tokens = 0
        self.project_requests = 0

    def reset(self) -> None:
        with self._lock:
            self._reset()

    def project_request(self) -> None:
        with self._lock:
            self.project_requests += 1

    def arrived(self, tags: list[str]) -> None:
        with self._lock:
            self.requests += 1
            for tag in dict.fromkeys(tags):
                self.tags[tag] = self.tags.get(tag, 0) + 1

    def try_enter(self, limit: int) -> bool:
        with self._lock:
            if self.in_flight >= limit:
                return False
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def answered(self, status: int) -> None:
        with self._lock:
            key = str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if status == 429:
                self.rate_limited += 1
            elif status >= 500:
                self.server_errors += 1

    def scored(self, input_tokens: int) -> None:
        with self._lock:
            self.scored_texts += 1
            self.input_tokens += input_tokens

    def drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "peak_in_flight": self.peak_in_flight,
                "tags": dict(self.tags),
                "by_status": dict(self.by_status),
                "server_errors": self.server_errors,
                "dropped": self.dropped,
                "in_flight": self.in_flight,
                "max_in_flight": self.peak_in_flight,
                "scored_texts": self.scored_texts,
                "input_tokens": self.input_tokens,
                "project_requests": self.project_requests,
            }


class _APIError(Exception):
    """An error answer: raised inside a handler, turned into Deepgram's JSON error body."""

    def __init__(self, status: int, err_code: str, err_msg: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(err_msg)
        self.status = status
        self.err_code = err_code
        self.err_msg = err_msg
        self.headers = dict(headers or {})


class _Drop(Exception):
    """Close the connection without answering."""


def _bad_query(message: str) -> _APIError:
    return _APIError(400, "INVALID_QUERY_PARAMETER", message)


def _bad_body(message: str) -> _APIError:
    return _APIError(400, "INVALID_REQUEST_BODY", message)


def _refuse_unless_loopback(request: web.Request) -> web.Response | None:
    """Return a 403 answer unless ``request`` comes from a loopback address (the counters need no key)."""
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address is not None and address.is_loopback:
        return None
    return web.json_response(
        {"err_code": "FORBIDDEN", "err_msg": "The emulator's counters answer loopback clients only."}, status=403
    )


def _created_now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _analyze(text: str, token_limit: int) -> tuple[int, dict[str, Any] | None]:
    """Count the tokens of ``text`` and score it, unless it is over the limit."""
    tokens = count_tokens(text)
    if tokens > token_limit:
        return tokens, None
    return tokens, score_text(text)


class Emulator:
    """
    The emulator's request handling and state; :meth:`make_app` builds its aiohttp app.

    :param config: the emulator's settings.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.stats = _Stats()
        self._fault_rng = random.Random(config.seed)
        self._latency_rng = random.Random(None if config.seed is None else f"latency-{config.seed}")
        self._http: ClientSession | None = None

    def make_app(self) -> web.Application:
        """Return the aiohttp application serving the emulated API."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/v1/read", self._handle_read)
        app.router.add_route("*", "/v1/projects", self._handle_projects)
        app.router.add_get("/_emulator/stats", self._handle_stats)
        app.router.add_post("/_emulator/stats/reset", self._handle_reset)
        app.router.add_post("/_emulator/reset", self._handle_reset)
        app.on_cleanup.append(self._close_http)
        return app

    # -- handlers -----------------------------------------------------------------

    async def _handle_read(self, request: web.Request) -> web.StreamResponse:
        self.stats.arrived(request.query.getall("tag", []))
        response = await self._answer(request, self._read)
        if response is None:
            self.stats.drop()
            # aiohttp's write of this stand-in fails quietly on the closed transport.
            return web.Response(status=500)
        self.stats.answered(response.status)
        return response

    async def _handle_projects(self, request: web.Request) -> web.StreamResponse:
        self.stats.project_request()
        response = await self._answer(request, self._projects)
        # /v1/projects draws no faults, so it always has an answer.
        return response if response is not None else web.Response(status=500)

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _refuse_unless_loopback(request) or web.json_response(self.stats.snapshot())

    async def _handle_reset(self, request: web.Request) -> web.Response:
        refusal = _refuse_unless_loopback(request)
        if refusal is not None:
            return refusal
        self.stats.reset()
        return web.json_response(self.stats.snapshot())

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request, str], Awaitable[dict[str, Any]]],
    ) -> web.StreamResponse | None:
        """
        Run an API handler: add ``dg-request-id`` and turn errors into Deepgram's JSON.

        :return: the response, or None when the connection was dropped on purpose.
        """
        request_id = str(uuid.uuid4())
        try:
            body = await handler(request, request_id)
            response = web.json_response(body, headers={"dg-request-id": request_id})
        except _APIError as exc:
            response = web.json_response(
                {"err_code": exc.err_code, "err_msg": exc.err_msg, "request_id": request_id},
                status=exc.status,
                headers={**exc.headers, "dg-request-id": request_id},
            )
        except _Drop:
            transport = request.transport
            if transport is not None:
                transport.abort()
            return None
        return response

    async def _read(self, request: web.Request, request_id: str) -> dict[str, Any]:
        if request.method != "POST":
            raise _APIError(
                405,
                "METHOD_NOT_ALLOWED",
                f"Method {request.method} is not allowed on /v1/read; use POST.",
                headers={"Allow": "POST"},
            )
        self._authorize(request)
        config = self.config
        if not self.stats.try_enter(config.max_concurrency):
            raise _APIError(
                429, "TOO_MANY_REQUESTS", _TOO_MANY_REQUESTS, headers={"Retry-After": str(config.retry_after)}
            )
        try:
            loop = asyncio.get_running_loop()
            fault = self._draw_fault()
            # The latency counts from arrival: the request's own work happens inside it,
            # so a client sees the configured latency, not latency + processing.
            deadline = loop.time() + self._draw_delay()
            try:
                outcome: dict[str, Any] | _APIError = await self._score_request(request, request_id)
            except _APIError as error:
                outcome = error
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
            if fault is not None:
                fault()
            if isinstance(outcome, _APIError):
                raise outcome
            self.stats.scored(outcome["metadata"]["sentiment_info"]["input_tokens"])
            return outcome
        finally:
            self.stats.leave()

    async def _score_request(self, request: web.Request, request_id: str) -> dict[str, Any]:
        language = self._check_query(request)
        text = await self._read_text(request)
        tokens, sentiments = await self._score(text)
        if sentiments is None:
            raise _APIError(400, "TOKEN_LIMIT_EXCEEDED", _TOKEN_LIMIT_MSG)
        return {
            "metadata": {
                "request_id": request_id,
                "created": _created_now(),
                "language": language,
                "sentiment_info": {
                    "model_uuid": MODEL_UUID,
                    "input_tokens": tokens,
                    "output_tokens": tokens,
                },
            },
            "results": {"sentiments": sentiments},
        }

    async def _projects(self, request: web.Request, request_id: str) -> dict[str, Any]:
        if request.method != "GET":
            raise _APIError(
                405,
                "METHOD_NOT_ALLOWED",
                f"Method {request.method} is not allowed on /v1/projects; use GET.",
                headers={"Allow": "GET"},
            )
        self._authorize(request)
        return {"projects": [{"project_id": PROJECT_ID, "name": PROJECT_NAME}]}

    # -- steps ----------------------------------------------------------------------

    def _authorize(self, request: web.Request) -> None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        valid = scheme.lower() == "token" and bool(key)
        if valid and not self.config.accept_any_key:
            valid = hmac.compare_digest(key.encode(), self.config.api_key.encode())
        if not valid:
            raise _APIError(401, "INVALID_AUTH", "Invalid credentials.")

    def _draw_fault(self) -> Callable[[], None] | None:
        """Draw this request's fault at arrival, so a seeded run repeats in arrival order."""
        config = self.config
        if not (config.drop_rate or config.rate_limit_rate or config.error_rate):
            return None
        draw = self._fault_rng.random()
        if draw < config.drop_rate:
            return self._drop
        draw -= config.drop_rate
        if draw < config.rate_limit_rate:
            return self._rate_limit
        draw -= config.rate_limit_rate
        if draw < config.error_rate:
            status = 500 if self._fault_rng.random() < 0.5 else 503
            return lambda: self._server_error(status)
        return None

    @staticmethod
    def _drop() -> None:
        raise _Drop

    def _rate_limit(self) -> None:
        raise _APIError(
            429, "TOO_MANY_REQUESTS", _TOO_MANY_REQUESTS, headers={"Retry-After": str(self.config.retry_after)}
        )

    @staticmethod
    def _server_error(status: int) -> None:
        err_code, err_msg = _SERVER_ERRORS[status]
        raise _APIError(status, err_code, err_msg)

    def _draw_delay(self) -> float:
        """Draw this request's latency (with jitter) plus any latency spike, in seconds."""
        config = self.config
        delay = 0.0
        if config.latency > 0:
            jitter = config.latency_jitter
            delay = config.latency * self._latency_rng.uniform(1 - jitter, 1 + jitter)
        if config.spike_rate > 0 and self._fault_rng.random() < config.spike_rate:
            delay += config.spike_latency
        return delay

    @staticmethod
    def _check_query(request: web.Request) -> str:
        """Validate the query string the way the API does; return the language."""
        query = request.query
        for name in query:
            if name not in _KNOWN_PARAMS:
                expected = ", ".join(f"`{known}`" for known in _KNOWN_PARAMS)
                raise _bad_query(
                    f"Failed to deserialize query parameters: unknown field `{name}`, expected one of {expected}"
                )
            if name not in _REPEATABLE_PARAMS and len(query.getall(name)) > 1:
                raise _bad_query(f"Failed to deserialize query parameters: duplicate field `{name}`")
        for tag in query.getall("tag", []):
            if len(tag) > MAX_TAG_CHARS:
                raise _bad_query(
                    f"Tags are limited to {MAX_TAG_CHARS} characters per tag; a `tag` has {len(tag)} characters."
                )
        if "language" not in query:
            raise _bad_query("Failed to deserialize query parameters: missing field `language`")
        for name in ("sentiment", *_BOOLEAN_FEATURES):
            if name in query and query[name] not in ("true", "false"):
                raise _bad_query(
                    f"Failed to deserialize query parameters: {name}: provided string was not `true` or `false`"
                )
        language = query["language"]
        if language != "en":
            raise _bad_query(f"Request specified unsupported language: {language}. Only English is supported.")
        for name in _FEATURE_PARAMS:
            if name in query and not (name in _BOOLEAN_FEATURES and query[name] == "false"):
                raise _bad_query(
                    f"The Deepgram emulator implements only Sentiment Analysis (sentiment=true); "
                    f"`{name}` is not supported."
                )
        if query.get("sentiment") != "true":
            raise _bad_query(
                "No feature requested: the emulator implements Sentiment Analysis only; "
                "add `sentiment=true` to the query string."
            )
        return language

    async def _read_text(self, request: web.Request) -> str:
        """Return the text to score, from the ``text`` or ``url`` field of the JSON body."""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _APIError(413, "PAYLOAD_TOO_LARGE", f"Request body is larger than {MAX_BODY_BYTES} bytes.") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad_body(f"Request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _bad_body("Request body must be a JSON object with exactly one of `text` or `url`.")
        unknown = sorted(set(body) - {"text", "url"})
        if unknown:
            raise _bad_body(f"Request body has unknown field `{unknown[0]}`; expected exactly one of `text` or `url`.")
        if ("text" in body) == ("url" in body):
            raise _bad_body("Request body must have exactly one of `text` or `url`, not both and not neither.")
        if "url" in body:
            url = body["url"]
            if not isinstance(url, str) or not url.strip():
                raise _bad_body("`url` must be a non-empty string.")
            text = await self._fetch(url)
            where = f"The text at {url}"
        else:
            text = body["text"]
            if not isinstance(text, str):
                raise _bad_body(f"`text` must be a string, got {type(text).__name__}.")
            where = "`text`"
        if not text.strip():
            raise _bad_body(f"{where} is empty: there is nothing to analyze.")
        return text

    async def _fetch(self, url: str) -> str:
        if self._http is None:
            self._http = ClientSession(timeout=ClientTimeout(total=URL_FETCH_TIMEOUT))
        try:
            async with self._http.get(url) as response:
                if response.status >= 400:
                    raise _APIError(
                        400, "REMOTE_CONTENT_ERROR", f"Could not fetch the text at {url}: HTTP {response.status}."
                    )
                if response.content_length is not None and response.content_length > MAX_BODY_BYTES:
                    raise _APIError(400, "REMOTE_CONTENT_ERROR", f"The text at {url} is too large.")
                data = await response.content.read(MAX_BODY_BYTES + 1)
                if len(data) > MAX_BODY_BYTES:
                    raise _APIError(400, "REMOTE_CONTENT_ERROR", f"The text at {url} is too large.")
                charset = response.charset or "utf-8"
        except (ClientError, asyncio.TimeoutError, ValueError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise _APIError(400, "REMOTE_CONTENT_ERROR", f"Could not fetch the text at {url}: {reason}.") from None
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            raise _APIError(400, "REMOTE_CONTENT_ERROR", f"The text at {url} is not valid {charset} text.") from None

    async def _score(self, text: str) -> tuple[int, dict[str, Any] | None]:
        if len(text) > THREAD_SCORING_CHARS:
            return await asyncio.to_thread(_analyze, text, self.config.token_limit)
        return _analyze(text, self.config.token_limit)

    async def _close_http(self, app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def _format_url(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _start_runner(emulator: Emulator) -> tuple[web.AppRunner, int]:
    """Start serving ``emulator`` on its configured host and port; return the runner and real port."""
    runner = web.AppRunner(emulator.make_app(), access_log=None, shutdown_timeout=emulator.config.shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, emulator.config.host, emulator.config.port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def serve(
    config: EmulatorConfig,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """
    Serve the emulator in the running event loop until ``stop`` is set.

    :param config: the emulator's settings.
    :param stop: set it to stop serving; without one, serve until cancelled.
    :param on_ready: called with the base URL once the port is bound.
    """
    runner, port = await _start_runner(Emulator(config))
    try:
        if on_ready is not None:
            on_ready(_format_url(config.host, port))
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()


class EmulatorServer:
    """
    The emulator running in a background thread with its own event loop.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with EmulatorServer(EmulatorConfig(latency=0.05)) as server:
            requests.post(f"{server.url}/v1/read?sentiment=true&language=en", ...)

    :param config: the emulator's settings; keyword arguments override its fields
        (or build it, when no config is given).
    """

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = EmulatorConfig(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self._emulator = Emulator(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def api_key(self) -> str:
        """The key the emulator accepts."""
        return self.config.api_key

    @property
    def port(self) -> int:
        """The bound port (the real one when the config asked for port 0)."""
        if self._port is None:
            raise RuntimeError("The emulator is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765``."""
        return _format_url(self.config.host, self.port)

    def start(self, timeout: float = 30.0) -> EmulatorServer:
        """Bind the port and start serving in a background thread; return ``self``."""
        if self._thread is not None:
            raise RuntimeError("The emulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                runner, self._port = loop.run_until_complete(_start_runner(self._emulator))
            except BaseException as exc:
                failure.append(exc)
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        thread = threading.Thread(target=run, name="dgsentiment-emulator", daemon=True)
        thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"The emulator did not start within {timeout} s")
        if failure:
            thread.join()
            raise failure[0]
        self._loop, self._thread = loop, thread
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (in-flight requests get ``shutdown_timeout`` to finish) and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = self._loop = None
        self._port = None

    def stats(self) -> dict[str, Any]:
        """Return the counters, as ``GET /_emulator/stats`` does."""
        return self._emulator.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters (``in_flight`` keeps counting requests still running)."""
        self._emulator.stats.reset()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"{type(self).__name__}({where})"
