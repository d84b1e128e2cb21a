"""The sync bridge: a private event loop on a thread, so sync callers drive the async engine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections import deque
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_dgsentiment.client.engine import SentimentEngine

#: Seconds ``close()`` waits for a cancelled run or the loop thread to finish.
CLOSE_TIMEOUT = 2.0


class _Failure:
    """An exception raised by the stream itself (the input iterator failed, a bug), not a per-document outcome."""

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


_DONE = object()


class LoopThread:
    """
    A private event loop on a daemon thread, for sync callers of the async engine.

    One loop per hook: the engine, its session and its window live on it for the hook's
    lifetime, across batches.
    """

    def __init__(self, name: str = "deepgram-engine") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the loop and return its result (raise its exception) here."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(
        self,
        make_run: Callable[[AsyncIterable[str], Callable[[Any], None]], Coroutine[Any, Any, None]],
        texts: Iterable[str],
        ahead: int,
    ) -> Iterator[Any]:
        """
        Drive an async run from this (caller's) thread.

        The caller's thread reads ``texts`` (up to ``ahead`` texts ahead of the results
        handed back, so reading a document overlaps with the requests in flight) and
        feeds them to the run on the loop (``make_run(feed, deliver)``, e.g.
        :meth:`~.engine.SentimentEngine.score_into`); the run delivers each result straight
        into a thread-safe queue this thread reads. Closing this generator cancels the run
        and waits (briefly) for it to end.
        """
        feed = _ThreadFeed(self.loop)
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        finished = threading.Event()

        async def pump() -> None:
            try:
                await make_run(feed, results.put)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:
                results.put(_Failure(exc))
            finally:
                results.put(_DONE)
                finished.set()

        future = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        iterator = iter(texts)
        pending = 0
        try:
            exhausted = False
            while True:
                while not exhausted and pending < ahead:
                    try:
                        text = next(iterator)
                    except StopIteration:
                        exhausted = True
                        feed.close()
                        break
                    feed.put(text)
                    pending += 1
                item = results.get()
                if item is _DONE:
                    return
                if type(item) is _Failure:
                    raise item.exception
                pending -= 1
                yield item
        finally:
            if not finished.is_set():
                future.cancel()
                finished.wait(CLOSE_TIMEOUT)

    def close(self, engine: SentimentEngine | None = None) -> None:
        """Close ``engine``'s session on the loop, then stop the loop and its thread."""
        if self.loop.is_closed():
            return
        if threading.current_thread() is self._thread:  # dropped on its own loop: just stop it
            self.loop.stop()
            return
        if self._thread.is_alive():
            try:
                if engine is not None:
                    asyncio.run_coroutine_threadsafe(engine.close(), self.loop).result(CLOSE_TIMEOUT)
                asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result(CLOSE_TIMEOUT)
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CLOSE_TIMEOUT)
        if not self._thread.is_alive():
            self.loop.close()


class _ThreadFeed:
    """An async iterable of texts that another thread fills (``put``, then ``close``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[str] = deque()
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._lock = threading.Lock()

    def put(self, text: str) -> None:
        with self._lock:
            self._items.append(text)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_set_result, waiter)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_set_result, waiter)

    def __aiter__(self) -> _ThreadFeed:
        return self

    async def __anext__(self) -> str:
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    raise StopAsyncIteration
                waiter = self._waiter = self._loop.create_future()
            await waiter


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
