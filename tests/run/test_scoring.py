"""One task run (ScoringRun) on its own: list, read, skip, score, store — against the emulator and SQLite."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook
from airflow_provider_dgsentiment.run.scoring import ScoringOptions, ScoringRun
from airflow_provider_dgsentiment.storage.result_files import ResultFiles
from airflow_provider_dgsentiment.storage.sources import DocumentSource
from airflow_provider_dgsentiment.storage.warehouse import RunIdentity, WarehouseWriter
from tests.conftest import SQL_CONN_ID

log = logging.getLogger(__name__)


def score(inbox, *, keep="summary", writer=None, result_files=None, **options):
    hook = DeepgramSentimentHook()
    try:
        run = ScoringRun(
            source=DocumentSource(entries=[f"file://{inbox}/*.txt"]),
            hook=hook,
            keep=keep,
            options=ScoringOptions(max_concurrency=3, **options),
            log=log,
            writer=writer,
            result_files=result_files,
        )
        return asyncio.run(run.run())
    finally:
        hook.close()


def writer() -> WarehouseWriter:
    return WarehouseWriter(SQL_CONN_ID, run=RunIdentity(dag_id="d", task_id="t", run_id="r"))


def test_a_run_scores_each_document_once_and_says_what_happened(deepgram_conn, inbox):
    (inbox / "empty.txt").write_text("  \n")
    before = deepgram_conn.stats()["requests"]
    outcome = score(inbox)
    assert (outcome.total, outcome.scored, outcome.skipped, outcome.failed) == (4, 3, 1, 0)
    assert outcome.empty == [f"file://{inbox}/empty.txt"]
    assert deepgram_conn.stats()["requests"] - before == 3  # nothing sent for the empty document
    assert outcome.sentiment_counts == {"positive": 1, "neutral": 1, "negative": 1}


def test_a_run_stores_rows_and_lines_and_the_next_run_skips_what_is_stored(deepgram_conn, inbox, sqlite_db, tmp_path):
    files = ResultFiles.for_task(str(tmp_path / "results"), dag_id="d", run_id="r", task_id="t")
    first = score(inbox, keep="manifest", writer=writer(), result_files=files)
    assert (first.scored, first.stored) == (3, 3)
    with sqlite3.connect(sqlite_db) as connection:
        (rows,) = connection.execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()
    assert rows == 3
    assert len(first.results_uris) == 1

    before = deepgram_conn.stats()["requests"]
    again = score(inbox, keep="manifest", writer=writer())
    assert (again.scored, again.skipped, again.failed) == (0, 3, 0)
    assert deepgram_conn.stats()["requests"] == before  # nothing paid twice


def test_stop_ends_the_run_and_keeps_what_was_scored(deepgram_emulator_factory, monkeypatch, tmp_path):
    import json

    emulator = deepgram_emulator_factory(latency=0.2)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": emulator.url, "password": emulator.api_key}),
    )
    inbox = tmp_path / "many"
    inbox.mkdir()
    for index in range(60):
        (inbox / f"{index:03d}.txt").write_text(f"Document {index} is fine.")

    hook = DeepgramSentimentHook()
    run = ScoringRun(
        source=DocumentSource(entries=[f"file://{inbox}/*.txt"]),
        hook=hook,
        keep="manifest",
        options=ScoringOptions(max_concurrency=3),
        log=log,
    )

    async def stop_soon():
        task = asyncio.ensure_future(run.run())
        await asyncio.sleep(0.5)
        run.stop("told to stop by the test")
        return await task

    try:
        outcome = asyncio.run(stop_soon())
    finally:
        hook.close()
    assert outcome.stopped == "told to stop by the test"
    assert 0 < outcome.scored < 60
    assert emulator.stats()["requests"] <= outcome.scored + 3  # at most the requests in flight beyond what was kept
