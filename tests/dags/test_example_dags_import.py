"""Every example DAG imports cleanly, and each one runs end to end with ``airflow dags test``.

The runs are real ``airflow dags test <dag_id>`` subprocesses against the test session's
AIRFLOW_HOME (see tests/conftest.py), with ``deepgram_default`` pointed at the emulator,
``dgsentiment_sqlite`` at a fresh SQLite file and the ``deepgram`` pool created, exactly the
set-up the README gives a user.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from tests.support.dags import EXAMPLE_DAGS, load_dag

EXAMPLE_DAG_IDS = {
    "deepgram_sentiment_files_to_sql",
    "deepgram_sentiment_nightly",
    "deepgram_sentiment_on_new_objects",
    "deepgram_sentiment_quickstart",
    "deepgram_sentiment_records_to_sql",
    "deepgram_sentiment_report",
}
SAMPLE_TEXTS = sorted((EXAMPLE_DAGS / "sample_texts").glob("*.txt"))
#: The keys of the records in ``sample_exports/tickets.jsonl.gz``.
SAMPLE_TICKETS = [f"T-100{index}" for index in range(1, 7)]
#: The nightly example's key_namespace for the exported tickets.
NIGHTLY_NAMESPACE = "tickets"
#: Each ``airflow dags test`` costs a few seconds of start-up; none should take long.
DAGS_TEST_TIMEOUT = 240


def load_module(file_name: str):
    """Import an example DAG file by path and return the module (its helpers and ``dag``)."""
    path = EXAMPLE_DAGS / file_name
    spec = importlib.util.spec_from_file_location(f"example_module_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dagbag():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    kwargs = {}
    if "include_examples" in inspect.signature(DagBag.__init__).parameters:  # Airflow 3 never loads examples here
        kwargs["include_examples"] = False
    return DagBag(dag_folder=str(EXAMPLE_DAGS), **kwargs)


def test_every_example_dag_file_imports_without_errors():
    dagbag = _dagbag()
    assert dagbag.import_errors == {}
    # Every example DAG is run end to end below: a new one needs its `airflow dags test` here too.
    assert set(dagbag.dag_ids) == EXAMPLE_DAG_IDS, "add the new example DAG to EXAMPLE_DAG_IDS and run it below"
    python_files = {path.name for path in EXAMPLE_DAGS.glob("*.py")}
    assert {Path(dagbag.dags[dag_id].fileloc).name for dag_id in dagbag.dag_ids} == python_files


def test_nightly_dag_wiring():
    dag = load_dag("deepgram_sentiment_nightly.py")
    assert dag.max_active_runs == 1
    assert set(dag.task_dict) == {"wait_for_texts", "plan_shards", "score_shard", "report"}
    sensor = dag.get_task("wait_for_texts")
    assert sensor.mode == "reschedule" and sensor.soft_fail is True
    assert sensor.sql_conn_id == "{{ params.sql_conn_id }}"  # only objects not yet scored count
    assert sensor.xcom_output == "counts"  # a count, never 100k URIs in XCom
    score = dag.get_task("score_shard")
    assert score.pool == "deepgram"
    # Each task may use the whole account limit: the tasks split it through the account budget.
    assert score.partial_kwargs["max_concurrency"] == 10
    # The sensor's look is the run's one listing, published where the tables are; none without SQL.
    listing = jinja2.Template(sensor.claims)
    assert listing.render(dag=dag, run_id="r1", params={"sql_conn_id": "wh"}) == "deepgram_sentiment_nightly/r1"
    assert listing.render(dag=dag, run_id="r1", params={"sql_conn_id": ""}) == ""
    assert score.partial_kwargs["xcom_output"] == "manifest"
    # The asset is the table as OpenLineage names the operator's output (a SQLite file by default).
    # Airflow normalizes sqlite:///tmp/... (an empty host) to sqlite:/tmp/...
    expected_uri = "sqlite:/tmp/dgsentiment.db/deepgram_sentiment_averages"
    assert [asset.uri for asset in score.partial_kwargs["outlets"]] == [expected_uri]
    assert set(dag.params.keys()) >= {"source", "source_conn_id", "sql_conn_id", "shard_size", "deferrable"}
    assert dag.params["source"].startswith("file://") and dag.params["source"].endswith(
        "sample_*/*"
    )  # texts and exports
    # Sensor and operator read with the same options, so "new" means the same to both.
    reading = ("{{ params.text_field }}", "{{ params.id_field }}", "{{ params.key_namespace }}")
    assert (sensor.text_field, sensor.id_field, sensor.key_namespace) == reading
    assert tuple(score.partial_kwargs[name] for name in ("text_field", "id_field", "key_namespace")) == reading
    assert dag.params["sql_conn_id"] == "dgsentiment_sqlite"
    assert "plan_shards" in sensor.downstream_task_ids
    assert "score_shard" in dag.get_task("plan_shards").downstream_task_ids

    report = load_dag("deepgram_sentiment_report.py")
    timetable = report.timetable
    condition = getattr(timetable, "asset_condition", None) or timetable.dataset_condition  # Airflow 2: datasets
    assert [asset.uri for asset in condition.objects] == [expected_uri]


def test_nightly_plan_shards_and_storage_conn_id():
    nightly = load_module("deepgram_sentiment_nightly.py")
    plan_shards = nightly.dag.get_task("plan_shards").python_callable
    # Sized by documents: the records the load history knows in changed exports, plus one per unread object.
    sensed = {"source": ["s3://b/in/"], "matched": 120, "scored": 20, "to_score": 100, "records": 10_990, "unknown": 10}
    shards = plan_shards(sensed, params={"shard_size": 5000, "deferrable": True})
    assert shards == [{"shard": f"{index}/3", "deferrable": True} for index in range(3)]
    one = {**sensed, "to_score": 1, "records": 0, "unknown": 1}
    assert plan_shards(one, params={"shard_size": 5000, "deferrable": False}) == [{"shard": "0/1", "deferrable": False}]
    assert len(plan_shards({**sensed, "records": 99_990}, params={"shard_size": 5000, "deferrable": False})) == 20
    # Over the sensor's listing: every task claims batches of it.
    claimed = plan_shards({**sensed, "listing": "nightly/run"}, params={"shard_size": 5000, "deferrable": False})
    assert claimed == [{"claims": "nightly/run", "deferrable": False}] * 3

    assert nightly.storage_conn_id("s3://aws_s3_test@bucket/in/") == "aws_s3_test"
    assert nightly.storage_conn_id("s3://bucket/in/") == ""
    assert nightly.storage_conn_id("s3://aws_s3_test@bucket/in/", "explicit") == "explicit"
    assert nightly.storage_conn_id("file:///data/*.txt", None) == ""


# ---------------------------------------------------------------------- airflow dags test


@pytest.fixture
def dags_test_env(airflow_db, deepgram_emulator, tmp_path) -> dict[str, str]:
    """Environment for ``airflow dags test``: emulator, a fresh SQLite file, the ``deepgram`` pool."""
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("deepgram", 2, "Deepgram: 2 slots x 5 requests = the account limit of 10", False)
    env = os.environ.copy()
    env["AIRFLOW_CONN_DEEPGRAM_DEFAULT"] = json.dumps(
        {"conn_type": "deepgram", "host": deepgram_emulator.url, "password": deepgram_emulator.api_key}
    )
    env["AIRFLOW_CONN_DGSENTIMENT_SQLITE"] = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "scores.db")})
    return env


def airflow_dags_test(dag_id: str, env: dict[str, str], conf: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if conf is not None:
        command += ["-c", json.dumps(conf)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=DAGS_TEST_TIMEOUT)
    output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"airflow dags test {dag_id} failed:\n{output}"
    return result


def sqlite_rows(env: dict[str, str], sql: str) -> list[tuple]:
    path = json.loads(env["AIRFLOW_CONN_DGSENTIMENT_SQLITE"])["host"]
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def test_quickstart_runs_with_airflow_dags_test(dags_test_env, deepgram_emulator):
    before = deepgram_emulator.stats()["requests"]
    result = airflow_dags_test("deepgram_sentiment_quickstart", dags_test_env)
    assert deepgram_emulator.stats()["requests"] - before == 3
    assert "text[0]: positive (" in result.stdout
    assert "text[1]: negative (" in result.stdout
    assert deepgram_emulator.api_key not in result.stdout + result.stderr


def test_files_to_sql_runs_with_airflow_dags_test(dags_test_env):
    airflow_dags_test("deepgram_sentiment_files_to_sql", dags_test_env)
    rows = sqlite_rows(dags_test_env, "SELECT source FROM deepgram_sentiment_averages ORDER BY source")
    sources = [row[0] for row in rows]
    assert sources == [f"file://{path}" for path in SAMPLE_TEXTS]
    (segments,) = sqlite_rows(dags_test_env, "SELECT COUNT(*) FROM deepgram_sentiment_segments")[0]
    assert segments >= len(SAMPLE_TEXTS)


def test_records_to_sql_runs_with_airflow_dags_test(dags_test_env, deepgram_emulator):
    before = deepgram_emulator.stats()["requests"]
    airflow_dags_test("deepgram_sentiment_records_to_sql", dags_test_env)
    assert deepgram_emulator.stats()["requests"] - before == 6 + 3  # six exported tickets, three table rows
    rows = sqlite_rows(dags_test_env, "SELECT source, sentiment FROM deepgram_sentiment_averages ORDER BY source")
    # Exported records are entities named by their key in the task's namespace (dag_id.task_id by default).
    assert [source for source, _ in rows] == sorted(
        [f"deepgram_sentiment_records_to_sql.score_export#T-100{index}" for index in range(1, 7)]
        + [f"sql://dgsentiment_sqlite/ticket_id#S-{index}" for index in (1, 2, 3)]
    )
    assert {sentiment for _, sentiment in rows} <= {"positive", "neutral", "negative"}
    # Run again: every record is stored with the same content, so nothing is sent.
    before = deepgram_emulator.stats()["requests"]
    airflow_dags_test("deepgram_sentiment_records_to_sql", dags_test_env)
    assert deepgram_emulator.stats()["requests"] - before == 0
    assert len(sqlite_rows(dags_test_env, "SELECT source FROM deepgram_sentiment_averages")) == 9


def test_nightly_then_report_run_with_airflow_dags_test(dags_test_env, deepgram_emulator):
    before = deepgram_emulator.stats()["requests"]
    nightly = airflow_dags_test("deepgram_sentiment_nightly", dags_test_env, conf={"shard_size": 4})
    # The sample texts and the sample ticket export (six records) in one nightly.
    assert deepgram_emulator.stats()["requests"] - before == len(SAMPLE_TEXTS) + len(SAMPLE_TICKETS)
    objects = len(SAMPLE_TEXTS) + 1
    assert f"{objects} new or changed object(s) of {objects}, about {objects} document(s): 2 shard(s)" in nightly.stdout
    rows = sqlite_rows(
        dags_test_env,
        "SELECT a.source, a.segment_count, COUNT(s.segment_index), a.task_id FROM deepgram_sentiment_averages a "
        "JOIN deepgram_sentiment_segments s ON s.source = a.source GROUP BY a.source ORDER BY a.source",
    )
    assert [row[0] for row in rows] == sorted(
        [f"file://{path}" for path in SAMPLE_TEXTS] + [f"{NIGHTLY_NAMESPACE}#{key}" for key in SAMPLE_TICKETS]
    )
    assert all(row[1] == row[2] >= 1 and row[3] == "score_shard" for row in rows)

    # Each scoring task attached its run statistics to the asset event of the averages table
    # (Airflow 3; `airflow dags test` on 2.11 records no dataset events at all).
    from airflow import __version__ as airflow_version

    if int(airflow_version.split(".")[0]) >= 3:
        home = Path(os.environ["AIRFLOW_HOME"])
        with sqlite3.connect(home / "airflow.db") as connection:
            extras = [
                json.loads(row[0])
                for row in connection.execute(
                    "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ? "
                    "ORDER BY e.id DESC LIMIT 2",
                    ("sqlite:/tmp/dgsentiment.db/deepgram_sentiment_averages",),
                )
            ]
        assert len(extras) == 2, extras  # two shards, two events
        assert sum(extra["scored"] for extra in extras) == len(SAMPLE_TEXTS) + len(SAMPLE_TICKETS)
        assert all(
            set(extra)
            >= {"documents", "scored", "skipped", "failed", "input_tokens", "output_tokens", "sentiment_counts"}
            for extra in extras
        )
        assert sum(sum(extra["sentiment_counts"].values()) for extra in extras) == len(SAMPLE_TEXTS) + len(
            SAMPLE_TICKETS
        )

    report = airflow_dags_test("deepgram_sentiment_report", dags_test_env)
    assert f"{len(SAMPLE_TEXTS) + len(SAMPLE_TICKETS)} document(s) in deepgram_sentiment_averages" in report.stdout
    assert "Most negative:" in report.stdout


def test_on_new_objects_runs_with_airflow_dags_test_and_watches_its_source(dags_test_env, deepgram_emulator):
    """The asset-scheduled example: its task scores the samples; its asset's watcher is the event trigger."""
    module = load_module("deepgram_sentiment_on_new_objects.py")
    if module.AssetWatcher is not None:
        (watcher,) = module.NEW_TEXTS.watchers
        assert type(watcher.trigger).__name__ == "DeepgramNewObjectsTrigger"
        assert watcher.trigger.serialize()[1]["source"] == module.SOURCE
    before = deepgram_emulator.stats()["requests"]
    airflow_dags_test("deepgram_sentiment_on_new_objects", dags_test_env)
    assert deepgram_emulator.stats()["requests"] - before == len(SAMPLE_TEXTS)
