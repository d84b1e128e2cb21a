"""A ``results_path``-only nightly is incremental (issue 24): the load history beside the results in object storage.

No SQL database: the operator keeps its load history and its documents index as JSON lines under
``<results_path>/_load_history/``. Real runs against the emulator (requests from its own counters),
on file:// and on the S3-compatible server (object reads from the server's own recording), DAG runs
with ``dag.test()`` in the worker and deferred; the sensor and the event trigger decide with the same
history. Object-level behaviour (merging, two writers, compaction) is in tests/storage/test_object_history.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_dgsentiment.exceptions import DeepgramError
from airflow_provider_dgsentiment.run.scoring import WRITE_BATCH_SIZE, WRITE_INTERVAL
from airflow_provider_dgsentiment.storage.object_history import HISTORY_FOLDER
from airflow_provider_dgsentiment.triggers.new_objects import DeepgramNewObjectsTrigger
from airflow_provider_dgsentiment.triggers.sentiment import DeepgramObjectsTrigger
from tests.conftest import NEGATIVE, NEUTRAL, POSITIVE, require_service
from tests.integration.conftest import deepgram_pool, s3_bucket  # noqa: F401  (fixtures)
from tests.support.dags import load_dag, xcom_values
from tests.support.kills import KillSpec, connection_env, kill_part_way, write_documents
from tests.support.operator_runs import context, make_operator, requests_during, run
from tests.support.s3_requests import S3Requests
from tests.support.triggers import only_event

#: make_operator's default key namespace: ``<dag_id>.<task_id>``.
NS = "test_sentiment_operator.score"
READING = {"text_field": "body", "id_field": "ticket_id"}


def export(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def tickets(texts: dict[str, str]) -> list[dict]:
    return [{"ticket_id": key, "body": text} for key, text in texts.items()]


DAY_1 = {"T-1": POSITIVE, "T-2": NEGATIVE, "T-3": NEUTRAL, "T-4": POSITIVE}
#: The next day's export: T-1..T-3 unchanged, T-4 changed, T-5 new.
DAY_2 = {**DAY_1, "T-4": "Reopened: the fix broke the printer again, terrible.", "T-5": NEGATIVE}


def night(day: int) -> str:
    return f"scheduled__2024-05-{day:02d}T02:00:00+00:00"


#: The nightly example's reading options for the ticket exports, one shard per night.
NIGHTLY = {"text_field": "body", "id_field": "ticket_id", "key_namespace": "tickets", "shard_size": 1000}


def part_lines(root: Path) -> list[dict]:
    """Every result line under ``root`` (every DAG run's parts; not the history)."""
    lines = []
    for part in sorted(root.glob("dag_id=*/run_id=*/task_id=*/map_index=*/part-*.jsonl")):
        lines += [json.loads(line) for line in part.read_text().splitlines()]
    return lines


# ---------------------------------------------------------------------- the nightly example DAG, results_path only


def nightly_without_sql():
    """The nightly example DAG, made to fail fast in a test (no wait for the night, no retry delay)."""
    dag = load_dag("deepgram_sentiment_nightly.py")
    dag.get_task("wait_for_texts").poke_interval = 1
    dag.get_task("wait_for_texts").timeout = 3  # nothing new: skipped after 3 s (soft_fail)
    dag.get_task("score_shard").retries = 0
    return dag


def nightly(dag, conf: dict, emulator) -> tuple[dict, int, str]:
    """One DAG run: ``(XCom values by task, requests the emulator received, the run's state)``."""
    dag_run, sent = requests_during(emulator, lambda: dag.test(run_conf=conf))
    assert not isinstance(dag_run, Exception), dag_run
    return xcom_values(dag_run), sent, dag_run.state


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferrable"])
def test_a_results_path_only_nightly_pays_only_for_new_and_changed_text(
    airflow_db,
    deepgram_conn,
    deepgram_pool,  # noqa: F811
    tmp_path,
    deferrable,
):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "2024-05-01.jsonl").write_text(export(tickets(DAY_1)))
    results = tmp_path / "results"
    conf = {"source": f"file://{exports}/", "sql_conn_id": "", "results_path": f"file://{results}", **NIGHTLY}
    conf["deferrable"] = deferrable
    dag = nightly_without_sql()

    values, sent, _ = nightly(dag, conf, deepgram_conn)
    assert sent == 4 and values["report"]["scored"] == 4
    # The second night over the same export: the sensor (same history) finds nothing new; nothing is paid.
    values, sent, _ = nightly(dag, conf, deepgram_conn)
    assert sent == 0 and "report" not in values
    # The next day's export: the same tickets, one changed, one new; the sensor counts that one export
    # (5 records, never read) and the shard pays for those two tickets only.
    (exports / "2024-05-02.jsonl").write_text(export(tickets(DAY_2)))
    values, sent, state = nightly(dag, conf, deepgram_conn)
    assert state == "success"
    assert {key: values["wait_for_texts"][key] for key in ("matched", "scored", "to_score", "unknown")} == {
        "matched": 2,
        "scored": 1,
        "to_score": 1,
        "unknown": 1,
    }
    assert sent == 2
    assert {key: values["report"][key] for key in ("documents", "scored", "skipped")} == {
        "documents": 6,
        "scored": 2,
        "skipped": 4,  # T-1..T-3 already scored, and the unchanged export
    }

    # Every scored line of every night is in the parts once; the history is readable JSON lines beside them.
    scored = [line for line in part_lines(results) if line["status"] == "scored"]
    assert sorted(line["source"] for line in scored) == sorted(
        [f"tickets#{key}" for key in DAY_1] + ["tickets#T-4", "tickets#T-5"]
    )
    loads = [
        json.loads(line)
        for path in (results / HISTORY_FOLDER / "loads").glob("*.ndjson")
        for line in path.read_text().splitlines()
    ]
    assert {load["object"] for load in loads} == {
        f"file://{exports}/2024-05-01.jsonl",
        f"file://{exports}/2024-05-02.jsonl",
    }


# ---------------------------------------------------------------------- S3: object reads counted by the server


def test_on_s3_unchanged_objects_are_not_read_and_a_changed_one_pays_only_its_changed_records(
    deepgram_conn,
    s3_bucket,  # noqa: F811
    s3_endpoint,
):
    s3_bucket.put("exports/2024-05-01.jsonl", export(tickets(DAY_1)))
    s3_bucket.put("exports/notes.txt", "The handover went smoothly, thanks to everyone.")
    kwargs = {"source": s3_bucket.uri("exports/"), "results_path": s3_bucket.uri("results/"), **READING}
    kwargs |= {"key_namespace": "tickets", "xcom_output": "manifest"}
    first, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs), run_id=night(1)))
    assert sent == 5 and first["scored"] == 5

    with S3Requests(s3_endpoint, s3_bucket.name) as recorded:
        second, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs), run_id=night(2)))
    exports_read = [key for key in recorded.objects_read() if key.startswith("exports/")]
    history_read = [key for key in recorded.objects_read() if key.startswith(f"results/{HISTORY_FOLDER}/")]
    print(f"\nsecond run: {sent} requests, GETs {recorded.counts()}, history objects read {len(history_read)}")
    assert (sent, exports_read, second["unchanged"]) == (0, [], 2)
    assert len(history_read) <= 4  # the first run's few history objects, read once

    # The export is re-delivered with one ticket changed: read again (one GET), one request.
    s3_bucket.put("exports/2024-05-01.jsonl", export(tickets({**DAY_1, "T-2": "Solved after all, great work."})))
    with S3Requests(s3_endpoint, s3_bucket.name) as recorded:
        third, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs), run_id=night(3)))
    exports_read = [key for key in recorded.objects_read() if key.startswith("exports/")]
    print(f"third run: {sent} requests, GETs {recorded.counts()}")
    assert exports_read == ["exports/2024-05-01.jsonl"]
    assert (sent, third["scored"], third["skipped"], third["unchanged"]) == (1, 1, 4, 1)  # skipped: 3 + unchanged


@pytest.fixture
def s3_endpoint() -> str:
    return require_service("DGS_TEST_S3_ENDPOINT", "S3-compatible server")


# ---------------------------------------------------------------------- known failures and empties


def test_a_bad_record_is_a_known_failure_the_next_night_without_sql(deepgram_conn, tmp_path):
    good = [{"ticket_id": f"g{i}", "body": POSITIVE} for i in range(3)]
    bad = {"ticket_id": "b1", "body": {"oops": "not text"}}
    blank = {"ticket_id": "e1", "body": "   "}
    day_1 = tmp_path / "2024-05-01" / "tickets.jsonl.gz"
    day_1.parent.mkdir()
    day_1.write_bytes(gzip.compress(export([*good, bad, blank]).encode()))
    kwargs = {"results_path": f"file://{tmp_path}/results", "xcom_output": "manifest", **READING}
    error, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{day_1}", **kwargs), run_id=night(1))
    )
    assert isinstance(error, DeepgramError) and "b1" in str(error)
    assert sent == 3
    # A retry of the same night fails as its first try did, and pays nothing.
    retried, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{day_1}", **kwargs), run_id=night(1))
    )
    assert isinstance(retried, DeepgramError) and "b1" in str(retried)
    assert sent == 0

    # The next night's export holds the same bad record and the blank one: known, not re-sent, not failing.
    day_2 = tmp_path / "2024-05-02" / "tickets.jsonl.gz"
    day_2.parent.mkdir()
    day_2.write_bytes(gzip.compress(export([*good, bad, blank, {"ticket_id": "n1", "body": NEGATIVE}]).encode()))
    manifest, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{day_2}", **kwargs), run_id=night(2))
    )
    assert not isinstance(manifest, Exception), manifest
    assert sent == 1  # n1 only
    assert (manifest["failed"], manifest["known_failed"], manifest["failures"]) == (1, 1, [])
    assert manifest["known_failures"][0]["source"] == f"{NS}#b1"

    # retry_failed=True sends the known failure again: a new failure, failing the task.
    error, _ = requests_during(
        deepgram_conn,
        lambda: run(make_operator(source=f"file://{day_2}", retry_failed=True, **kwargs), run_id=night(3)),
    )
    assert isinstance(error, DeepgramError) and "1 of 6 document(s) failed" in str(error)


# ---------------------------------------------------------------------- the sensor and the event trigger agree


def sensor_for(folder: Path, results: Path, **kwargs):
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor

    with DAG(dag_id="test_sentiment_operator", schedule=None):
        return DeepgramSentimentSensor(
            task_id="wait",
            source=f"file://{folder}/",
            results_path=f"file://{results}",
            key_namespace=NS,
            **READING,
            **kwargs,
        )


def test_the_sensor_counts_exactly_what_the_operator_reads(deepgram_conn, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "2024-05-01.jsonl").write_text(export(tickets(DAY_1)))
    (folder / "a.txt").write_text(POSITIVE)
    results = tmp_path / "results"
    kwargs = {"source": f"file://{folder}/", "results_path": f"file://{results}", "xcom_output": "manifest", **READING}
    sensor = sensor_for(folder, results)
    assert sensor.poke(context()).xcom_value == [f"file://{folder}/2024-05-01.jsonl", f"file://{folder}/a.txt"]

    run(make_operator(**kwargs), run_id=night(1))
    assert sensor.poke(context()).is_done is False

    # A text rewritten and a new export: the sensor finds exactly those two ...
    (folder / "a.txt").write_text("On second thought, it is broken.")
    (folder / "2024-05-02.jsonl").write_text(export(tickets(DAY_2)))
    expected = [f"file://{folder}/2024-05-02.jsonl", f"file://{folder}/a.txt"]
    assert sensor.poke(context()).xcom_value == expected
    counts = sensor_for(folder, results, xcom_output="counts").poke(context()).xcom_value
    # matched 3; 1 unchanged; 2 to read: a.txt (1 document when last read) and the new export (never read).
    assert [counts[key] for key in ("matched", "scored", "to_score", "records", "unknown")] == [3, 1, 2, 1, 1]
    # The deferrable sensor's trigger (rebuilt from its kwargs, as the triggerer does) decides the same.
    deferring = sensor_for(folder, results, deferrable=True, min_objects=3, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        deferring.execute(context())
    trigger_kwargs = deferred.value.trigger.serialize()[1]
    assert trigger_kwargs["reading"]["results_path"] == f"file://{results}"
    (folder / "c.txt").write_text(NEUTRAL)
    event = only_event(DeepgramObjectsTrigger(**trigger_kwargs))
    assert event["uris"] == [*expected, f"file://{folder}/c.txt"]
    # ... and the operator reads exactly those three, paying for the changed and new text only.
    manifest, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs), run_id=night(2)))
    assert manifest["unchanged"] == 1 and sent == 4  # a.txt, c.txt, T-4 changed, T-5 new
    assert sensor.poke(context()).is_done is False


def test_the_event_trigger_announces_what_the_operator_would_read_once(deepgram_conn, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.txt").write_text(POSITIVE)
    (folder / "b.txt").write_text(NEGATIVE)
    results = f"file://{tmp_path}/results"
    run(make_operator(source=f"file://{folder}/", results_path=results), run_id=night(1))
    with pytest.raises(DeepgramError, match="sql_conn_id or, without one, its results_path"):
        DeepgramNewObjectsTrigger(source=f"file://{folder}/")
    trigger = DeepgramNewObjectsTrigger(source=f"file://{folder}/", results_path=results, poll_interval=0.1)
    classpath, kwargs = trigger.serialize()
    assert kwargs["results_path"] == results and kwargs["sql_conn_id"] is None

    async def first_event(trigger) -> dict | None:
        events = trigger.run()
        try:
            return (await asyncio.wait_for(events.__anext__(), timeout=1.5)).payload
        except asyncio.TimeoutError:
            return None
        finally:
            await events.aclose()

    assert asyncio.run(first_event(trigger)) is None  # both read completely by the operator
    (folder / "c.txt").write_text(NEUTRAL)
    (folder / "a.txt").write_text("Changed my mind: it is awful.")
    fired = asyncio.run(first_event(trigger))
    assert fired is not None and (fired["count"], fired["uris"]) == (
        2,
        [f"file://{folder}/a.txt", f"file://{folder}/c.txt"],
    )
    # A restarted triggerer (the same kwargs) does not fire again for the objects announced ...
    assert asyncio.run(first_event(DeepgramNewObjectsTrigger(**kwargs))) is None
    # ... and the operator, run on the event, reads exactly those two.
    manifest, sent = requests_during(
        deepgram_conn,
        lambda: run(
            make_operator(source=f"file://{folder}/", results_path=results, xcom_output="manifest"), run_id=night(2)
        ),
    )
    assert (sent, manifest["unchanged"]) == (2, 1)


# ---------------------------------------------------------------------- a killed night


def test_a_night_killed_half_way_costs_the_next_night_little_and_the_one_after_nothing(
    tmp_path, monkeypatch, deepgram_emulator_factory
):
    """No retry of the killed night: the next DAG run reads the history the killed try left, not its task folder."""
    documents, concurrency, latency, jitter = 400, 4, 0.1, 0.2  # killed 5 s in: stores have happened
    write_documents(tmp_path / "in", documents)
    spec = KillSpec.under(tmp_path, "results_path", "worker", concurrency)
    slow = deepgram_emulator_factory(latency=latency, latency_jitter=jitter, max_concurrency=50)
    fast = deepgram_emulator_factory(max_concurrency=50)
    sent_before_kill = kill_part_way(spec, slow, documents // 2)
    for name, value in connection_env(spec, fast).items():
        monkeypatch.setenv(name, value)
    manifest, sent = requests_during(fast, lambda: run(make_operator(**spec.operator_kwargs()), run_id=night(2)))
    fastest_rate = concurrency / (latency * (1 - jitter))
    bound = concurrency + min(WRITE_BATCH_SIZE, math.ceil(fastest_rate * (WRITE_INTERVAL + 1.0)))
    print(
        f"\nkilled after {sent_before_kill} requests; the next night sent {sent}; re-paid {sent_before_kill + sent - documents} (bound {bound})"
    )
    assert manifest["scored"] == sent and manifest["scored"] + manifest["skipped"] == documents
    assert 0 <= sent_before_kill + sent - documents <= bound
    # Every document's score is in the parts of one night or the other, once.
    scored = [line["source"] for line in part_lines(Path(spec.results)) if line["status"] == "scored"]
    assert len(scored) == len(set(scored)) == documents
    # The night after: every object read completely: nothing read, nothing paid.
    manifest, sent = requests_during(fast, lambda: run(make_operator(**spec.operator_kwargs()), run_id=night(3)))
    assert (sent, manifest["unchanged"]) == (0, documents)
