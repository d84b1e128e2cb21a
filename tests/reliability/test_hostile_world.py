"""What a careless user and a misbehaving world do to a run (issue 15): each case reproduces the failure first.

SIGTERM goes to a real ``airflow tasks test`` process; the naming cases run the operator the
way the task runner does, against the emulator.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from tests.reliability.helpers import AVERAGES, SEGMENTS, deepgram_conn_json, sqlite_conn_json, write_documents
from tests.support.operator_runs import make_operator, run

REPO = Path(__file__).resolve().parents[2]


def averages(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(f"SELECT source, segment_count FROM {AVERAGES} ORDER BY source").fetchall()


# ---------------------------------------------------------------------- 3: SIGTERM stops the run


def test_sigterm_stops_sending_stores_what_was_scored_and_fails_the_try(
    airflow_db, deepgram_emulator_factory, tmp_path
):
    documents = write_documents(tmp_path / "in", 1500)
    emulator = deepgram_emulator_factory(latency=0.05, max_concurrency=10)
    db = tmp_path / "scores.db"
    env = {
        **os.environ,
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT": deepgram_conn_json(emulator),
        "AIRFLOW_CONN_DGS_SIGTERM_SQLITE": sqlite_conn_json(db),
        "PYTHONPATH": str(REPO),
    }
    params = {"source": f"file://{tmp_path}/in/*.txt", "sql_conn_id": "dgs_sigterm_sqlite"}
    command = [sys.executable, "-m", "airflow", "tasks", "test", "deepgram_sentiment_files_to_sql", "score_files"]
    log = tmp_path / "task.log"
    with log.open("w") as output:
        task = subprocess.Popen([*command, "-t", json.dumps(params)], env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            stored = 0
            while time.monotonic() < deadline and task.poll() is None:
                if db.exists():
                    try:
                        stored = len(averages(db))
                    except sqlite3.OperationalError:  # tables not created yet
                        stored = 0
                if stored >= 200:
                    break
                time.sleep(0.1)
            assert task.poll() is None, f"the task ended before it was told to stop:\n{log.read_text()[-3000:]}"
            requests_at_term = emulator.stats()["requests"]
            terminated_at = time.monotonic()
            task.send_signal(signal.SIGTERM)
            code = task.wait(timeout=30)
            took = time.monotonic() - terminated_at
        finally:
            if task.poll() is None:
                task.kill()
                task.wait()
    text = log.read_text()
    sent_after = emulator.stats()["requests"] - requests_at_term
    rows = averages(db)
    print(
        f"\nSIGTERM at {stored} stored: exit {code} after {took:.1f}s, {sent_after} requests after, {len(rows)} stored"
    )
    # The try fails (``airflow tasks test`` itself exits 0 whatever the task did): nothing pretends it finished.
    assert "Task failed with exception" in text, text[-3000:]
    assert took < 20, f"took {took:.1f}s to exit"  # the task fails within a second; the CLI's own teardown is the rest
    assert sent_after <= 30  # the requests in flight, and not the ~1,300 left
    assert stored <= len(rows) < len(documents)
    # Airflow 3's task runner calls on_kill and lets the run end itself; Airflow 2's raises its own
    # AirflowTaskTerminated after on_kill. Either way sending stops and what was scored is stored.
    assert "Stopped before the end: the task was told to stop" in text or "Task received SIGTERM signal" in text
    with sqlite3.connect(db) as connection:  # every stored document is complete
        incomplete = connection.execute(
            f"SELECT a.source FROM {AVERAGES} a LEFT JOIN {SEGMENTS} s ON s.source = a.source "
            "GROUP BY a.source, a.segment_count HAVING COUNT(s.source) != a.segment_count"
        ).fetchall()
    assert incomplete == []


# ---------------------------------------------------------------------- 4: a URI names an object, not a pattern


def test_a_uri_naming_an_existing_object_is_that_object_even_with_glob_characters(deepgram_conn, tmp_path):
    for name in ("report[1].txt", "what?.txt", "star*.txt", "report1.txt", "whatX.txt", "starry.txt"):
        (tmp_path / name).write_text(f"{name} is a lovely file.")
    literal = [f"file://{tmp_path}/{name}" for name in ("report[1].txt", "what?.txt", "star*.txt")]
    result = run(make_operator(source=literal, xcom_output="summary"))
    assert [item["source"] for item in result["items"]] == sorted(literal)
    assert result["scored"] == 3
    # A pattern that names no object is a glob: report[1].txt names an object, report[0-9].txt does not.
    globbed = run(make_operator(source=f"file://{tmp_path}/report[0-9].txt", xcom_output="summary"))
    assert [item["source"] for item in globbed["items"]] == [f"file://{tmp_path}/report1.txt"]


# ---------------------------------------------------------------------- 7: special files


def test_named_pipes_and_symlinked_folders_are_skipped_not_read(deepgram_conn, tmp_path, log_text):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("A fine document.")
    os.mkfifo(folder / "pipe.txt")  # opening it for reading would wait for a writer forever
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.txt").write_text("Another fine document.")
    (folder / "linked-folder").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (folder / "link.txt").symlink_to(folder / "a.txt")
    result = run(make_operator(source=f"file://{folder}/*", xcom_output="summary"))
    assert [item["source"] for item in result["items"]] == [f"file://{folder}/a.txt", f"file://{folder}/link.txt"]
    assert result["failed"] == 0
    assert f"Skipping file://{folder}/pipe.txt: named pipe, not a regular file" in log_text()
    with pytest.raises(DeepgramError, match="pipe.txt: is a named pipe, not a regular file"):
        run(make_operator(source=f"file://{folder}/pipe.txt"))  # named explicitly: an error, never a hang


# ---------------------------------------------------------------------- 8: one file, several spellings


def test_one_file_under_several_spellings_is_one_document(deepgram_conn, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("The same happy file.")
    spellings = [f"file://{tmp_path}/a.txt", f"file://{tmp_path}//a.txt", f"file://{tmp_path}/./a.txt"]
    spellings.append(f"file://{tmp_path}/sub/../a.txt")
    before = deepgram_conn.stats()["requests"]
    result = run(make_operator(source=spellings, xcom_output="summary"))
    assert [item["source"] for item in result["items"]] == [f"file://{tmp_path}/a.txt"]
    assert deepgram_conn.stats()["requests"] - before == 1


# ---------------------------------------------------------------------- 9: tables checked before paying


def test_an_incompatible_table_is_found_before_the_first_request(deepgram_conn, inbox, sqlite_db):
    with sqlite3.connect(sqlite_db) as connection:
        connection.execute("CREATE TABLE deepgram_sentiment_averages (source TEXT, score REAL)")
    before = deepgram_conn.stats()["requests"]
    with pytest.raises(DeepgramConfigurationError) as raised:
        run(make_operator(source=f"file://{inbox}/*.txt", sql_conn_id="dgs_test_sqlite"))
    assert deepgram_conn.stats()["requests"] - before == 0
    message = str(raised.value)
    assert "deepgram_sentiment_averages exists without the columns" in message and "fingerprint" in message
    assert "drop it or give averages_table a new name" in message


# ---------------------------------------------------------------------- 10: notes settled


def test_a_document_emptied_between_runs_keeps_its_rows_and_the_log_says_so(deepgram_conn, inbox, sqlite_db, log_text):
    kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": "dgs_test_sqlite", "xcom_output": "summary"}
    assert run(make_operator(**kwargs))["scored"] == 3
    (inbox / "b.txt").write_text("   ")
    again = run(make_operator(**kwargs))
    assert (again["scored"], again["skipped"]) == (0, 3)
    assert [source for source, _ in averages(sqlite_db)] == [f"file://{inbox}/{name}.txt" for name in "abc"]
    assert f"Skipped 1 empty document(s) without a request: file://{inbox}/b.txt" in log_text()


def test_the_nightly_example_never_runs_two_scoring_runs_over_the_same_objects():
    """Two concurrent runs over the same files would both score everything: the example allows one run at a time."""
    from tests.support.dags import load_dag

    dag = load_dag("deepgram_sentiment_nightly.py")
    assert dag.max_active_runs == 1
    assert {task.pool for task in dag.tasks if task.task_type == "DeepgramSentimentOperator"} == {"deepgram"}
