"""
One task run: the same in the worker and in the triggerer.

- :mod:`.scoring` lists, reads, skips, scores and stores (:class:`ScoringRun`);
- :mod:`.outcome` keeps per-document bookkeeping, progress and the XCom shapes;
- :mod:`.events` is the trigger <-> task event contract, both sides.
"""

from __future__ import annotations

from airflow_provider_dgsentiment.run.events import check_event, error_event, success_event
from airflow_provider_dgsentiment.run.outcome import ProgressLog, ScoringOutcome
from airflow_provider_dgsentiment.run.scoring import ScoringOptions, ScoringRun

__all__ = [
    "ProgressLog",
    "ScoringOptions",
    "ScoringOutcome",
    "ScoringRun",
    "check_event",
    "error_event",
    "success_event",
]
