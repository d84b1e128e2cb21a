"""A nightly run of 500 documents through emulator faults: every document stored once, retries logged.

Each case runs the operator over 500 ``file://`` documents into SQLite while the
emulator injects one kind of fault (or all of them at once):

- ``error_rate=0.2``: a fifth of the requests answer 500 or 503 (the emulator mixes both);
- ``rate_limit_rate=0.3``: 429 storms with ``Retry-After: 1`` (an integer, as HTTP and the
  emulator's config define it); the hook must wait what the header says;
- ``spike_rate=0.05, spike_latency=2``: answers after the connection's ``timeout`` of 0.5 s.
  The emulator keeps an abandoned request in flight for the whole spike, so its
  ``max_concurrency`` is raised to 40 here: the case is about timeouts, not about 429s;
- ``drop_rate=0.1``: connections closed without an answer.

Whatever the fault, the run must end with exactly one averages row and one contiguous,
complete set of segment rows per document, the emulator must have seen exactly the
first attempts plus the retries, and every retry must show in the task log as
``... retry n/25 in ...s``. The hook's sleeps are cut to 10 ms by ``sleeps_fast``, which
still records the delay the hook asked for.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.reliability.helpers import (
    SQL_CONN_ID,
    assert_every_document_stored_once,
    deepgram_conn_json,
    make_operator,
    run_operator,
    sqlite_conn_json,
    write_documents,
)

DOCUMENTS = 500
#: Retries per request: with at most ~30% of requests failing, 25 in a row never happen.
MAX_RETRIES = 25
RETRY_LINE = re.compile(
    r"(?P<error>Deepgram (?:API error|request failed)[^\n]*?); retry (?P<attempt>\d+)/(?P<of>\d+) in (?P<delay>[\d.]+)s"
)


@dataclass(frozen=True)
class FaultCase:
    """One fault mix: emulator settings, connection extras, and what the retries must show."""

    name: str
    emulator: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    #: Substrings of the error in retry log lines, at least one line each.
    retried_errors: tuple[str, ...] = ()


CASES = [
    FaultCase(
        "server_errors_20pct",
        {"error_rate": 0.2},
        retried_errors=("Deepgram API error 503 SERVICE_UNAVAILABLE", "Deepgram API error 500 INTERNAL_SERVER_ERROR"),
    ),
    FaultCase(
        "rate_limit_storm_with_retry_after",
        {"rate_limit_rate": 0.3, "retry_after": 1},
        retried_errors=("Deepgram API error 429 TOO_MANY_REQUESTS",),
    ),
    FaultCase(
        "latency_spikes_past_client_timeout",
        {"spike_rate": 0.05, "spike_latency": 2.0, "max_concurrency": 40},
        extra={"timeout": 0.5},
        retried_errors=("CLIENT_TIMEOUT: no response within 0.5s",),
    ),
    FaultCase(
        "dropped_connections_10pct",
        {"drop_rate": 0.1},
        retried_errors=("CONNECTION_ERROR",),
    ),
    FaultCase(
        "all_faults_at_once",
        {
            "error_rate": 0.1,
            "rate_limit_rate": 0.1,
            "retry_after": 1,
            "drop_rate": 0.05,
            "spike_rate": 0.03,
            "spike_latency": 2.0,
            "latency": 0.002,
            "max_concurrency": 40,
        },
        extra={"timeout": 0.5},
        retried_errors=(
            "Deepgram API error 503 SERVICE_UNAVAILABLE",
            "Deepgram API error 429 TOO_MANY_REQUESTS",
            "CLIENT_TIMEOUT",
            "CONNECTION_ERROR",
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_document_is_stored_exactly_once_despite_faults(
    case, tmp_path, monkeypatch, deepgram_emulator_factory, sleeps_fast, log_text
):
    documents = write_documents(tmp_path / "in", DOCUMENTS)
    db = tmp_path / "scores.db"
    server = deepgram_emulator_factory(seed=20240601, **case.emulator)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT", deepgram_conn_json(server, max_retries=MAX_RETRIES, **case.extra)
    )
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", sqlite_conn_json(db))

    operator = make_operator(source=f"file://{tmp_path}/in/*.txt", sql_conn_id=SQL_CONN_ID, xcom_output="summary")
    summary = run_operator(operator)

    assert (summary["documents"], summary["scored"], summary["skipped"], summary["failed"]) == (
        DOCUMENTS,
        DOCUMENTS,
        0,
        0,
    )
    check = assert_every_document_stored_once(db, documents)
    assert check.segment_rows > DOCUMENTS  # many documents have several segments

    # The retries happened, are counted, and every one is in the task log.
    hook = operator.hook
    stats = server.stats()
    logs = log_text()
    retry_lines = RETRY_LINE.findall(logs)
    assert hook.retry_count > 0
    assert f"retry 1/{MAX_RETRIES} in " in logs
    assert len(retry_lines) == hook.retry_count == len(sleeps_fast)
    for error in case.retried_errors:
        assert any(error in line[0] for line in retry_lines), f"no retry logged after {error!r}"
    assert f"Processed {DOCUMENTS}/{DOCUMENTS} documents (scored {DOCUMENTS}, failed 0, skipped 0)" in logs
    # Every request the emulator saw was a first attempt or one of the logged retries.
    assert stats["requests"] == DOCUMENTS + hook.retry_count
    # Retry-After (1 s) was what the hook waited after each 429 it saw, not its own backoff.
    if case.emulator.get("rate_limit_rate"):
        assert 0 < sleeps_fast.count(1.0) == sum("429 TOO_MANY_REQUESTS" in line[0] for line in retry_lines)
    if not case.emulator.get("spike_rate"):
        assert sleeps_fast.count(1.0) == stats["rate_limited"]
        assert stats["by_status"]["200"] == stats["scored_texts"] == DOCUMENTS
    else:
        # A spiked request answers after the client gave up: its answer (even a 429) is never seen.
        assert sleeps_fast.count(1.0) <= stats["rate_limited"]
        # Let the abandoned (spiked) requests finish before the emulator stops.
        deadline = time.monotonic() + case.emulator["spike_latency"] + 1
        while server.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
    print(
        f"\n{case.name}: {hook.retry_count} retries logged; emulator {stats['by_status']}, dropped {stats['dropped']}"
    )
