"""A task that dies mid-run, then is retried: nothing lost, nothing doubled, nothing scored twice.

The operator commits every ``WRITE_BATCH_SIZE`` (200) scored documents. Three ways
to die part-way through a 500-document run:

- ``kill -9`` of the worker process once the averages table has 200 rows (no
  clean-up code runs at all; SQLite rolls back the half-written transaction);
- the database failing on the second batch (the writer raises);
- Airflow interrupting the task while it is scoring (``AirflowTaskTimeout`` from
  ``execution_timeout``), which must still store what was already scored.

After each, the retry scores exactly the documents that are not yet stored (the
emulator counts the requests) and the tables end with one set of rows per document.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.operators.sentiment import WRITE_BATCH_SIZE
from tests.reliability.helpers import (
    AVERAGES,
    SEGMENTS,
    SQL_CONN_ID,
    assert_every_document_stored_once,
    count,
    deepgram_conn_json,
    make_operator,
    run_operator,
    sqlite_conn_json,
    write_documents,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = 500

WORKER = textwrap.dedent(
    """
    import sys
    from tests.reliability.helpers import SQL_CONN_ID, make_operator, run_operator

    run_operator(make_operator(source=sys.argv[1], sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    print("FINISHED")
    """
)


@pytest.fixture
def batch(tmp_path, monkeypatch):
    """500 documents on disk and a SQLite connection; returns (documents, glob, db file)."""
    documents = write_documents(tmp_path / "in", DOCUMENTS)
    db = tmp_path / "scores.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", sqlite_conn_json(db))
    return documents, f"file://{tmp_path}/in/*.txt", db


def stored_documents(db: Path) -> int:
    try:
        return count(db, AVERAGES)
    except sqlite3.OperationalError:  # no table yet, or locked by the writer
        return 0


def retry_and_check(server, documents: dict[str, str], glob: str, db: Path, monkeypatch=None) -> tuple[int, int]:
    """Run the task again against ``server``; return (documents stored before, requests it sent)."""
    stored_before = count(db, AVERAGES)
    if monkeypatch is not None:
        monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", deepgram_conn_json(server))
    server.reset_stats()
    summary = run_operator(make_operator(source=glob, sql_conn_id=SQL_CONN_ID, xcom_output="summary"))
    sent = server.stats()["requests"]
    assert sent == DOCUMENTS - stored_before, "the retry scored documents that were already stored"
    assert (summary["scored"], summary["skipped"], summary["failed"]) == (
        DOCUMENTS - stored_before,
        stored_before,
        0,
    )
    assert_every_document_stored_once(db, documents)
    return stored_before, sent


def test_kill_9_mid_run_then_retry(batch, monkeypatch, deepgram_emulator_factory):
    documents, glob, db = batch
    # 100 ms a request, 10 in flight: ~100 documents a second, so the kill lands mid-run
    # (the next commit is 200 documents, about 2 s, away).
    slow = deepgram_emulator_factory(latency=0.1)
    monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", deepgram_conn_json(slow))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, glob],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while stored_documents(db) < WRITE_BATCH_SIZE:
            assert worker.poll() is None, f"the worker ended before the kill:\n{worker.communicate()[0][-3000:]}"
            assert time.monotonic() < deadline, "no batch was stored within 60 s"
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        output = worker.communicate(timeout=30)[0]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -signal.SIGKILL
    assert "FINISHED" not in output
    stored = count(db, AVERAGES)
    assert WRITE_BATCH_SIZE <= stored < DOCUMENTS and stored % WRITE_BATCH_SIZE == 0
    assert count(db, SEGMENTS) >= stored

    stored_before, sent = retry_and_check(deepgram_emulator_factory(), documents, glob, db, monkeypatch)
    print(f"\nkill -9 after {stored_before} stored documents; the retry sent {sent} requests")


def test_database_failure_on_second_batch_then_retry(batch, monkeypatch, deepgram_conn):
    documents, glob, db = batch
    from airflow_provider_dgsentiment.storage.warehouse import WarehouseWriter

    real_write = WarehouseWriter.write
    calls = []

    def failing_write(self, batch_of_documents):
        calls.append(len(batch_of_documents))
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real_write(self, batch_of_documents)

    monkeypatch.setattr(WarehouseWriter, "write", failing_write)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        run_operator(make_operator(source=glob, sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    assert calls == [WRITE_BATCH_SIZE, WRITE_BATCH_SIZE]  # the failed batch was not written again on the way out
    assert count(db, AVERAGES) == WRITE_BATCH_SIZE

    monkeypatch.setattr(WarehouseWriter, "write", real_write)
    stored_before, sent = retry_and_check(deepgram_conn, documents, glob, db)
    assert (stored_before, sent) == (WRITE_BATCH_SIZE, DOCUMENTS - WRITE_BATCH_SIZE)


def test_task_interrupted_while_scoring_keeps_what_was_scored(batch, monkeypatch, deepgram_conn):
    """``execution_timeout`` fires after 250 results: the 50 not yet committed are stored on the way out."""
    documents, glob, db = batch
    try:
        from airflow.sdk.exceptions import AirflowTaskTimeout
    except ImportError:  # Airflow 2
        from airflow.exceptions import AirflowTaskTimeout

    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

    real_analyze_many = DeepgramSentimentHook.aanalyze_many
    interrupt_after = 250

    async def interrupted(self, texts, **kwargs):
        number = 0
        async for item in real_analyze_many(self, texts, **kwargs):
            yield item
            number += 1
            if number == interrupt_after:
                raise AirflowTaskTimeout("Timeout, PID: 4242")

    monkeypatch.setattr(DeepgramSentimentHook, "aanalyze_many", interrupted)
    with pytest.raises(AirflowTaskTimeout):
        run_operator(make_operator(source=glob, sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    assert count(db, AVERAGES) == interrupt_after

    monkeypatch.setattr(DeepgramSentimentHook, "aanalyze_many", real_analyze_many)
    stored_before, sent = retry_and_check(deepgram_conn, documents, glob, db)
    assert (stored_before, sent) == (interrupt_after, DOCUMENTS - interrupt_after)


def test_retry_budget_exhausted_then_task_retry_scores_only_the_failed(batch, monkeypatch, deepgram_emulator_factory):
    """An outage longer than the retry budget: the task fails naming the documents, keeps the rest; the retry finishes."""
    documents, glob, db = batch
    from airflow_provider_dgsentiment.exceptions import DeepgramError

    flaky = deepgram_emulator_factory(error_rate=0.3, seed=11)
    monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", deepgram_conn_json(flaky, max_retries=0))
    with pytest.raises(DeepgramError) as raised:
        run_operator(make_operator(source=glob, sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    failed = flaky.stats()["server_errors"]
    assert 0 < failed < DOCUMENTS
    message = str(raised.value)
    assert message.startswith(f"{failed} of {DOCUMENTS} document(s) failed:\n  file://")
    assert f"\n  and {failed - 20} more" in message  # the first 20 are named, with their error
    assert count(db, AVERAGES) == DOCUMENTS - failed  # everything that was scored was stored

    stored_before, sent = retry_and_check(deepgram_emulator_factory(), documents, glob, db, monkeypatch)
    assert sent == failed


def test_duplicate_text_in_a_later_batch_gets_its_own_rows(batch, deepgram_conn):
    """doc-0400 repeats doc-0002's text; doc-0002 is committed (first 200) before doc-0400 is looked up."""
    documents, glob, db = batch
    folder = Path(glob[len("file://") : -len("/*.txt")])
    twin = documents[f"file://{folder}/doc-0002.txt"]
    (folder / "doc-0400.txt").write_text(twin)
    documents[f"file://{folder}/doc-0400.txt"] = twin
    run_operator(make_operator(source=glob, sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    assert_every_document_stored_once(db, documents)  # 499 rows: doc-0400.txt has none


def test_interrupted_run_with_duplicate_content_loses_nothing(tmp_path, monkeypatch, deepgram_conn):
    documents = write_documents(tmp_path / "in", 20)
    (tmp_path / "in" / "doc-0015.txt").write_text(documents[f"file://{tmp_path}/in/doc-0002.txt"])
    documents[f"file://{tmp_path}/in/doc-0015.txt"] = documents[f"file://{tmp_path}/in/doc-0002.txt"]
    db = tmp_path / "scores.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", sqlite_conn_json(db))
    glob = f"file://{tmp_path}/in/*.txt"
    try:
        from airflow.sdk.exceptions import AirflowTaskTimeout
    except ImportError:  # Airflow 2
        from airflow.exceptions import AirflowTaskTimeout
    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

    real_analyze_many = DeepgramSentimentHook.aanalyze_many

    async def interrupted(self, texts, **kwargs):
        number = 0
        async for item in real_analyze_many(self, texts, **kwargs):
            yield item
            number += 1
            if number == 10:
                raise AirflowTaskTimeout("Timeout, PID: 4242")

    monkeypatch.setattr(DeepgramSentimentHook, "aanalyze_many", interrupted)
    with pytest.raises(AirflowTaskTimeout):
        # One request at a time, so the first 10 documents (doc-0002 among them) are the stored ones.
        run_operator(make_operator(source=glob, sql_conn_id=SQL_CONN_ID, xcom_output="none", max_concurrency=1))
    assert count(db, AVERAGES) == 10
    monkeypatch.setattr(DeepgramSentimentHook, "aanalyze_many", real_analyze_many)

    run_operator(make_operator(source=glob, sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    assert_every_document_stored_once(db, documents)  # doc-0015.txt has no row
