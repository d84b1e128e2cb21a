"""Durable in every output mode: ``kill -9`` of the worker or of the triggerer mid-run, then the retry.

For SQL only, ``results_path`` only and both, in the worker and in the trigger, the run is killed
once half of its requests have reached the emulator; the retry (a new try, or the restarted
triggerer running the same trigger) finishes it. The emulator counts the requests of both:
beyond one per document they re-pay at most the requests in flight plus the results of one
store interval (``WRITE_INTERVAL``), and every document is in the results exactly once.
benchmarks/durability.py gives the same figures for 5,000 documents.
"""

from __future__ import annotations

import math

import pytest

from airflow_provider_dgsentiment.run.scoring import WRITE_BATCH_SIZE, WRITE_INTERVAL
from tests.reliability.helpers import assert_every_document_stored_once
from tests.support.kills import MODES, PATHS, KillSpec, kill_and_retry, result_lines, write_documents

DOCUMENTS = 400  # killed at 200 requests, 5 s in: two stores or more have happened (the first part write is slow)
CONCURRENCY = 4
LATENCY = 0.1
JITTER = 0.2
#: Seconds a store may take beyond its interval on a loaded machine (the thread writing it).
STORE_SLACK = 1.0


def repay_bound() -> int:
    """In flight, plus the results of one store interval (and a store's slack) at the fastest the emulator answers."""
    fastest_rate = CONCURRENCY / (LATENCY * (1 - JITTER))
    return CONCURRENCY + min(WRITE_BATCH_SIZE, math.ceil(fastest_rate * (WRITE_INTERVAL + STORE_SLACK)))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", MODES)
def test_kill_at_half_then_retry_repays_little_and_keeps_each_document_once(
    mode, path, tmp_path, monkeypatch, deepgram_emulator_factory
):
    uris = write_documents(tmp_path / "in", DOCUMENTS)
    documents = {uri: (tmp_path / "in" / uri.rsplit("/", 1)[1]).read_text() for uri in uris}
    spec = KillSpec.under(tmp_path, mode, path, CONCURRENCY)
    slow = deepgram_emulator_factory(latency=LATENCY, latency_jitter=JITTER, max_concurrency=50)
    fast = deepgram_emulator_factory(max_concurrency=50)
    outcome = kill_and_retry(spec, slow, fast, DOCUMENTS, kill_at=DOCUMENTS // 2)
    print(
        f"\n{mode}/{path}: killed after {outcome.sent_before_kill} requests; the retry sent "
        f"{outcome.sent_by_retry}; re-paid {outcome.repaid} (bound {repay_bound()})"
    )
    assert outcome.sent_before_kill >= DOCUMENTS // 2
    assert 0 <= outcome.repaid <= repay_bound()
    assert outcome.manifest["failed"] == 0
    assert outcome.manifest["scored"] == outcome.sent_by_retry
    assert outcome.manifest["scored"] + outcome.manifest["skipped"] == DOCUMENTS

    if mode in ("sql", "both"):
        assert_every_document_stored_once(tmp_path / "scores.db", documents)
    if mode in ("results_path", "both"):
        lines = result_lines(spec.results)
        sources = [line["source"] for line in lines]
        assert len(sources) == len(set(sources)) == DOCUMENTS, "a document is missing or twice in the parts"
        assert set(sources) == set(documents)
        # A document stored in the table just before the kill, but not yet in a part, is a line that says so.
        assert {line["status"] for line in lines} <= ({"scored", "skipped"} if mode == "both" else {"scored"})
        assert len(outcome.manifest["results_uri"]) >= 1
