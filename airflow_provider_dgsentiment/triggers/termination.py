"""SIGTERM reaches the triggers of this process: they stop sending at once, then the process's own handler runs.

A triggerer cancels its triggers on SIGTERM; ``airflow dags test`` runs a deferred task's
trigger inline, where SIGTERM only calls the task's ``on_kill`` and the trigger went on
polling. :func:`stopping_on_sigterm` registers a running trigger's stop callback; the first
registration in a process's main thread chains one handler in front of the one installed
(never replacing it: the triggerer's graceful shutdown, or the task runner's, still runs).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_stops: set[Callable[[], object]] = set()
_installed = False
_lock = threading.Lock()


def _install() -> None:
    """Chain the handler in front of the current one (main thread only: elsewhere signals cannot be handled)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        for stop in list(_stops):
            stop()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    _installed = True


@contextmanager
def stopping_on_sigterm(stop: Callable[[], object]) -> Iterator[None]:
    """
    While inside, SIGTERM to this process calls ``stop`` (signal-safe: it may only set flags or schedule work).

    :param stop: what stops the trigger's work (e.g. ``ScoringRun.stop``).
    """
    with _lock:
        _install()
        _stops.add(stop)
    try:
        yield
    finally:
        with _lock:
            _stops.discard(stop)
