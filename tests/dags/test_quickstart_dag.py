"""The quickstart example DAG, run with ``dag.test()`` against a real metadata DB and the emulator."""

from __future__ import annotations

import json

from tests.support.dags import EXAMPLE_DAGS, load_dag, xcom_values  # noqa: F401


def test_quickstart_dag_parses_without_network():
    dag = load_dag("deepgram_sentiment_quickstart.py")
    assert dag.dag_id == "deepgram_sentiment_quickstart"
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert set(dag.task_dict) == {"score_texts", "print_scores"}
    score = dag.get_task("score_texts")
    assert score.deepgram_conn_id == "deepgram_default"
    assert score.xcom_output == "full"
    assert "print_scores" in score.downstream_task_ids


def test_quickstart_dag_scores_the_sample_texts(airflow_db, deepgram_conn, capsys):
    dag = load_dag("deepgram_sentiment_quickstart.py")
    before = deepgram_conn.stats()["requests"]
    dag_run = dag.test()
    assert dag_run.state == "success"
    assert deepgram_conn.stats()["requests"] - before == 3

    values = xcom_values(dag_run)
    full = values["score_texts"]
    assert [item["source"] for item in full] == ["text[0]", "text[1]", "text[2]"]
    assert [item["results"]["sentiments"]["average"]["sentiment"] for item in full] == [
        "positive",
        "negative",
        "neutral",
    ]
    assert all(item["metadata"]["request_id"] for item in full)
    assert values["print_scores"] == [
        {
            "source": item["source"],
            "sentiment": item["results"]["sentiments"]["average"]["sentiment"],
            "sentiment_score": item["results"]["sentiments"]["average"]["sentiment_score"],
            "segments": len(item["results"]["sentiments"]["segments"]),
        }
        for item in full
    ]
    out = capsys.readouterr().out
    assert "text[1]: negative (" in out
    assert deepgram_conn.api_key not in json.dumps(values)
    assert deepgram_conn.api_key not in out


def test_quickstart_dag_fails_cleanly_with_a_wrong_key(airflow_db, deepgram_conn, monkeypatch, capsys):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
        json.dumps({"conn_type": "deepgram", "host": deepgram_conn.url, "password": "not-the-right-key"}),
    )
    dag = load_dag("deepgram_sentiment_quickstart.py")
    dag_run = dag.test()
    assert dag_run.state == "failed"
    out = capsys.readouterr().out
    assert "INVALID_AUTH" in out
    assert "left unscored" in out
    assert "not-the-right-key" not in out
    assert "score_texts" not in xcom_values(dag_run)
