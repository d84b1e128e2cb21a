"""A task deferred under the previous release resumes under this one.

The triggerer rebuilds a trigger from the classpath and kwargs stored in the metadata
database when the task deferred. These are the exact kwargs 0.2.0's ``serialize()``
wrote (copied from its tests); each must rebuild, serialize in today's names, and run
to its one terminal event.
"""

from __future__ import annotations

import json
import sqlite3

from airflow.providers.common.compat.module_loading import import_string

from tests.conftest import SQL_CONN_ID
from tests.support.triggers import only_event

SCORING_TRIGGER = "airflow_provider_dgsentiment.triggers.sentiment.DeepgramSentimentTrigger"
OBJECTS_TRIGGER = "airflow_provider_dgsentiment.triggers.sentiment.DeepgramObjectsTrigger"


def scoring_kwargs_of_0_2(inbox) -> dict:
    """What ``DeepgramSentimentOperator(deferrable=True, sql_conn_id=...)`` stored under 0.2.0."""
    return {
        "deepgram_conn_id": "deepgram_default",
        "source": {
            "entries": [f"file://{inbox}/*.txt"],
            "conn_id": None,
            "stored_prefix": "",
            "shard": None,
            "given_as": repr(f"file://{inbox}/*.txt"),
            "format": "auto",
            "text_field": "text",
            "id_field": None,
            "sql": None,
            "sql_conn_id": None,
        },
        "xcom_output": "manifest",
        "options": {
            "tags": ["airflow", "d", "t"],
            "max_input_tokens": None,
            "language": "en",
            "max_concurrency": 3,
            "skip_scored": True,
            "fail_on_empty_source": True,
            "max_documents": None,
            "progress_interval": 30.0,
        },
        "sql": {
            "sql_conn_id": SQL_CONN_ID,
            "segments_table": "deepgram_sentiment_segments",
            "averages_table": "deepgram_sentiment_averages",
            "dag_id": "d",
            "task_id": "t",
            "run_id": "r",
        },
        "results": None,
    }


def objects_kwargs_of_0_2(inbox) -> dict:
    """What ``DeepgramSentimentSensor(deferrable=True)`` stored under 0.2.0."""
    return {
        "source": f"file://{inbox}/*.txt",
        "conn_id": None,
        "min_objects": 1,
        "sql_conn_id": None,
        "averages_table": "deepgram_sentiment_averages",
        "poke_interval": 0.05,
        "return_uris": True,
    }


def rebuild(classpath: str, kwargs: dict):
    return import_string(classpath)(**json.loads(json.dumps(kwargs)))


def test_a_scoring_trigger_deferred_under_0_2_resumes_and_stores(deepgram_conn, inbox, sqlite_db):
    kwargs = scoring_kwargs_of_0_2(inbox)
    trigger = rebuild(SCORING_TRIGGER, kwargs)

    classpath, today = trigger.serialize()
    assert classpath == SCORING_TRIGGER
    assert today["warehouse"] == kwargs["sql"] and "sql" not in today  # today's name, same destination

    event = only_event(trigger)
    assert event["status"] == "success", event
    outcome = event["outcome"]
    assert (outcome["total"], outcome["scored"], outcome["failed"]) == (3, 3, 0)
    with sqlite3.connect(sqlite_db) as connection:
        sources = [row[0] for row in connection.execute("SELECT source FROM deepgram_sentiment_averages")]
    assert sorted(sources) == sorted(f"file://{inbox}/{name}" for name in ("a.txt", "b.txt", "c.txt"))


def test_an_objects_trigger_deferred_under_0_2_resumes(inbox):
    kwargs = objects_kwargs_of_0_2(inbox)
    trigger = rebuild(OBJECTS_TRIGGER, kwargs)

    classpath, today = trigger.serialize()
    assert classpath == OBJECTS_TRIGGER
    assert today["source_conn_id"] is None and "conn_id" not in today

    event = only_event(trigger)
    assert event["status"] == "success", event
    assert event["uris"] == sorted(f"file://{inbox}/{name}" for name in ("a.txt", "b.txt", "c.txt"))


def test_the_0_2_storage_connection_name_is_the_source_connection(inbox):
    """``conn_id`` (0.2) is the storage connection, exactly as ``source_conn_id`` is now."""
    trigger = rebuild(OBJECTS_TRIGGER, {**objects_kwargs_of_0_2(inbox), "conn_id": "dgs_compat_files"})
    assert trigger.serialize()[1]["source_conn_id"] == "dgs_compat_files"
