"""Airflow metrics of a scoring run, through Airflow's ``Stats`` (StatsD or OpenTelemetry, as configured).

Counters (increments since the last report, so a long run shows up while it goes):

- ``dgsentiment.requests``: requests sent, every attempt;
- ``dgsentiment.rate_limited``: 429 answers;
- ``dgsentiment.retries``: retries made;
- ``dgsentiment.input_tokens`` / ``dgsentiment.output_tokens``: tokens billed.

Gauge: ``dgsentiment.concurrency_window``, the requests the engine allows in flight now
(its adaptive window). Every metric is tagged with the DAG and task when they are known.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import Stats

PREFIX = "dgsentiment."
COUNTERS = ("requests", "rate_limited", "retries", "input_tokens", "output_tokens")
WINDOW_GAUGE = "concurrency_window"


class RunMetrics:
    """
    Report one run's counters as increments and its window as a gauge.

    :param tags: metric tags (e.g. ``{"dag_id": ..., "task_id": ...}``).
    """

    def __init__(self, tags: dict[str, str] | None = None) -> None:
        self.tags = dict(tags or {})
        self._reported = dict.fromkeys(COUNTERS, 0)

    def report(self, figures: dict[str, Any], window: int | None) -> None:
        """Send what grew since the last report (``figures``: the run's totals so far) and the window."""
        for name in COUNTERS:
            total = int(figures.get(name) or 0)
            grown = total - self._reported[name]
            if grown > 0:
                Stats.incr(PREFIX + name, grown, tags=self.tags)
                self._reported[name] = total
        if window is not None:
            Stats.gauge(PREFIX + WINDOW_GAUGE, window, tags=self.tags)
