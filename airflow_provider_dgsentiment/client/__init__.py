"""
The client: everything that talks to Deepgram's API.

- :mod:`.engine` sends requests: the window, retries, chunking, the systemic stop;
- :mod:`.transport` is the wire: settings, the query, masking, parsing answers, the proxy;
- :mod:`.loop_bridge` lets sync callers drive the async engine on a private loop;
- :mod:`.retry`, :mod:`.concurrency` and :mod:`.chunking` are the engine's policies,
  :mod:`.tuning` the window's knobs;
- :mod:`.results` is the result model users receive.

Nothing here knows of tasks, storage or runs (the ``layers`` contract in ``pyproject.toml``).
"""

from __future__ import annotations

from airflow_provider_dgsentiment.client.chunking import chunk_text, count_tokens, merge_results
from airflow_provider_dgsentiment.client.concurrency import AdaptiveConcurrency
from airflow_provider_dgsentiment.client.engine import EngineStats, SentimentEngine
from airflow_provider_dgsentiment.client.loop_bridge import LoopThread
from airflow_provider_dgsentiment.client.results import Average, Segment, SentimentResult, label_for_score
from airflow_provider_dgsentiment.client.retry import RetryPolicy, parse_retry_after
from airflow_provider_dgsentiment.client.transport import DeepgramSettings
from airflow_provider_dgsentiment.client.tuning import EngineTuning

__all__ = [
    "AdaptiveConcurrency",
    "Average",
    "DeepgramSettings",
    "EngineStats",
    "EngineTuning",
    "LoopThread",
    "RetryPolicy",
    "Segment",
    "SentimentEngine",
    "SentimentResult",
    "chunk_text",
    "count_tokens",
    "label_for_score",
    "merge_results",
    "parse_retry_after",
]
