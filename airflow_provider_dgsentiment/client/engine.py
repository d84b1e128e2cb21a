"""The async request engine: one aiohttp session, the adaptive window, retries, chunking, errors.

Every request the provider sends goes through one :class:`SentimentEngine`. The
decisions live here once:

- the window of requests in flight (:class:`~.concurrency.AdaptiveConcurrency`,
  shared by every run of the engine; its knobs are an :class:`~.tuning.EngineTuning`).
  A 429's ``Retry-After`` delays the request retried only, never the whole engine: on a
  limit shared by several workers, pausing a worker for a second per 429 left the
  account idle (measured in 0.2's shared-account benchmark);
- retries (:class:`~.retry.RetryPolicy`: which errors, how long to wait);
- chunking over the token limit and the finer re-split when Deepgram counts more
  tokens than our estimate (``TOKEN_LIMIT_EXCEEDED``);
- the systemic stop: after an error that every other request would repeat (bad key,
  no credit, unsupported language, a redirect, an unreachable endpoint, the token
  budget) nothing more is sent;
- the error mapping (:func:`~.exceptions.make_api_error`) and response validation
  (:meth:`~.results.SentimentResult.from_response`).

The engine is async and bound to the event loop it first runs on: the hook drives it
on a private loop thread for sync callers (:class:`~.loop_bridge.LoopThread`), and the trigger runs
it on the triggerer's loop. Redirects are never followed, and ``timeout`` is a
deadline for the whole response (connect, headers and body).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_dgsentiment.client.account_budget import RENEW_INTERVAL, AccountBudget, holder_name
from airflow_provider_dgsentiment.client.chunking import DEFAULT_CHUNK_TOKENS, chunk_text, count_tokens, merge_results
from airflow_provider_dgsentiment.client.concurrency import AdaptiveConcurrency
from airflow_provider_dgsentiment.client.results import SentimentResult, count_words
from airflow_provider_dgsentiment.client.retry import RetryPolicy
from airflow_provider_dgsentiment.client.transport import (
    TLS_TO_PLAIN_HTTP,
    DeepgramSettings,
    env_proxy,
    masked_url,
    parse_error,
    parse_success,
    plain_http_server,
    read_query,
    redact_text,
)
from airflow_provider_dgsentiment.client.tuning import DEFAULT_TUNING, EngineTuning
from airflow_provider_dgsentiment.exceptions import (
    DeepgramAPIError,
    DeepgramConnectionError,
    DeepgramEndpointUnreachableError,
    DeepgramResponseError,
    DeepgramTimeoutError,
    DeepgramTokenBudgetError,
    DeepgramTokenLimitError,
)

if TYPE_CHECKING:
    import aiohttp

#: Below this part size, a TOKEN_LIMIT_EXCEEDED answer is not retried with smaller parts.
MIN_CHUNK_TOKENS = 1000
#: The finer re-split after TOKEN_LIMIT_EXCEEDED cuts parts this many times smaller.
RESPLIT_FACTOR = 4
#: Connection attempts failing in a row (no answer of any kind in between, over the whole
#: engine) after which the endpoint counts as unreachable and the run stops.
MAX_CONSECUTIVE_CONNECT_FAILURES = 5
#: Texts a run holds (in flight, or answered but not yet handed back), per slot of its bound.
UNDELIVERED_PER_SLOT = 2
log = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_sleep(seconds: float) -> None:
    """Wait before a retry (a module function, so tests can shorten the waits)."""
    await asyncio.sleep(seconds)


@dataclass
class EngineStats:
    """Counters of one engine (read by the hook, the benchmark and tests)."""

    #: Requests sent (every attempt).
    requests: int = 0
    #: Retries made.
    retries: int = 0
    #: 429 answers seen (including ones a retry then got through).
    rate_limited: int = 0
    #: Connection attempts that failed before any answer.
    connect_failures: int = 0


#: Sub-word tokenizers bill about one token per this many characters of long words.
CHARS_PER_BILLED_TOKEN = 4


def billing_estimate(text: str) -> int:
    """
    Our guess of the tokens the API bills for ``text``, before any answer corrects it.

    The larger of :func:`~.chunking.count_tokens` (one per word and punctuation mark: right
    for plain prose) and one token per :data:`CHARS_PER_BILLED_TOKEN` characters that are
    not whitespace (closer for compounds, URLs, hashes and product codes).
    """
    characters = sum(map(len, text.split()))
    return max(count_tokens(text), -(-characters // CHARS_PER_BILLED_TOKEN))


class _Run:
    """
    The state of one ``stream()`` call: its query, bound, stop, and its token budget.

    The budget (``max_input_tokens``) is decided here, once. A request is admitted only
    when the tokens spent (``used``: what answers reported, plus the caller's earlier
    tries) and the tokens reserved for requests in flight leave room for its estimate.
    The estimate (:func:`billing_estimate`) is the larger of one token per word and mark
    and one per :data:`CHARS_PER_BILLED_TOKEN` characters (sub-word tokenizers bill long
    words, URLs and hashes by their length), times the ratio of tokens billed to tokens
    estimated over the answers so far: the ratio learns the API's count from the first
    answer. Until that first answer only one request is in flight, and a request that
    does not fit beside those in flight waits for them to answer (the run stops only when
    it would not fit even then). So the cap can only be passed by requests already in
    flight whose text bills more per estimated token than the run so far: the overshoot
    is at most what those requests bill beyond their reservations
    (``benchmarks/token_budget.py`` measures it).
    """

    __slots__ = (
        "url",
        "bound",
        "cap",
        "used",
        "reserved",
        "estimated_answered",
        "billed_answered",
        "stopped",
        "stop_waiter",
        "_budget_waiters",
        "_loop",
    )

    def __init__(self, url: Any, bound: int, cap: int | None, used: int, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.bound = bound
        self.cap = cap
        #: Tokens spent: the caller's ``used_input_tokens`` plus ``input_tokens`` of answers so far.
        self.used = used
        #: Tokens reserved for requests in flight (counted against the cap until they answer).
        self.reserved = 0
        #: Our estimate, and what the API billed, summed over the answers of this run.
        self.estimated_answered = 0
        self.billed_answered = 0
        #: The systemic error that stopped the run, once there is one.
        self.stopped: DeepgramAPIError | None = None
        #: Done when the run stops; sleeping retries wait on it too.
        self.stop_waiter: asyncio.Future[None] = loop.create_future()
        self._budget_waiters: list[asyncio.Future[None]] = []
        self._loop = loop

    def stop(self, error: DeepgramAPIError) -> None:
        if self.stopped is None:
            self.stopped = error
            if not self.stop_waiter.done():
                self.stop_waiter.set_result(None)
            self._wake_budget_waiters()

    async def admit(self, estimate: int) -> int:
        """
        Wait until a request of ``estimate`` estimated tokens fits the budget; return the tokens reserved.

        :raises DeepgramTokenBudgetError: (and stops the run) when it would pass the cap even with
            nothing in flight.
        """
        assert self.cap is not None
        while True:
            if self.stopped is not None:
                raise _NotSent
            needed = self.corrected(estimate)
            if self.used + needed > self.cap:
                error = DeepgramTokenBudgetError.for_budget(self.cap, self.used, needed)
                self.stop(error)
                raise error
            if not self.reserved or (self.calibrated and self.used + self.reserved + needed <= self.cap):
                self.reserved += needed
                return needed
            waiter = self._loop.create_future()
            self._budget_waiters.append(waiter)
            await waiter

    def corrected(self, estimate: int) -> int:
        """``estimate`` times tokens billed per token estimated so far, rounded up (at least 1 for a text)."""
        if not self.calibrated or not estimate:
            return estimate
        return max(1, -(-estimate * self.billed_answered // self.estimated_answered))

    @property
    def calibrated(self) -> bool:
        """Whether an answer has reported its tokens (before that, one request at a time)."""
        return self.estimated_answered > 0

    def settle(self, reservation: int, estimate: int, result: SentimentResult | None) -> None:
        """A request answered (``result``) or failed (None): free its reservation, count what was billed."""
        self.reserved -= reservation
        if result is not None:
            self.used += result.input_tokens
            if result.input_tokens:
                self.estimated_answered += estimate
                self.billed_answered += result.input_tokens
        self._wake_budget_waiters()

    def _wake_budget_waiters(self) -> None:
        waiters, self._budget_waiters = self._budget_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


_DONE = object()


class _NotSent(Exception):
    """The run stopped before any part of this text was sent: it yields nothing."""


class _Source:
    """Hands out ``(index, text)`` from a plain or async iterable, one caller at a time."""

    def __init__(self, texts: Iterable[str] | AsyncIterable[str]) -> None:
        self.index = 0
        self.exhausted = False
        self._aiter: AsyncIterator[str] | None = None
        self._iter: Iterator[str] | None = None
        self._lock: asyncio.Lock | None = None
        if isinstance(texts, AsyncIterable):
            self._aiter = texts.__aiter__()
            self._lock = asyncio.Lock()
        else:
            self._iter = iter(texts)

    async def next(self) -> tuple[int, str] | None:
        if self.exhausted:
            return None
        if self._iter is not None:
            try:
                text = next(self._iter)
            except StopIteration:
                self.exhausted = True
                return None
        else:
            assert self._lock is not None and self._aiter is not None
            async with self._lock:  # an async generator must not be advanced twice at once
                if self.exhausted:
                    return None
                try:
                    text = await self._aiter.__anext__()
                except StopAsyncIteration:
                    self.exhausted = True
                    return None
        index = self.index
        self.index = index + 1
        return index, text


class SentimentEngine:
    """
    Send sentiment requests: one session, one adaptive window, retries, chunking, typed errors.

    Bound to the event loop its session was opened on (a closed, idle engine moves to
    the next loop that uses it). :meth:`stream` scores many texts; the
    single-request methods (:meth:`analyze`, :meth:`analyze_url`, :meth:`get_projects`)
    share its window, retries and errors.

    :param settings: base URL, key, timeout, retries and the default concurrency.
    :param max_chunk_tokens: texts with more estimated tokens are split before sending.
    :param logger: where retries and chunking are logged (the hook's ``log``).
    :param tuning: the adaptive window's knobs (:class:`~.tuning.EngineTuning`).
    :param budget: the account's shared budget of requests in flight (:mod:`.account_budget`):
        while a run goes, the engine holds a lease and sends no more than its share; the
        window then starts at its maximum (no slow start: the budget keeps the engines on the
        account within its limit). None: the adaptive window alone.
    """

    def __init__(
        self,
        settings: DeepgramSettings,
        *,
        max_chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        logger: logging.Logger | Any | None = None,
        tuning: EngineTuning = DEFAULT_TUNING,
        budget: AccountBudget | None = None,
    ) -> None:
        self.settings = settings
        self.policy = RetryPolicy(max_retries=settings.max_retries)
        self.max_chunk_tokens = max_chunk_tokens
        self.log = logger if logger is not None else log
        self.budget = budget
        if budget is not None:
            tuning = replace(tuning, slow_start=False)
        self.window = AdaptiveConcurrency(settings.max_concurrency, tuning=tuning)
        self._holder = holder_name()
        self._runs_leasing = 0
        self._lease_holder: asyncio.Task[None] | None = None
        self.stats = EngineStats()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._consecutive_connect_failures = 0
        self._projects_url: Any = None
        self._proxy: Any = None
        self._proxy_auth: Any = None

    # ------------------------------------------------------------------ session

    def _ensure_session(self) -> aiohttp.ClientSession:
        """Return the session, creating it on the running loop the first time."""
        session = self._session
        if session is not None and not session.closed:
            return session
        import aiohttp
        import yarl

        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop and (self._in_flight or self._slot_waiters):
            raise RuntimeError("a SentimentEngine is in use on another event loop")
        self._loop = loop
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30.0)
        self._session = session = aiohttp.ClientSession(
            connector=connector,
            headers=self.settings.headers,
            # One deadline for the whole response: connect, headers and body.
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            # trust_env would look up netrc and the proxy variables in a thread on every
            # request: the proxy (HTTPS_PROXY / NO_PROXY, as requests honours them) is looked
            # up once here instead, and netrc never applies (the key is in a header).
            trust_env=False,
            skip_auto_headers=("Accept-Encoding",),
        )
        self._proxy, self._proxy_auth = env_proxy(self.settings.base_url)
        self._projects_url = yarl.URL(self.settings.projects_url)
        return session

    async def close(self) -> None:
        """Close the session (its connections); the engine can open a new one later."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # ------------------------------------------------------------------ the window

    async def _acquire(self) -> None:
        """Wait for a slot of the window."""
        while True:
            if self._in_flight < self.window.limit:
                self._in_flight += 1
                return
            waiter = self._loop.create_future()  # type: ignore[union-attr]
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the slot it was given on
                raise

    def _release(self) -> None:
        self._in_flight -= 1
        if self._slot_waiters:
            self._wake()

    def _wake(self) -> None:
        free = self.window.limit - self._in_flight
        waiters = self._slot_waiters
        while free > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    # ------------------------------------------------------------------ the account budget

    async def _join_budget(self) -> None:
        """Lease a share of the account before a run sends anything; keep renewing it while runs go."""
        self._runs_leasing += 1
        if self._lease_holder is None and self.budget is not None and await self._renew_lease():
            self._lease_holder = self._loop.create_task(self._hold_lease())  # type: ignore[union-attr]

    async def _leave_budget(self) -> None:
        """After the last run: stop renewing and give the slots back."""
        self._runs_leasing -= 1
        holder, self._lease_holder = self._lease_holder, None
        if self._runs_leasing or holder is None:
            self._lease_holder = holder
            return
        holder.cancel()
        self.window.set_share(None)
        if self.budget is None:  # it failed during the run
            return
        try:
            await self._loop.run_in_executor(None, self.budget.release, self._holder)  # type: ignore[union-attr]
        except Exception as exc:  # the lease expires by itself
            self.log.warning("Could not give back the account budget's lease: %s", exc)

    async def _hold_lease(self) -> None:
        while await self._renew_lease():
            await asyncio.sleep(RENEW_INTERVAL)

    async def _renew_lease(self) -> bool:
        """Renew the lease and apply the share; on an error of the budget, fall back to the window alone."""
        budget, loop = self.budget, self._loop
        assert budget is not None and loop is not None
        try:
            # Until the new share applies, requests may still start up to the current limit:
            # the lease holds at least that many, so no other holder counts those slots free.
            in_use = max(self._in_flight, self.window.limit)
            if budget.quick:
                share = budget.lease(self._holder, self.window.max_concurrency, in_use)
            else:
                share = await loop.run_in_executor(
                    None, budget.lease, self._holder, self.window.max_concurrency, in_use
                )
        except Exception as exc:
            self.log.warning("The account budget failed (%s); the adaptive window alone limits requests now", exc)
            self.budget = None
            self.window.set_share(None)
            self._wake()
            return False
        self.window.set_share(share)
        if self._slot_waiters:
            self._wake()
        return True

    # ------------------------------------------------------------------ one attempt

    async def _send(self, method: str, url: Any, data: bytes | None) -> tuple[int, bytes, Any]:
        """Send one request; return ``(status, body, headers)`` or raise a connection/timeout error."""
        import aiohttp

        session = self._session or self._ensure_session()
        self.stats.requests += 1
        try:
            async with session.request(
                method, url, data=data, allow_redirects=False, proxy=self._proxy, proxy_auth=self._proxy_auth
            ) as response:
                body = await response.read()
                status = response.status
                headers = response.headers
        except TimeoutError:
            raise DeepgramTimeoutError(0, "CLIENT_TIMEOUT", f"no response within {self.settings.timeout}s") from None
        except aiohttp.ClientConnectorSSLError as exc:
            if TLS_TO_PLAIN_HTTP in str(exc):
                raise plain_http_server(self.settings.base_url) from None
            raise self._connect_failed(exc) from None
        except aiohttp.ClientConnectorError as exc:
            raise self._connect_failed(exc) from None
        except aiohttp.ClientError as exc:
            self._consecutive_connect_failures = 0
            raise DeepgramConnectionError(0, "CONNECTION_ERROR", redact_text(f"{type(exc).__name__}: {exc}")) from None
        self._consecutive_connect_failures = 0
        return status, body, headers

    def _connect_failed(self, exc: Exception) -> DeepgramConnectionError:
        self.stats.connect_failures += 1
        self._consecutive_connect_failures += 1
        failures = self._consecutive_connect_failures
        reason = redact_text(f"{type(exc).__name__}: {exc}")
        if failures >= MAX_CONSECUTIVE_CONNECT_FAILURES:
            return DeepgramEndpointUnreachableError(
                0,
                "ENDPOINT_UNREACHABLE",
                f"{masked_url(self.settings.base_url)} is unreachable: {failures} connection attempts in a row "
                f"failed with no answer in between (last: {reason})",
            )
        return DeepgramConnectionError(0, "CONNECTION_ERROR", reason)

    async def _attempt_read(self, url: Any, data: bytes) -> SentimentResult:
        await self._acquire()
        loop = self._loop
        sent_at = loop.time()  # type: ignore[union-attr]
        try:
            status, body, headers = await self._send("POST", url, data)
        finally:
            self._release()
        if status < 300:
            result = parse_success(status, body, headers.get("dg-request-id"))
            self.window.on_success()
            return result
        if status == 429:
            self.stats.rate_limited += 1
            self.window.on_rate_limited(sent_at, loop.time())  # type: ignore[union-attr]
        raise parse_error(status, body, headers)

    # ------------------------------------------------------------------ retries

    async def _with_retries(self, attempt_once: Callable[[], Coroutine[Any, Any, T]], run: _Run | None) -> T:
        """Run ``attempt_once`` until it succeeds, a failure is not retryable, or the retries are spent."""
        policy = self.policy
        attempt = 0
        while True:
            try:
                return await attempt_once()
            except DeepgramAPIError as error:
                if run is not None and (error.systemic or run.stopped is not None):
                    if error.systemic:
                        run.stop(error)
                    raise
                if not policy.should_retry(attempt, retryable=error.retryable):
                    raise
                delay = policy.delay(attempt, error.retry_after)
                attempt += 1
                self.stats.retries += 1
                self.log.warning("%s; retry %d/%d in %.2fs", error, attempt, policy.max_retries, delay)
                await self._wait_to_retry(delay, run=run)
                if run is not None and run.stopped is not None:
                    raise error from None

    async def _wait_to_retry(self, delay: float, *, run: _Run | None) -> None:
        """Sleep ``delay`` before a retry; a run's stop ends the wait early."""
        if run is None:
            await retry_sleep(delay)
            return
        sleeper = asyncio.ensure_future(retry_sleep(delay))
        try:
            await asyncio.wait((sleeper, run.stop_waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sleeper.done():
                sleeper.cancel()

    # ------------------------------------------------------------------ one document

    async def _score(self, text: str, run: _Run) -> SentimentResult:
        """Score one text, in parts when it is over the token limit, with the finer re-split fallback."""
        if run.stopped is not None:
            raise _NotSent
        max_tokens = self.max_chunk_tokens
        parts = chunk_text(text, max_tokens)
        if len(parts) > 1:
            self.log.info(
                "Text of %d characters is over the token limit; scoring it in %d parts", len(text), len(parts)
            )
        try:
            results = await self._score_parts(parts, run, sent_before=False)
        except DeepgramTokenLimitError:
            if max_tokens <= MIN_CHUNK_TOKENS:
                raise
            # Deepgram counted more tokens than our estimate: split finer and try once more.
            parts = chunk_text(text, max_tokens // RESPLIT_FACTOR)
            self.log.info("Deepgram counted more tokens than estimated; scoring the text in %d parts", len(parts))
            results = await self._score_parts(parts, run, sent_before=True)
        return merge_results(results, parts)

    async def _score_parts(self, parts: list[str], run: _Run, *, sent_before: bool) -> list[SentimentResult]:
        """Score the parts of one text in order; a text the run stopped before sending yields nothing."""
        results: list[SentimentResult] = []
        for part in parts:
            try:
                results.append(await self._score_part(part, run))
            except _NotSent:
                if results or sent_before:  # some of the text was sent: it fails with the stop's error
                    raise run.stopped from None  # type: ignore[misc]
                raise
        return results

    async def _score_part(self, text: str, run: _Run) -> SentimentResult:
        """Send one part (within the run's token budget) and check its answer covers the part's words."""
        if run.stopped is not None:
            raise _NotSent
        data = json.dumps({"text": text}).encode()
        result: SentimentResult
        if run.cap is None:
            result = await self._with_retries(lambda: self._attempt_read(run.url, data), run)
        else:
            estimate = billing_estimate(text)
            reservation = await run.admit(estimate)
            answered: SentimentResult | None = None
            try:
                result = answered = await self._with_retries(lambda: self._attempt_read(run.url, data), run)
            finally:
                run.settle(reservation, estimate, answered)
        result.check_covers(count_words(text))
        return result

    # ------------------------------------------------------------------ runs

    def _new_run(
        self, language: str, max_concurrency: int | None, tags: Iterable[str] | None, cap: int | None, used: int
    ) -> _Run:
        import yarl

        self._ensure_session()
        bound = max_concurrency or self.settings.max_concurrency
        if bound < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {bound}")
        if cap is not None and cap < 0:
            raise ValueError(f"max_input_tokens must not be negative, got {cap}")
        self.window.raise_maximum(bound)
        url = yarl.URL(f"{self.settings.read_url}?{read_query(language, tags)}", encoded=True)
        return _Run(url, bound, cap, int(used or 0), self._loop)  # type: ignore[arg-type]

    async def score_into(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        deliver: Callable[[tuple[int, SentimentResult | DeepgramAPIError]], Any],
        *,
        language: str = "en",
        max_concurrency: int | None = None,
        tags: Iterable[str] | None = None,
        max_input_tokens: int | None = None,
        used_input_tokens: int = 0,
        undelivered: asyncio.Semaphore | None = None,
    ) -> None:
        """
        Score many texts, calling ``deliver((index, result_or_error))`` on the loop as each completes.

        The one run loop under :meth:`stream` and the sync bridge (which delivers straight
        into its thread-safe queue: no hop through another task per document). ``texts`` is
        consumed lazily, one text per free worker; with ``undelivered``, a worker takes a
        text only after acquiring it (the caller releases it per result handed on). After a
        systemic error nothing more is sent and the call returns once the requests in flight
        answer. An exception that is not a per-document outcome (the input iterator failed,
        a bug) cancels the requests in flight and is raised here.
        """
        run = self._new_run(language, max_concurrency, tags, max_input_tokens, used_input_tokens)
        source = _Source(texts)
        if self.budget is not None:
            await self._join_budget()
            try:
                await self._run_workers(run, source, deliver, undelivered)
            finally:
                await self._leave_budget()
        else:
            await self._run_workers(run, source, deliver, undelivered)

    async def _run_workers(
        self,
        run: _Run,
        source: _Source,
        deliver: Callable[[tuple[int, SentimentResult | DeepgramAPIError]], Any],
        undelivered: asyncio.Semaphore | None,
    ) -> None:
        score = self._score

        async def work() -> None:
            try:
                while run.stopped is None:
                    if undelivered is not None:
                        await undelivered.acquire()
                    item = await source.next()
                    if item is None or run.stopped is not None:
                        return
                    index, text = item
                    try:
                        outcome: SentimentResult | DeepgramAPIError = await score(text, run)
                    except _NotSent:
                        return
                    except DeepgramAPIError as error:
                        if error.systemic:
                            run.stop(error)
                        outcome = error
                    deliver((index, outcome))
            except asyncio.CancelledError:
                raise
            except BaseException:
                run.stop(DeepgramAPIError(0, "STOPPED", "the run stopped on an unexpected error"))
                raise

        loop = self._loop
        workers = [loop.create_task(work()) for _ in range(run.bound)]  # type: ignore[union-attr]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for worker in done:
                failure = worker.exception()
                if failure is not None:
                    raise failure
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def stream(
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
        Score many texts, yielding ``(index, result_or_error)`` as each completes.

        ``texts`` (plain or async iterable) is consumed lazily, one text per free worker,
        so only the texts in flight are held. After a systemic error nothing more is sent
        and the stream ends once the requests in flight answer. Closing the stream
        (``aclose()``) cancels the requests in flight at once.
        """
        self._ensure_session()
        bound = max_concurrency or self.settings.max_concurrency
        results: asyncio.Queue[Any] = asyncio.Queue()
        # Texts taken but not yet handed back (in flight or finished): at most this many.
        undelivered = asyncio.Semaphore(UNDELIVERED_PER_SLOT * max(bound, 1))
        running = self._loop.create_task(  # type: ignore[union-attr]
            self.score_into(
                texts,
                results.put_nowait,
                language=language,
                max_concurrency=max_concurrency,
                tags=tags,
                max_input_tokens=max_input_tokens,
                used_input_tokens=used_input_tokens,
                undelivered=undelivered,
            )
        )
        running.add_done_callback(lambda _: results.put_nowait(_DONE))
        try:
            while True:
                item = await results.get()
                if item is _DONE:
                    running.result()  # raises what ended the run, if anything did
                    return
                yield item
                undelivered.release()
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    async def analyze(self, text: str, language: str = "en", tags: Iterable[str] | None = None) -> SentimentResult:
        """Score one text (in parts when over the token limit); raise its typed error on failure."""
        run = self._new_run(language, 1, tags, None, 0)
        return await self._score(text, run)

    async def analyze_url(self, url: str, language: str = "en", tags: Iterable[str] | None = None) -> SentimentResult:
        """Score the text Deepgram fetches from ``url``."""
        run = self._new_run(language, 1, tags, None, 0)
        data = json.dumps({"url": url}).encode()
        return await self._with_retries(lambda: self._attempt_read(run.url, data), run)

    async def get_projects(self) -> list[Any]:
        """``GET /v1/projects`` once, no retries: the projects the key sees (free, authenticated)."""
        self._ensure_session()
        status, body, headers = await self._send("GET", self._projects_url, None)
        if status >= 300:
            raise parse_error(status, body, headers)
        try:
            data = json.loads(body)
        except ValueError:
            raise DeepgramResponseError(
                "GET /v1/projects did not answer with JSON: is the Base URL right?",
                status=status,
                request_id=headers.get("dg-request-id"),
            ) from None
        projects = data.get("projects") if isinstance(data, dict) else None
        return projects if isinstance(projects, list) else []
