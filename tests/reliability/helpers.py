"""Shared set-up of the reliability tests: documents on disk, connections, operator runs, table checks."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

SQL_CONN_ID = "dgs_reliability_sqlite"
AVERAGES = "deepgram_sentiment_averages"
SEGMENTS = "deepgram_sentiment_segments"
RUN_ID = "manual__2024-06-01T00:00:00+00:00"

_OPENINGS = [
    "The delivery arrived early and the courier was friendly.",
    "Support never answered my emails and the refund is still missing.",
    "The invoice lists three items and a shipping fee.",
    "I love how quiet the new fan is at night!",
    "The screen cracked on the second day, which is awful.",
]
_FOLLOW_UPS = [
    "Order {i} was packed with care.",
    "Ticket {i} is still open after a week.",
    "Item {i} weighs two kilograms.",
    "Honestly the best purchase {i} I made this year.",
    "Batch {i} was terrible and I want my money back.",
]


def document_text(i: int) -> str:
    """A unique text of two to four sentences, single-spaced (so joined segment texts give it back)."""
    sentences = [_OPENINGS[i % 5], _FOLLOW_UPS[(i // 5) % 5].format(i=i)]
    if i % 3 == 0:
        sentences.append(f"Reference number {i} is on the receipt.")
    if i % 7 == 0:
        sentences.append("What a wonderful experience overall!")
    return " ".join(sentences)


def write_documents(folder: Path, count: int) -> dict[str, str]:
    """Write ``count`` documents ``doc-0000.txt``... into ``folder``; return ``{file:// URI: text}``."""
    folder.mkdir(parents=True, exist_ok=True)
    documents = {}
    for i in range(count):
        path = folder / f"doc-{i:04d}.txt"
        text = document_text(i)
        path.write_text(text, encoding="utf-8")
        documents[f"file://{path}"] = text
    return documents


def deepgram_conn_json(server: Any, key: str | None = None, **extra: Any) -> str:
    """The ``AIRFLOW_CONN_DEEPGRAM_DEFAULT`` value pointing at an emulator."""
    return json.dumps({"conn_type": "deepgram", "host": server.url, "password": key or server.api_key, "extra": extra})


def sqlite_conn_json(path: Path) -> str:
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


def make_operator(**kwargs: Any):
    """Build the operator inside a DAG, the way users do."""
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator

    kwargs.setdefault("task_id", "score")
    kwargs.setdefault("deferrable", False)
    with DAG(dag_id="reliability", schedule=None):
        return DeepgramSentimentOperator(**kwargs)


def run_operator(operator: Any, *, map_index: int = -1) -> Any:
    """Render templates and call ``execute`` as the task runner does."""
    context = {"run_id": RUN_ID, "ti": SimpleNamespace(map_index=map_index), "params": {}}
    operator.render_template_fields(context)
    return operator.execute(context)


def rows(db: Path, sql: str, parameters: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql, parameters).fetchall()


def count(db: Path, table: str) -> int:
    return rows(db, f"SELECT COUNT(*) FROM {table}")[0][0]


@dataclass
class TableCheck:
    """What the two tables hold for a set of documents."""

    average_rows: int
    distinct_sources: int
    segment_rows: int


def assert_every_document_stored_once(db: Path, documents: dict[str, str]) -> TableCheck:
    """
    Check the tables hold exactly one scored copy of each document: one averages row,
    segments numbered 0..n-1 with n == segment_count, word offsets contiguous over the
    whole text, segment texts that join back to the text, and the right fingerprint.
    """
    averages = rows(db, f"SELECT source, fingerprint, segment_count, input_tokens FROM {AVERAGES}")
    sources = [row[0] for row in averages]
    check = TableCheck(
        average_rows=len(averages),
        distinct_sources=len(set(sources)),
        segment_rows=count(db, SEGMENTS),
    )
    assert check.average_rows == len(documents), f"{check.average_rows} averages rows for {len(documents)} documents"
    assert check.distinct_sources == len(documents), "duplicate sources in the averages table"
    assert set(sources) == set(documents), "lost or unexpected documents"

    segments: dict[str, list[tuple]] = {}
    for source, index, start, end, text in rows(
        db, f"SELECT source, segment_index, start_word, end_word, text FROM {SEGMENTS} ORDER BY source, segment_index"
    ):
        segments.setdefault(source, []).append((index, start, end, text))
    assert set(segments) == set(documents), "segments of lost or unexpected documents"
    for source, fingerprint, segment_count, input_tokens in averages:
        text = documents[source]
        assert fingerprint == hashlib.sha256(text.encode("utf-8")).hexdigest(), source
        parts = segments[source]
        assert [part[0] for part in parts] == list(range(segment_count)), f"{source}: segment indexes {parts}"
        assert parts[0][1] == 0 and parts[-1][2] == len(text.split()) - 1, source
        for previous, current in zip(parts, parts[1:]):
            assert current[1] == previous[2] + 1, f"{source}: gap or overlap between segments"
        assert " ".join(part[3] for part in parts) == text, f"{source}: segment texts do not give the text back"
        assert input_tokens > 0
    assert check.segment_rows == sum(row[2] for row in averages)
    return check
