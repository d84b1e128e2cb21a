"""The files-to-SQL example DAG, run with ``dag.test()``: file:// documents -> SQLite or PostgreSQL tables."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.support.dags import DOCUMENTS, SQLITE_CONN_ID, load_dag, xcom_values

POSTGRES_CONN_ID = "dgs_test_postgres"


@pytest.fixture
def documents(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    (folder / "blank.txt").write_text("   \n")
    return folder


@pytest.fixture
def scores_db(tmp_path, monkeypatch) -> Path:
    """The ``dgsentiment_sqlite`` connection the DAG uses by default, on a fresh file."""
    path = tmp_path / "scores.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQLITE_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def sqlite_counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as connection:
        return (
            connection.execute("SELECT COUNT(*) FROM deepgram_sentiment_segments").fetchone()[0],
            connection.execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()[0],
        )


def test_files_to_sql_dag_parses_with_offline_defaults():
    dag = load_dag("deepgram_sentiment_files_to_sql.py")
    assert dag.dag_id == "deepgram_sentiment_files_to_sql"
    assert type(dag.timetable).__name__ == "NullTimetable"
    score = dag.get_task("score_files")
    assert score.source == "{{ params.source }}"
    assert score.xcom_output == "summary"
    assert dag.params["sql_conn_id"] == SQLITE_CONN_ID
    default_source = dag.params["source"]
    assert default_source.startswith("file://") and default_source.endswith("sample_texts/*.txt")
    assert list(Path(default_source[len("file://") :]).parent.glob("*.txt")), "the sample texts ship with the DAG"


def test_files_to_sql_dag_writes_sqlite_and_second_run_changes_nothing(
    airflow_db, deepgram_conn, documents, scores_db, capsys
):
    dag = load_dag("deepgram_sentiment_files_to_sql.py")
    conf = {"source": f"file://{documents}/*.txt"}
    before = deepgram_conn.stats()["requests"]

    first = dag.test(run_conf=conf)
    assert first.state == "success"
    assert deepgram_conn.stats()["requests"] - before == 3  # the blank file costs no request
    summary = xcom_values(first)["score_files"]
    assert (summary["documents"], summary["scored"], summary["skipped"], summary["failed"]) == (4, 3, 1, 0)
    assert xcom_values(first)["report"] == {"documents": 4, "scored": 3, "skipped": 1, "failed": 0}

    with sqlite3.connect(scores_db) as connection:
        rows = connection.execute(
            "SELECT source, sentiment, dag_id, task_id, run_id FROM deepgram_sentiment_averages ORDER BY source"
        ).fetchall()
    assert rows == [
        (f"file://{documents}/memo-3.txt", "neutral", dag.dag_id, "score_files", first.run_id),
        (f"file://{documents}/review-1.txt", "positive", dag.dag_id, "score_files", first.run_id),
        (f"file://{documents}/review-2.txt", "negative", dag.dag_id, "score_files", first.run_id),
    ]
    counts = sqlite_counts(scores_db)
    assert counts[1] == 3 and counts[0] >= 3
    assert "review-2.txt: negative (" in capsys.readouterr().out

    before = deepgram_conn.stats()["requests"]
    second = dag.test(run_conf=conf)
    assert second.state == "success"
    assert second.run_id != first.run_id
    assert deepgram_conn.stats()["requests"] - before == 0  # every fingerprint was already stored
    assert sqlite_counts(scores_db) == counts
    again = xcom_values(second)["score_files"]
    assert (again["scored"], again["skipped"]) == (0, 4)


def test_files_to_sql_dag_fails_naming_a_pattern_that_matches_nothing(
    airflow_db, deepgram_conn, tmp_path, scores_db, capsys
):
    dag = load_dag("deepgram_sentiment_files_to_sql.py")
    pattern = f"file://{tmp_path}/empty-folder/*.txt"
    dag_run = dag.test(run_conf={"source": pattern})
    assert dag_run.state == "failed"
    assert f"source {pattern} matched no objects" in capsys.readouterr().out


def test_files_to_sql_dag_on_postgres(airflow_db, deepgram_conn, documents, monkeypatch):
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", uri)
    suffix = uuid.uuid4().hex[:10]
    segments_table, averages_table = f"dgs_segments_{suffix}", f"dgs_averages_{suffix}"
    conf = {
        "source": f"file://{documents}/*.txt",
        "sql_conn_id": POSTGRES_CONN_ID,
        "segments_table": segments_table,
        "averages_table": averages_table,
    }
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=POSTGRES_CONN_ID)

    def counts() -> tuple[int, int]:
        return (
            hook.get_first(f"SELECT COUNT(*) FROM {segments_table}")[0],
            hook.get_first(f"SELECT COUNT(*) FROM {averages_table}")[0],
        )

    dag = load_dag("deepgram_sentiment_files_to_sql.py")
    try:
        first = dag.test(run_conf=conf)
        assert first.state == "success"
        rows = hook.get_records(
            f"SELECT source, fingerprint, sentiment, sentiment_score, segment_count, scored_at "
            f"FROM {averages_table} ORDER BY source"
        )
        assert [row[0] for row in rows] == [f"file://{documents}/{name}" for name in sorted(DOCUMENTS)]
        assert [row[2] for row in rows] == ["neutral", "positive", "negative"]
        assert all(len(row[1]) == 64 and isinstance(row[3], float) and row[5].tzinfo is not None for row in rows)
        first_counts = counts()
        assert first_counts[1] == 3

        # The second run finds every fingerprint stored: nothing scored, nothing duplicated.
        before = deepgram_conn.stats()["requests"]
        second = dag.test(run_conf=conf)
        assert second.state == "success"
        assert deepgram_conn.stats()["requests"] - before == 0
        assert counts() == first_counts
        duplicates = hook.get_first(
            f"SELECT COUNT(*) FROM (SELECT source FROM {averages_table} GROUP BY source HAVING COUNT(*) > 1) d"
        )[0]
        assert duplicates == 0
    finally:
        hook.run(f"DROP TABLE IF EXISTS {segments_table}")
        hook.run(f"DROP TABLE IF EXISTS {averages_table}")
