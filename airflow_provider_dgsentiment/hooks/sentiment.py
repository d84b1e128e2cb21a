"""DeepgramSentimentHook: Deepgram's ``POST /v1/read?sentiment=true`` over the one async request engine.

The hook reads the ``deepgram`` connection and hands every request to a
:class:`~airflow_provider_dgsentiment.client.engine.SentimentEngine`: sync callers
(``analyze``, ``analyze_many``, ``test_connection``) drive it on a private event-loop
thread owned by the hook (one loop, one session, one window for the hook's life);
``aanalyze_many`` runs it on the caller's loop (the triggerer). Windows, retries,
chunking and errors live in the engine, once.
"""

from __future__ import annotations

import ipaddress
import os
import weakref
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Coroutine, Iterable, Iterator
from contextlib import aclosing
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook, mask_secret

from airflow_provider_dgsentiment.client.account_budget import AccountBudget, HostAccountBudget
from airflow_provider_dgsentiment.client.chunking import DEFAULT_CHUNK_TOKENS
from airflow_provider_dgsentiment.client.engine import SentimentEngine
from airflow_provider_dgsentiment.client.loop_bridge import LoopThread
from airflow_provider_dgsentiment.client.transport import (
    DEFAULT_BASE_URL,
    DeepgramSettings,
)
from airflow_provider_dgsentiment.client.tuning import DEFAULT_TUNING, EngineTuning
from airflow_provider_dgsentiment.exceptions import DeepgramAPIError, DeepgramConfigurationError
from airflow_provider_dgsentiment.get_provider_info import CONNECTION_NUMBERS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection

    from airflow_provider_dgsentiment.client.results import SentimentResult

API_KEY_ENV_VAR = "DEEPGRAM_API_KEY"
#: Texts the sync driver reads ahead of the results it hands back, per slot of the window.
READ_AHEAD_PER_SLOT = 2


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

    :raises DeepgramConfigurationError: no key anywhere, a bad extra, a base URL with a path,
        query, fragment or credentials, or plain http to a non-loopback host without
        ``allow_insecure_http``.
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
    check_base_url(base_url, allow_insecure)

    given = {"timeout": timeout, "max_retries": max_retries, "max_concurrency": max_concurrency}
    values = {
        name: _number(given[name] if given[name] is not None else extras.get(name), name) for name in CONNECTION_NUMBERS
    }
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


def check_base_url(base_url: str, allow_insecure: bool) -> None:
    """
    Refuse a base URL that is not just ``scheme://host[:port]``, or plain http to a remote host.

    A path, query, fragment or credentials (``https://KEY@host``, ``...?key=...``) are
    refused; the message names which part is wrong and shows only ``scheme://host``,
    never the secret parts.

    :raises DeepgramConfigurationError: what is wrong with the URL.
    """
    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        raise DeepgramConfigurationError(
            "Deepgram base URL is not a valid URL; it must be http(s)://host[:port]"
        ) from None
    shown = f"{parts.scheme}://{hostname or ''}" + (f":{port}" if port else "")
    if parts.scheme not in ("http", "https") or not hostname:
        raise DeepgramConfigurationError(f"Deepgram base URL must be http(s)://host[:port], got {shown}")
    wrong = [
        name
        for name, present in (
            ("credentials (user:password@)", parts.username is not None or parts.password is not None),
            ("a path", parts.path not in ("", "/")),
            ("a query", bool(parts.query)),
            ("a fragment", bool(parts.fragment)),
        )
        if present
    ]
    if wrong:
        raise DeepgramConfigurationError(
            f"Deepgram base URL {shown} must be scheme://host[:port] only, but it has {' and '.join(wrong)} "
            "(not shown here); set only the host, the key goes in the API Key field"
        )
    if parts.scheme == "http" and not is_loopback_host(hostname) and not allow_insecure:
        raise DeepgramConfigurationError(
            f"Refusing plain http to {hostname}: the API key would travel unencrypted. "
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


def _number(value: Any, name: str) -> Any:
    """Check one numeric extra (or hook argument) against :data:`CONNECTION_NUMBERS`."""
    kind, minimum, default = CONNECTION_NUMBERS[name]
    if value is None or value == "":
        return kind(default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise DeepgramConfigurationError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise DeepgramConfigurationError(f"{name} must be at least {minimum}, got {value!r}")
    return number


class DeepgramSentimentHook(BaseHook):
    """
    Score text with Deepgram's Sentiment Analysis.

    Every request goes through one async engine
    (:class:`~airflow_provider_dgsentiment.client.engine.SentimentEngine`): one aiohttp session,
    the adaptive window (AIMD), retries with exponential backoff and jitter (honouring
    ``Retry-After``) on 429, 408, 5xx and connection errors, typed
    :class:`~airflow_provider_dgsentiment.exceptions.DeepgramAPIError` on failure, texts
    over the token limit scored in parts and merged, redirects never followed.

    :param deepgram_conn_id: the ``deepgram`` connection; its password is the API key.
    :param timeout: seconds for one whole response; overrides the connection's ``timeout`` extra.
    :param max_retries: retries per request; overrides the ``max_retries`` extra.
    :param max_concurrency: requests in flight in ``analyze_many``; overrides the extra.
    :param max_chunk_tokens: texts with more estimated tokens are split before sending.
    :param account_budget: how engines sharing the account split its limit (the connection's
        ``max_concurrency``): ``"host"`` (default) leases slots from a budget every process of
        this host on the same key shares
        (:class:`~airflow_provider_dgsentiment.client.account_budget.HostAccountBudget`),
        ``"off"`` leaves it to each engine's adaptive window, or an
        :class:`~airflow_provider_dgsentiment.client.account_budget.AccountBudget` kept
        elsewhere (e.g. the SQL database every host reaches).
    :param tuning: the adaptive window's knobs
        (:class:`~airflow_provider_dgsentiment.client.tuning.EngineTuning`; the defaults suit a
        shared account).
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
        tuning: EngineTuning = DEFAULT_TUNING,
        account_budget: AccountBudget | str = "host",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deepgram_conn_id = deepgram_conn_id
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.max_chunk_tokens = max_chunk_tokens
        self.tuning = tuning
        if isinstance(account_budget, str) and account_budget not in ("host", "off"):
            raise ValueError(f"account_budget must be 'host', 'off' or an AccountBudget, got {account_budget!r}")
        self.account_budget = account_budget
        self._loop_thread: LoopThread | None = None
        self._sync_engine: SentimentEngine | None = None
        self._async_engine: SentimentEngine | None = None
        self._async_streams = 0
        self._engines_used: list[SentimentEngine] = []
        self._finalizer: weakref.finalize | None = None

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

    # ------------------------------------------------------------------ settings

    @cached_property
    def settings(self) -> DeepgramSettings:
        """The resolved connection settings (loaded once)."""
        try:
            conn: Connection | None = self.get_connection(self.deepgram_conn_id)
        except AirflowNotFoundException:
            self._check_env_only_fallback()
            conn = None
        return self._settings_for(conn)

    async def aget_settings(self) -> DeepgramSettings:
        """Resolve the connection settings without blocking the event loop (for triggers)."""
        if "settings" in self.__dict__:
            return self.__dict__["settings"]
        from airflow.providers.common.compat.connection import get_async_connection
        from asgiref.sync import sync_to_async

        try:
            conn: Connection | None = await get_async_connection(self.deepgram_conn_id, self)
        except AirflowNotFoundException:
            self._check_env_only_fallback()
            conn = None
        # Reading extras and registering the key with the secrets masker may call the
        # supervisor synchronously: do it in a worker thread, off the event loop.
        self.__dict__["settings"] = settings = await sync_to_async(self._settings_for)(conn)
        return settings

    def _check_env_only_fallback(self) -> None:
        """Without a ``deepgram_default`` connection, use ``DEEPGRAM_API_KEY`` and the default host."""
        if self.deepgram_conn_id != self.default_conn_name or not os.environ.get(API_KEY_ENV_VAR):
            raise AirflowNotFoundException(
                f"The conn_id `{self.deepgram_conn_id}` isn't defined (and {API_KEY_ENV_VAR} is not set)"
            )

    def _settings_for(self, conn: Connection | None) -> DeepgramSettings:
        return settings_from_connection(
            conn, timeout=self.timeout, max_retries=self.max_retries, max_concurrency=self.max_concurrency
        )

    # ------------------------------------------------------------------ engines

    def _budget_for(self, settings: DeepgramSettings) -> AccountBudget | None:
        """The account budget the hook's engines lease from (see ``account_budget``)."""
        if self.account_budget == "off":
            return None
        if self.account_budget == "host":
            return HostAccountBudget(settings.max_concurrency, f"{settings.base_url}\0{settings.api_key}")
        return self.account_budget  # type: ignore[return-value]

    def _new_engine(self, settings: DeepgramSettings) -> SentimentEngine:
        engine = SentimentEngine(
            settings,
            max_chunk_tokens=self.max_chunk_tokens,
            logger=self.log,
            tuning=self.tuning,
            budget=self._budget_for(settings),
        )
        self._engines_used.append(engine)
        return engine

    def _engine_on_thread(self) -> tuple[LoopThread, SentimentEngine]:
        """The engine of the sync methods, on the hook's private loop thread (started on first use)."""
        if self._sync_engine is None or self._loop_thread is None:
            engine = self._new_engine(self.settings)
            self._loop_thread = loop_thread = LoopThread()
            self._sync_engine = engine
            # A hook dropped without close() still stops its thread and closes its session.
            self._finalizer = weakref.finalize(self, loop_thread.close, engine)
        return self._loop_thread, self._sync_engine

    def get_conn(self) -> SentimentEngine:
        """Return the engine the sync methods use (Airflow's hook protocol)."""
        return self._engine_on_thread()[1]

    @property
    def engines(self) -> list[SentimentEngine]:
        """Every engine this hook has used (their counters outlive :meth:`close`)."""
        return list(self._engines_used)

    @property
    def retry_count(self) -> int:
        """Retries this hook made."""
        return sum(engine.stats.retries for engine in self.engines)

    @property
    def rate_limited_count(self) -> int:
        """429 answers this hook saw (including ones that a retry then got through)."""
        return sum(engine.stats.rate_limited for engine in self.engines)

    @property
    def request_count(self) -> int:
        """Requests this hook sent (every attempt)."""
        return sum(engine.stats.requests for engine in self.engines)

    def close(self) -> None:
        """Close the sync engine's session and stop the hook's loop thread, if they were started."""
        self._loop_thread = self._sync_engine = None
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()

    async def aclose(self) -> None:
        """Close the session of the engine ``aanalyze_many`` uses (on the running loop)."""
        engine = self._async_engine
        if engine is not None:
            await engine.close()

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
        loop_thread, engine = self._engine_on_thread()
        return loop_thread.run(engine.analyze(text, language))

    def analyze_url(self, url: str, language: str = "en") -> SentimentResult:
        """
        Score the text Deepgram fetches from ``url`` (a ``{"url": ...}`` request body).

        :param url: a public http(s) URL of a text file.
        :param language: the language code.
        """
        loop_thread, engine = self._engine_on_thread()
        return loop_thread.run(engine.analyze_url(url, language))

    def analyze_many(
        self,
        texts: Iterable[str],
        *,
        language: str = "en",
        max_concurrency: int | None = None,
        tags: Iterable[str] | None = None,
        max_input_tokens: int | None = None,
        used_input_tokens: int = 0,
    ) -> Iterator[tuple[int, SentimentResult | DeepgramAPIError]]:
        """
        Score many texts concurrently, yielding ``(index, result_or_error)`` as each completes.

        At most ``max_concurrency`` requests are in flight, fewer after a 429 (the hook's
        window shrinks, then grows back). ``texts`` is read lazily in the calling thread,
        a few texts ahead of the results, so only those are held in memory. A failed text
        yields its :class:`DeepgramAPIError`. After a systemic error (bad key, no credit,
        unsupported language, unreachable endpoint, token budget) nothing more is sent:
        the generator ends once the requests in flight complete. Closing the generator
        early cancels the requests in flight.

        :param texts: the texts, e.g. a generator reading documents one by one.
        :param language: the language code.
        :param max_concurrency: the upper bound of requests in flight; default from the connection.
        :param tags: Deepgram ``tag`` query parameters sent with every request (usage by pipeline).
        :param max_input_tokens: stop before a request would take the run's input tokens past this.
        :param used_input_tokens: input tokens already spent by this run (e.g. before a task retry).
        """
        loop_thread, engine = self._engine_on_thread()
        bound = max_concurrency or engine.settings.max_concurrency

        def make_run(feed: AsyncIterable[str], deliver: Callable[[Any], None]) -> Coroutine[Any, Any, None]:
            return engine.score_into(
                feed,
                deliver,
                language=language,
                max_concurrency=max_concurrency,
                tags=tags,
                max_input_tokens=max_input_tokens,
                used_input_tokens=used_input_tokens,
            )

        yield from loop_thread.iterate(make_run, texts, ahead=READ_AHEAD_PER_SLOT * bound)

    async def aanalyze_many(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        language: str = "en",
        max_concurrency: int | None = None,
        tags: Iterable[str] | None = None,
        max_input_tokens: int | None = None,
        used_input_tokens: int = 0,
    ) -> AsyncGenerator[tuple[int, SentimentResult | DeepgramAPIError], None]:
        """
        Async :meth:`analyze_many` on the running loop, for the triggerer: same arguments and yields.

        ``texts`` may be a plain or an async iterable; it is consumed lazily. The engine
        (session, window) is the hook's for this loop; its session closes when the last
        ``aanalyze_many`` of the hook ends (or at :meth:`aclose`).
        """
        settings = await self.aget_settings()
        if self._async_engine is None:
            self._async_engine = self._new_engine(settings)
        engine = self._async_engine
        self._async_streams += 1
        try:
            stream = engine.stream(
                texts,
                language=language,
                max_concurrency=max_concurrency,
                tags=tags,
                max_input_tokens=max_input_tokens,
                used_input_tokens=used_input_tokens,
            )
            async with aclosing(stream):
                async for item in stream:
                    yield item
        finally:
            self._async_streams -= 1
            if not self._async_streams:
                await engine.close()

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the key with ``GET /v1/projects`` (free, authenticated); never raises.

        :return: ``(True, message)`` when the key works, else ``(False, reason)``.
        """
        try:
            loop_thread, engine = self._engine_on_thread()
            projects = loop_thread.run(engine.get_projects())
        except (DeepgramConfigurationError, AirflowNotFoundException) as exc:
            return False, str(exc)
        except DeepgramAPIError as exc:
            if exc.status == 0:
                return False, f"Could not reach Deepgram: {exc.err_msg}"
            return False, str(exc)
        except Exception as exc:
            return False, f"Could not check the connection: {type(exc).__name__}"
        return True, f"Connection to Deepgram works: the key sees {len(projects)} project(s)."
