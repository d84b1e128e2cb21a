"""Enrichment that knows what it has done (issue 21, SPEC section 15), through real runs.

Records keyed by their own id across dated exports, the load history shared by the operator
and the sensor, every outcome in SQL (known failures, empties), the in-place migration of a
0.2 table, dotted fields, deferrable and mapped runs. Requests come from the emulator's own
counters; reads of S3 objects from the S3-compatible server's own recording.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramError
from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
from tests.conftest import NEGATIVE, NEUTRAL, POSITIVE, SQL_CONN_ID, require_service
from tests.integration.conftest import s3_bucket  # noqa: F401  (fixture)
from tests.support.operator_runs import (
    context,
    defer,
    make_operator,
    requests_during,
    resume,
    run,
    table_count,
    table_rows,
    trigger_event,
)
from tests.support.s3_requests import S3Requests

AVERAGES = "deepgram_sentiment_averages"
SEGMENTS = "deepgram_sentiment_segments"
LOADS = "deepgram_sentiment_loads"
UNSCORED = "deepgram_sentiment_unscored"
#: make_operator's default key namespace: ``<dag_id>.<task_id>``.
NS = "test_sentiment_operator.score"
#: Tickets per export in the week test (the benchmark runs the full 10,000: benchmarks/nightly.py).
WEEK_TICKETS = 1000
WEEK_DAYS = 7


def jsonl_gz(rows: list[dict]) -> bytes:
    return gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode("utf-8"), compresslevel=1)


def write_export(folder: Path, name: str, rows: list[dict]) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl_gz(rows))
    return path


def ticket_text(number: int, version: int) -> str:
    moods = ["The agent fixed it at once, wonderful service.", "Still broken after three calls, awful.", NEUTRAL]
    return f"Ticket {number}, note {version}: {moods[(number + version) % 3]}"


# ---------------------------------------------------------------------- a week of dated exports


def test_week_of_dated_exports_sends_exactly_the_changed_and_new_records(deepgram_conn, sqlite_db, tmp_path):
    """7 dated exports of every ticket, 1% changed and 1% new each day: each night pays for those 2% only."""
    tickets = {f"T-{number:05d}": ticket_text(number, 0) for number in range(WEEK_TICKETS)}
    step = WEEK_TICKETS // 100
    figures = []
    ever_changed: set[str] = set()
    for day in range(1, WEEK_DAYS + 1):
        changed: set[str] = set()
        if day > 1:
            keys = sorted(tickets)
            for key in keys[day * 7 % step :: 100][:step]:  # 1% of the tickets changed
                tickets[key] = ticket_text(int(key[2:]), day)
                changed.add(key)
            for number in range(len(keys), len(keys) + step):  # 1% new tickets
                tickets[f"T-{number:05d}"] = ticket_text(number, day)
                changed.add(f"T-{number:05d}")
        ever_changed |= changed
        rows = [{"ticket_id": key, "body": text} for key, text in tickets.items()]
        export = write_export(tmp_path, f"exports/2024-05-0{day}/tickets.jsonl.gz", rows)
        operator = make_operator(
            source=f"file://{export}",
            id_field="ticket_id",
            text_field="body",
            sql_conn_id=SQL_CONN_ID,
            xcom_output="manifest",
        )
        manifest, sent = requests_during(deepgram_conn, lambda operator=operator: run(operator))
        assert not isinstance(manifest, Exception), manifest
        expected = len(tickets) if day == 1 else len(changed)
        rows_stored = table_count(sqlite_db, AVERAGES)
        figures.append((day, len(rows), sent, rows_stored))
        assert sent == expected, f"day {day}"
        assert (manifest["documents"], manifest["scored"], manifest["skipped"]) == (len(rows), sent, len(rows) - sent)
        assert rows_stored == len(tickets)  # one row per ticket, however many exports named it
    print("day, records in the export, requests, rows:", figures)
    with sqlite3.connect(sqlite_db) as connection:
        sources = [row[0] for row in connection.execute(f"SELECT source FROM {AVERAGES}")]
        latest = dict(connection.execute(f"SELECT record_key, location FROM {AVERAGES}").fetchall())
    assert len(sources) == len(set(sources)) == len(tickets)
    assert all(source.startswith(f"{NS}#T-") for source in sources)
    # The location is where the stored content was read: a ticket changed on day 7 was read there.
    last_changed = sorted(changed)[0]
    assert latest[last_changed].startswith(f"file://{tmp_path}/exports/2024-05-07/tickets.jsonl.gz#")
    never_changed = next(key for key in sorted(tickets) if key not in ever_changed)
    assert latest[never_changed].startswith(f"file://{tmp_path}/exports/2024-05-01/")
    # Each export was read once, completely: seven loads of seven objects.
    assert table_count(sqlite_db, LOADS) == WEEK_DAYS


def test_two_namespaces_do_not_collide_and_one_namespace_is_shared(deepgram_conn, sqlite_db, tmp_path):
    orders = write_export(tmp_path, "orders.jsonl.gz", [{"id": "1", "text": POSITIVE}, {"id": "2", "text": NEGATIVE}])
    people = write_export(tmp_path, "people.jsonl.gz", [{"id": "1", "text": NEGATIVE}])
    kwargs = {"id_field": "id", "sql_conn_id": SQL_CONN_ID, "xcom_output": "summary"}
    _, sent = requests_during(deepgram_conn, lambda: run(make_operator(source=f"file://{orders}", **kwargs)))
    assert sent == 2
    _, sent = requests_during(
        deepgram_conn, lambda: run(make_operator(task_id="people", source=f"file://{people}", **kwargs))
    )
    assert sent == 1  # id 1 of another task's namespace is another entity
    rows = {row["source"]: row["sentiment"] for row in table_rows(sqlite_db, AVERAGES)}
    assert rows == {f"{NS}#1": "positive", f"{NS}#2": "negative", "test_sentiment_operator.people#1": "negative"}

    # A task naming the same namespace shares the entities: same content, no request; and its
    # summary items of stored documents carry the stored label and score.
    again = write_export(tmp_path, "orders-again.jsonl.gz", [{"id": "1", "text": POSITIVE}])
    shared, sent = requests_during(
        deepgram_conn,
        lambda: run(make_operator(task_id="other", key_namespace=NS, source=f"file://{again}", **kwargs)),
    )
    assert sent == 0
    item = shared["items"][0]
    assert (item["source"], item["status"], item["sentiment"]) == (f"{NS}#1", "skipped", "positive")
    assert isinstance(item["sentiment_score"], float)


# ---------------------------------------------------------------------- unchanged objects are not read


def test_unchanged_objects_are_not_read_again_on_s3(deepgram_conn, sqlite_db, s3_bucket):  # noqa: F811
    endpoint = require_service("DGS_TEST_S3_ENDPOINT", "S3-compatible server")
    for index in range(20):
        s3_bucket.put(f"in/text-{index:02d}.txt", POSITIVE if index % 2 else NEGATIVE)
    s3_bucket.client.put_object(
        Bucket=s3_bucket.name,
        Key="in/tickets.jsonl.gz",
        Body=jsonl_gz([{"id": f"k{i}", "text": NEUTRAL} for i in range(30)]),
    )
    s3_bucket.put("in/empty.txt", "   ")
    kwargs = {
        "source": s3_bucket.uri("in/"),
        "id_field": "id",
        "sql_conn_id": SQL_CONN_ID,
        "xcom_output": "manifest",
    }
    with S3Requests(endpoint, s3_bucket.name) as first_reads:
        first, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert not isinstance(first, Exception), first
    assert sent == 20 + 30
    assert set(first_reads.objects_read()) == {f"in/text-{i:02d}.txt" for i in range(20)} | {
        "in/tickets.jsonl.gz",
        "in/empty.txt",
    }

    with S3Requests(endpoint, s3_bucket.name) as second_reads:
        second, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    counts = second_reads.counts()
    print("unchanged night, S3 requests:", dict(counts))
    assert sent == 0
    assert counts["get_object"] == 0  # the listing alone: no GET of any object
    assert counts["list"] >= 1
    assert (second["documents"], second["skipped"], second["unchanged"]) == (22, 22, 22)

    s3_bucket.put("in/text-03.txt", "It broke again. I am furious.")  # a new version of one object
    with S3Requests(endpoint, s3_bucket.name) as third_reads:
        third, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    assert sent == 1
    assert set(third_reads.objects_read()) == {"in/text-03.txt"}
    assert (third["scored"], third["unchanged"]) == (1, 21)


# ---------------------------------------------------------------------- the sensor and the operator agree


def sensor_for(folder: Path, **kwargs) -> DeepgramSentimentSensor:
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id="test_sentiment_operator", schedule=None):
        return DeepgramSentimentSensor(
            task_id="wait",
            source=f"file://{folder}/",
            sql_conn_id=SQL_CONN_ID,
            id_field="id",
            key_namespace=NS,
            xcom_output="uris",
            **kwargs,
        )


def test_sensor_waits_while_nothing_is_new_then_counts_exactly_what_the_operator_reads(
    deepgram_conn, sqlite_db, tmp_path, log_text
):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.txt").write_text(POSITIVE)
    (folder / "b.txt").write_text(NEGATIVE)
    (folder / "empty.txt").write_text("  \n")
    (folder / "bad.txt").write_bytes("Café".encode("latin-1"))
    write_export(folder, "day-1.jsonl.gz", [{"id": "t1", "text": POSITIVE}, {"id": "t2", "text": NEUTRAL}])
    kwargs = {"source": f"file://{folder}/", "id_field": "id", "sql_conn_id": SQL_CONN_ID, "xcom_output": "summary"}
    first, _ = requests_during(deepgram_conn, lambda: run(make_operator(on_error="skip", **kwargs)))
    assert (first["scored"], first["failed"], first["skipped"]) == (4, 1, 1)

    # Scored texts, an export, an empty file and a bad file: nothing the operator would read.
    sensor = sensor_for(folder)
    sensor.render_template_fields(context())
    assert sensor.poke(context()).is_done is False
    assert "matches 5 object(s), 5 unchanged since their last complete read" in log_text()
    operator = make_operator(**kwargs)
    idle, sent = requests_during(deepgram_conn, lambda: run(operator))
    assert (sent, idle["unchanged"], idle["failed"]) == (0, 5, 0)  # the bad file does not fail it again

    # One text rewritten and one new export: the sensor fires for exactly those two ...
    (folder / "b.txt").write_text("On second thought, it works fine.")
    write_export(folder, "day-2.jsonl.gz", [{"id": "t2", "text": NEUTRAL}, {"id": "t3", "text": NEGATIVE}])
    fired = sensor.poke(context())
    assert fired.is_done is True
    assert fired.xcom_value == [f"file://{folder}/b.txt", f"file://{folder}/day-2.jsonl.gz"]
    print(log_text())
    # ... and the operator reads exactly those two (t2 unchanged in the new export: no request).
    result, sent = requests_during(deepgram_conn, lambda: run(make_operator(**kwargs)))
    read = [item["source"] for item in result["items"] if not item.get("reason", "").startswith("unchanged")]
    assert read == [f"file://{folder}/b.txt", f"{NS}#t2", f"{NS}#t3"]
    assert sent == 2
    assert result["unchanged"] == 5 - 1
    assert sensor.poke(context()).is_done is False  # and it is quiet again


def test_counts_give_records_for_shard_planning(deepgram_conn, sqlite_db, tmp_path):
    folder = tmp_path / "exports"
    path = write_export(folder, "big.jsonl.gz", [{"id": f"r{i}", "text": POSITIVE} for i in range(120)])
    run(make_operator(source=f"file://{folder}/", id_field="id", sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    rows = [{"id": f"r{i}", "text": POSITIVE if i else NEGATIVE} for i in range(130)]
    path.write_bytes(jsonl_gz(rows))  # re-exported: changed
    write_export(folder, "new.jsonl.gz", [{"id": "x", "text": NEUTRAL}])
    sensor = sensor_for(folder, min_objects=1)
    sensor.xcom_output = "counts"
    counts = sensor.poke(context()).xcom_value
    assert {key: counts[key] for key in ("matched", "scored", "to_score", "records", "unknown")} == {
        "matched": 2,
        "scored": 0,
        "to_score": 2,
        "records": 120,  # the changed export held 120 records when last read
        "unknown": 1,  # the new export was never read
    }


# ---------------------------------------------------------------------- every outcome in SQL


def test_a_bad_record_fails_one_night_and_is_a_known_failure_the_next(deepgram_conn, sqlite_db, tmp_path):
    good = [{"id": f"g{i}", "text": POSITIVE} for i in range(3)]
    bad = {"id": "b1", "text": {"oops": "not text"}}
    day_1 = write_export(tmp_path, "2024-05-01/tickets.jsonl.gz", [*good, bad])
    kwargs = {"id_field": "id", "sql_conn_id": SQL_CONN_ID, "xcom_output": "manifest"}
    error, sent = requests_during(deepgram_conn, lambda: run(make_operator(source=f"file://{day_1}", **kwargs)))
    assert isinstance(error, DeepgramError), error
    assert str(error) == (
        f"1 of 4 document(s) failed:\n  {NS}#b1: file://{day_1} line 4: field 'text' is an object, not text"
    )
    assert sent == 3
    [failure] = table_rows(sqlite_db, UNSCORED)
    assert (failure["source"], failure["record_key"], failure["status"]) == (f"{NS}#b1", "b1", "failed")
    assert failure["location"] == f"file://{day_1}#4" and "is an object, not text" in failure["error"]
    first_seen = failure["first_seen"]
    assert failure["last_seen"] == first_seen

    # The next night's export holds the same bad record: a known failure, not failing the run.
    day_2 = write_export(tmp_path, "2024-05-02/tickets.jsonl.gz", [*good, bad, {"id": "n1", "text": NEGATIVE}])
    manifest, sent = requests_during(deepgram_conn, lambda: run(make_operator(source=f"file://{day_2}", **kwargs)))
    assert not isinstance(manifest, Exception), manifest
    assert sent == 1  # only the new record
    assert (manifest["failed"], manifest["known_failed"], manifest["failures"]) == (1, 1, [])
    assert manifest["known_failures"][0]["source"] == f"{NS}#b1"
    [failure] = table_rows(sqlite_db, UNSCORED)
    assert failure["first_seen"] == first_seen and failure["last_seen"] > first_seen

    # retry_failed=True reads and sends every known failure again: a new failure, failing the task.
    day_3 = write_export(tmp_path, "2024-05-03/tickets.jsonl.gz", [*good, bad])
    error, _ = requests_during(
        deepgram_conn, lambda: run(make_operator(source=f"file://{day_3}", retry_failed=True, **kwargs))
    )
    assert isinstance(error, DeepgramError) and "1 of 4 document(s) failed" in str(error)

    # Fixed at the source: scored, and its unscored row is gone.
    fixed = write_export(tmp_path, "2024-05-04/tickets.jsonl.gz", [{"id": "b1", "text": POSITIVE}])
    _, sent = requests_during(deepgram_conn, lambda: run(make_operator(source=f"file://{fixed}", **kwargs)))
    assert sent == 1
    assert table_rows(sqlite_db, UNSCORED) == []


def test_empty_documents_are_recorded_and_a_missing_field_fails_the_file_once(deepgram_conn, sqlite_db, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "blank.txt").write_text("   ")
    wrong = write_export(tmp_path, "in/wrong.jsonl.gz", [{"id": f"r{i}", "body": POSITIVE} for i in range(200)])
    error, sent = requests_during(
        deepgram_conn,
        lambda: run(make_operator(source=f"file://{tmp_path}/in/", id_field="id", sql_conn_id=SQL_CONN_ID)),
    )
    assert isinstance(error, DeepgramError), error
    assert sent == 0
    # One failure for the file (not 200 copies), naming the fields its records have.
    assert str(error) == (
        f"1 of 2 document(s) failed:\n  file://{wrong}: text_field 'text' is in none of the first 100 record(s); "
        "they have the fields 'id', 'body'"
    )
    statuses = {row["source"]: row["status"] for row in table_rows(sqlite_db, UNSCORED)}
    assert statuses == {f"file://{tmp_path}/in/blank.txt": "empty", f"file://{wrong}": "failed"}


# ---------------------------------------------------------------------- 0.2 tables


def make_02_tables(db: Path, rows: list[tuple[str, str, str]]) -> None:
    """The two tables as 0.2 created them (no record_key, no location), with rows ``(source, fingerprint, task)``."""
    with sqlite3.connect(db) as connection:
        connection.execute(
            f"CREATE TABLE {AVERAGES} (source TEXT NOT NULL PRIMARY KEY, fingerprint TEXT NOT NULL, "
            "sentiment TEXT NOT NULL, sentiment_score DOUBLE PRECISION NOT NULL, segment_count INTEGER NOT NULL, "
            "input_tokens INTEGER, output_tokens INTEGER, model_uuid TEXT, language TEXT, request_id TEXT, "
            "dag_id TEXT, task_id TEXT, run_id TEXT, scored_at TIMESTAMP WITH TIME ZONE NOT NULL)"
        )
        connection.execute(
            f"CREATE TABLE {SEGMENTS} (source TEXT NOT NULL, segment_index INTEGER NOT NULL, text TEXT NOT NULL, "
            "start_word INTEGER NOT NULL, end_word INTEGER NOT NULL, sentiment TEXT NOT NULL, "
            "sentiment_score DOUBLE PRECISION NOT NULL, request_id TEXT, dag_id TEXT, task_id TEXT, run_id TEXT, "
            "scored_at TIMESTAMP WITH TIME ZONE NOT NULL, PRIMARY KEY (source, segment_index))"
        )
        for source, fingerprint, task in rows:
            connection.execute(
                f"INSERT INTO {AVERAGES} VALUES (?, ?, 'positive', 0.8, 1, 5, 5, 'm', 'en', 'r', "
                "'test_sentiment_operator', ?, 'old-run', '2024-04-30T00:00:00+00:00')",
                (source, fingerprint, task),
            )
            connection.execute(
                f"INSERT INTO {SEGMENTS} VALUES (?, 0, 'x', 0, 1, 'positive', 0.8, 'r', "
                "'test_sentiment_operator', ?, 'old-run', '2024-04-30T00:00:00+00:00')",
                (source, task),
            )


def test_a_02_table_is_migrated_in_place_and_nothing_is_paid_again(deepgram_conn, sqlite_db, tmp_path):
    from airflow_provider_dgsentiment.storage.sources import fingerprint

    old_export = f"file://{tmp_path}/2024-04-30/tickets.jsonl.gz"  # 0.2 named records by this object
    make_02_tables(
        sqlite_db,
        [
            (f"{old_export}#t1", fingerprint(POSITIVE), "score"),
            (f"{old_export}#t2", fingerprint(NEUTRAL), "score"),
            (f"{old_export}#t9", fingerprint(NEUTRAL), "another_task"),  # another task's: not ours
            ("file:///in/a.txt", fingerprint(POSITIVE), "score"),
        ],
    )
    export = write_export(
        tmp_path,
        "2024-05-01/tickets.jsonl.gz",
        [{"id": "t1", "text": POSITIVE}, {"id": "t2", "text": NEGATIVE}, {"id": "t9", "text": NEUTRAL}],
    )
    summary, sent = requests_during(
        deepgram_conn,
        lambda: run(
            make_operator(source=f"file://{export}", id_field="id", sql_conn_id=SQL_CONN_ID, xcom_output="summary")
        ),
    )
    assert not isinstance(summary, Exception), summary
    assert sent == 2  # t1 unchanged (stored by 0.2 under the old export's name): no request; t2 changed; t9 new here
    assert [(item["source"], item["status"]) for item in summary["items"]] == [
        (f"{NS}#t1", "skipped"),
        (f"{NS}#t2", "scored"),
        (f"{NS}#t9", "scored"),
    ]
    rows = {row["source"]: row for row in table_rows(sqlite_db, AVERAGES)}
    # Migrated in place: rows kept, keys filled from 0.2 names, locations unknown for them.
    assert rows[f"{old_export}#t1"]["record_key"] == "t1" and rows[f"{old_export}#t1"]["location"] is None
    assert rows["file:///in/a.txt"]["record_key"] is None
    # t2 changed: its 0.2 row (and its segments) were replaced by the entity's row; another task's t9 stays.
    assert f"{old_export}#t2" not in rows and rows[f"{NS}#t2"]["sentiment"] == "negative"
    assert f"{old_export}#t9" in rows and f"{NS}#t9" in rows
    with sqlite3.connect(sqlite_db) as connection:
        assert (
            connection.execute(f"SELECT COUNT(*) FROM {SEGMENTS} WHERE source = ?", (f"{old_export}#t2",)).fetchone()[0]
            == 0
        )


# ---------------------------------------------------------------------- nested fields


def test_dotted_fields_reach_into_nested_json_and_parquet_structs(deepgram_conn, sqlite_db, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    nested = [
        {"ticket": {"id": "n1", "body": POSITIVE}, "ticket.body": None},  # the literal key wins where it exists
        {"ticket": {"id": "n2", "body": NEGATIVE}},
    ]
    jsonl = write_export(tmp_path, "nested.jsonl.gz", nested)
    table = pa.table({"ticket": pa.array([{"id": "p1", "body": NEUTRAL}, {"id": "p2", "body": POSITIVE}])})
    parquet = tmp_path / "nested.parquet"
    pq.write_table(table, parquet)
    summary = run(
        make_operator(
            source=[f"file://{jsonl}", f"file://{parquet}"],
            text_field="ticket.body",
            id_field="ticket.id",
            sql_conn_id=SQL_CONN_ID,
            xcom_output="summary",
            on_error="skip",
        )
    )
    statuses = {item["source"]: (item["status"], item.get("error")) for item in summary["items"]}
    assert statuses[f"{NS}#n1"][0] == "failed" and "field 'ticket.body' is null" in statuses[f"{NS}#n1"][1]
    assert {key: value[0] for key, value in statuses.items()} == {
        f"{NS}#n1": "failed",
        f"{NS}#n2": "scored",
        f"{NS}#p1": "scored",
        f"{NS}#p2": "scored",
    }


# ---------------------------------------------------------------------- deferrable and mapped


def test_deferred_runs_share_the_entities_and_the_load_history(deepgram_conn, sqlite_db, tmp_path):
    day_1 = write_export(tmp_path, "d1/tickets.jsonl.gz", [{"id": "a", "text": POSITIVE}, {"id": "b", "text": NEUTRAL}])
    day_2 = write_export(
        tmp_path, "d2/tickets.jsonl.gz", [{"id": "a", "text": POSITIVE}, {"id": "b", "text": NEGATIVE}]
    )
    kwargs = {"id_field": "id", "sql_conn_id": SQL_CONN_ID, "xcom_output": "manifest", "deferrable": True}

    def deferred_run(source: str):
        deferred = defer(make_operator(source=source, **kwargs))
        return resume(deferred, trigger_event(deferred), source=source, **kwargs)

    first, sent = requests_during(deepgram_conn, lambda: deferred_run(f"file://{day_1}"))
    assert (sent, first["scored"]) == (2, 2)
    second, sent = requests_during(deepgram_conn, lambda: deferred_run(f"file://{day_2}"))
    assert (sent, second["scored"], second["skipped"]) == (1, 1, 1)  # only b changed
    again, sent = requests_during(deepgram_conn, lambda: deferred_run(f"file://{day_2}"))
    assert (sent, again["unchanged"]) == (0, 1)
    assert table_count(sqlite_db, AVERAGES) == 2
    assert table_count(sqlite_db, LOADS) == 2


def test_mapped_shards_share_the_namespace_and_pay_once(deepgram_conn, sqlite_db, tmp_path):
    def exports(day: str, changed: str) -> None:
        for part in range(4):
            rows = [{"id": f"p{part}-{i}", "text": POSITIVE} for i in range(5)]
            if changed == f"p{part}":
                rows[0]["text"] = NEGATIVE
            write_export(tmp_path, f"{day}/part-{part}.jsonl.gz", rows)

    def night(day: str) -> tuple[list[dict], int]:
        def shards() -> list[dict]:
            return [
                run(
                    make_operator(
                        source=f"file://{tmp_path}/{day}/",
                        shard=f"{index}/2",
                        id_field="id",
                        sql_conn_id=SQL_CONN_ID,
                        xcom_output="manifest",
                    ),
                    map_index=index,
                )
                for index in range(2)
            ]

        return requests_during(deepgram_conn, shards)

    exports("d1", changed="")
    manifests, sent = night("d1")
    assert sent == 20 and sum(manifest["scored"] for manifest in manifests) == 20
    exports("d2", changed="p2")
    manifests, sent = night("d2")
    assert sent == 1  # the one changed record of one part, whichever shard holds it
    assert sum(manifest["documents"] for manifest in manifests) == 20
    assert table_count(sqlite_db, AVERAGES) == 20


def test_a_sensor_given_the_operators_options_is_quiet_after_a_run_with_no_namespace_named(
    deepgram_conn, sqlite_db, tmp_path
):
    folder = tmp_path / "exports"
    write_export(folder, "x.jsonl.gz", [{"id": "1", "text": POSITIVE}])
    run(make_operator(source=f"file://{folder}/", id_field="id", sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    sensor = sensor_for(folder)
    sensor.key_namespace = None  # any namespace
    assert sensor.poke(context()).is_done is False
    sensor.id_field = None  # records keyed by line: read another way, so the operator would read it
    assert sensor.poke(context()).xcom_value == [f"file://{folder}/x.jsonl.gz"]


@pytest.mark.parametrize("skip_scored", [False])
def test_skip_scored_false_reads_and_sends_everything_again(deepgram_conn, sqlite_db, tmp_path, skip_scored):
    export = write_export(tmp_path, "e.jsonl.gz", [{"id": "1", "text": POSITIVE}])
    kwargs = {"source": f"file://{export}", "id_field": "id", "sql_conn_id": SQL_CONN_ID, "xcom_output": "none"}
    run(make_operator(**kwargs))
    _, sent = requests_during(deepgram_conn, lambda: run(make_operator(skip_scored=skip_scored, **kwargs)))
    assert sent == 1
    assert table_count(sqlite_db, AVERAGES) == 1
