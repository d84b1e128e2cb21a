"""The usage table against the emulator's own counters: one row per task try, requests, tags, 429s, tokens.

The emulator answers 429 to a share of requests (``rate_limit_rate``); the client retries them.
Its counters (``GET /_emulator/stats``: requests, rate_limited, tags) are the independent truth
the row must match, in the worker and through the trigger, and a second try gets a row of its own.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_dgsentiment.storage.usage import DEFAULT_USAGE_TABLE, USAGE_COLUMNS, UsageRow, UsageTable
from tests.reliability.helpers import (
    AVERAGES,
    SQL_CONN_ID,
    deepgram_conn_json,
    rows,
    sqlite_conn_json,
    write_documents,
)
from tests.support.operator_runs import RUN_ID, defer, make_operator, resume, trigger_event

DOCUMENTS = 60


def usage_rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(f"SELECT * FROM {DEFAULT_USAGE_TABLE} ORDER BY try_number")]


def run_try(operator, try_number: int):
    context = {"run_id": RUN_ID, "ti": SimpleNamespace(map_index=-1, try_number=try_number), "params": {}}
    operator.render_template_fields(context)
    return operator.execute(context)


@pytest.mark.parametrize("path", ["worker", "deferrable"])
def test_one_row_per_try_matches_the_emulators_counters(path, tmp_path, monkeypatch, deepgram_emulator_factory):
    write_documents(tmp_path / "in", DOCUMENTS)
    db = tmp_path / "scores.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", sqlite_conn_json(db))
    server = deepgram_emulator_factory(rate_limit_rate=0.2, retry_after=0, seed=24)
    monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", deepgram_conn_json(server, max_retries=10))
    kwargs = {
        "source": f"file://{tmp_path}/in/*.txt",
        "sql_conn_id": SQL_CONN_ID,
        "xcom_output": "manifest",
        "tags": ["finops", "nightly"],
    }
    if path == "worker":
        manifest = run_try(make_operator(**kwargs), try_number=1)
    else:
        deferred = defer_try(kwargs)
        manifest = resume(deferred, trigger_event(deferred), deferrable=True, **kwargs)
    stats = server.stats()
    (row,) = usage_rows(db)
    assert stats["rate_limited"] > 0, "the emulator sent no 429: the test proves nothing"
    assert (row["requests"], row["rate_limited"]) == (stats["requests"], stats["rate_limited"])
    assert row["retries"] >= stats["rate_limited"]  # every 429 was retried (and nothing else failed)
    assert stats["tags"] == {"finops": stats["requests"], "nightly": stats["requests"]}
    assert json.loads(row["tags"]) == ["finops", "nightly"]
    assert (row["documents"], row["scored"], row["skipped"], row["failed"]) == (DOCUMENTS, DOCUMENTS, 0, 0)
    assert row["input_tokens"] == rows(db, f"SELECT SUM(input_tokens) FROM {AVERAGES}")[0][0] > 0
    assert row["output_tokens"] > 0
    assert row["outcome"] == "success"
    assert (row["dag_id"], row["task_id"], row["run_id"], row["map_index"]) == (
        "test_sentiment_operator",
        "score",
        RUN_ID,
        -1,
    )
    assert row["started_at"] <= row["ended_at"]
    # The manifest (and the asset event, which carries counts()) says the same.
    for figure in ("requests", "rate_limited", "retries", "input_tokens", "output_tokens", "scored"):
        assert manifest[figure] == row[figure], figure


def defer_try(kwargs):
    return defer(make_operator(deferrable=True, **kwargs))


def test_a_second_try_gets_its_own_row_and_a_rewrite_replaces_a_row(tmp_path, monkeypatch, deepgram_conn):
    write_documents(tmp_path / "in", 5)
    db = tmp_path / "scores.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", sqlite_conn_json(db))
    kwargs = {"source": f"file://{tmp_path}/in/*.txt", "sql_conn_id": SQL_CONN_ID, "xcom_output": "none"}
    run_try(make_operator(**kwargs), try_number=1)
    run_try(make_operator(**kwargs), try_number=2)  # everything stored: nothing sent
    first, second = usage_rows(db)
    assert (first["try_number"], first["scored"], first["requests"]) == (1, 5, 5)
    assert (second["try_number"], second["scored"], second["skipped"], second["requests"]) == (2, 0, 5, 0)
    assert json.loads(first["tags"]) == ["airflow", "test_sentiment_operator", "score"]

    again = UsageRow(**{**second, "outcome": "stopped"})
    UsageTable(SQL_CONN_ID).record(again)
    assert [row["outcome"] for row in usage_rows(db)] == ["success", "stopped"]
    assert list(usage_rows(db)[0]) == list(USAGE_COLUMNS)


def test_tokens_per_tag_per_day_the_readme_query(tmp_path, monkeypatch, deepgram_conn):
    """The README's FinOps query runs on the table as written (SQLite's json_each; PostgreSQL's is in the README)."""
    write_documents(tmp_path / "in", 4)
    db = tmp_path / "scores.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", sqlite_conn_json(db))
    run_try(make_operator(source=f"file://{tmp_path}/in/*.txt", sql_conn_id=SQL_CONN_ID, tags=["team-a"]), 1)
    (row,) = usage_rows(db)
    by_tag = rows(
        db,
        f"SELECT substr(u.started_at, 1, 10) AS day, tag.value AS tag, SUM(u.input_tokens) AS input_tokens "
        f"FROM {DEFAULT_USAGE_TABLE} AS u, json_each(u.tags) AS tag GROUP BY day, tag ORDER BY day, tag",
    )
    assert by_tag == [(row["started_at"][:10], "team-a", row["input_tokens"])]
