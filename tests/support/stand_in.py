"""A scripted loopback stand-in for Deepgram: answers what each test tells it, records what it got.

Tests that used ``requests_mock`` for the hook's HTTP use this instead (the engine speaks
aiohttp): ``StandIn().answer(Answer(...), ...)`` then point the connection at ``.url``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    @property
    def qs(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.query:
            out.setdefault(name, []).append(value)
        return out

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    """
    What the stand-in answers to one request.

    :param status: HTTP status.
    :param json: a body to send as JSON (or ``text`` / ``raw``).
    :param headers: extra response headers.
    :param drop: close the connection without an answer.
    :param delay: seconds before answering.
    :param drip: send the body one byte every ``drip`` seconds (headers first).
    """

    status: int = 200
    json: Any = None
    text: str | None = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0
    drip: float | None = None

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.text is not None:
            return self.text.encode()
        return json.dumps(self.json).encode() if self.json is not None else b""


class StandIn:
    """An aiohttp server on 127.0.0.1 in its own thread, answering from a script."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
        self._script: list[Answer] | Callable[[Recorded], Answer] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._started.wait(10)

    # -- control from the test ----------------------------------------------------

    def answer(self, *answers: Answer | Callable[[Recorded], Answer]) -> None:
        """Answer with these in turn (the last one repeats), or with a function of the request."""
        if len(answers) == 1 and callable(answers[0]):
            self._script = answers[0]
        else:
            self._script = list(answers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def call_count(self) -> int:
        return len([r for r in self.requests if r.path == "/v1/read"])

    @property
    def last_request(self) -> Recorded:
        return self.requests[-1]

    # -- the server ---------------------------------------------------------------

    def _next_answer(self, recorded: Recorded) -> Answer:
        script = self._script
        if callable(script):
            return script(recorded)
        if len(script) > 1:
            return script.pop(0)
        return script[0] if script else Answer(404, json={"err_code": "NOT_SCRIPTED"})

    async def _handle(self, request):
        from aiohttp import web

        recorded = Recorded(
            request.method,
            request.path,
            list(request.query.items()),
            dict(request.headers),
            await request.read(),
        )
        self.requests.append(recorded)
        answer = self._next_answer(recorded)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if answer.delay:
                await asyncio.sleep(answer.delay)
            if answer.drop:
                request.transport.abort()
                return web.Response(status=500)
            body = answer.body()
            headers = {"Content-Type": "application/json", **answer.headers}
            if answer.drip is not None:
                response = web.StreamResponse(status=answer.status, headers=headers)
                response.content_length = len(body)
                await response.prepare(request)
                for byte in body:
                    await response.write(bytes([byte]))
                    await asyncio.sleep(answer.drip)
                await response.write_eof()
                return response
            return web.Response(status=answer.status, body=body, headers=headers)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    def _serve(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a request whose client went away is cancelled (and counted).
        self._runner = web.AppRunner(app, handler_cancellation=True)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        async def cleanup() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


#: The key of the connection the stand-in tests use (it must never show up anywhere).
KEY = "dg-secret-key-0123456789"


def ok_body(text="Hello there.", request_id="req-ok"):
    words = text.split()
    return {
        "metadata": {
            "request_id": request_id,
            "created": "2023-12-01T15:54:39.681Z",
            "language": "en",
            "sentiment_info": {"model_uuid": "m-1", "input_tokens": 3, "output_tokens": 3},
        },
        "results": {
            "sentiments": {
                "segments": [
                    {
                        "text": text,
                        "start_word": 0,
                        "end_word": len(words) - 1,
                        "sentiment": "positive",
                        "sentiment_score": 0.5,
                    }
                ],
                "average": {"sentiment": "positive", "sentiment_score": 0.5},
            }
        },
    }


def set_conn(monkeypatch, host, **extra):
    extra.setdefault("max_retries", 3)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": host, "password": KEY, "extra": extra}),
    )
