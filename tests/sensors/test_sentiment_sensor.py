"""DeepgramSentimentSensor: file:// storage, templating, only-unscored with SQLite, reschedule mode."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import DAG, ObjectStoragePath, PokeReturnValue

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.sensors.sentiment import DeepgramSentimentSensor
from airflow_provider_dgsentiment.storage import sources as sources_module
from airflow_provider_dgsentiment.storage.sources import SensedObjects, find_objects
from airflow_provider_dgsentiment.storage.warehouse import LOOKUP_BATCH_SIZE, WarehouseWriter
from tests.support.sensor_runs import store_loaded

SQL_CONN_ID = "dgs_sensor_sqlite"


def make_sensor(**kwargs) -> DeepgramSentimentSensor:
    """Build the sensor inside a DAG, as users do."""
    kwargs.setdefault("task_id", "wait")
    with DAG(dag_id="test_sentiment_sensor", schedule=None):
        return DeepgramSentimentSensor(**kwargs)


def poke(sensor: DeepgramSentimentSensor, params: dict | None = None) -> PokeReturnValue:
    """Render the templated fields and poke once, the way the task runner does."""
    context = {"params": params or {}, "run_id": "manual__test"}
    sensor.render_template_fields(context)
    return sensor.poke(context)


def store_scored(sources: list[str], averages_table: str = "deepgram_sentiment_averages") -> None:
    """Scored and loaded, as the operator leaves them (rows and complete reads in the load history)."""
    store_loaded(SQL_CONN_ID, sources, averages_table)


@pytest.fixture
def inbox(tmp_path) -> Path:
    """A folder with b.txt, a.txt, a hidden file and a sub-folder holding c.txt."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second")
    (folder / "a.txt").write_text("first")
    (folder / ".hidden.txt").write_text("never counts")
    (folder / "sub" / "c.txt").write_text("third")
    return folder


@pytest.fixture
def sqlite_db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "scores.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


# ---------------------------------------------------------------------- construction


def test_template_fields_and_init_store_arguments_verbatim():
    assert DeepgramSentimentSensor.template_fields == (
        "source",
        "source_conn_id",
        "sql_conn_id",
        "averages_table",
        "results_path",
        "results_conn_id",
        "format",
        "text_field",
        "id_field",
        "key_namespace",
        "claims",
    )
    assert isinstance(DeepgramSentimentSensor.template_fields, tuple)
    # Nothing is checked at construction: a template or a bad value is stored as given.
    sensor = make_sensor(
        source="{{ params.p }}", source_conn_id="{{ params.c }}", min_objects=0, averages_table="no; way"
    )
    assert (sensor.source, sensor.source_conn_id, sensor.min_objects, sensor.averages_table) == (
        "{{ params.p }}",
        "{{ params.c }}",
        0,
        "no; way",
    )
    assert sensor.sql_conn_id is None


def test_reschedule_mode_is_accepted():
    sensor = make_sensor(source="file:///tmp/x/*.txt", mode="reschedule", poke_interval=5, timeout=60)
    assert sensor.mode == "reschedule"
    assert sensor.reschedule is True


# ---------------------------------------------------------------------- poke on file://


def test_poke_waits_until_min_objects_then_returns_sorted_uris(inbox):
    sensor = make_sensor(source=f"file://{inbox}/*.txt", min_objects=3)
    first = poke(sensor)
    assert isinstance(first, PokeReturnValue)
    assert not first  # two visible objects: keep waiting
    assert first.is_done is False and first.xcom_value is None

    (inbox / "0.txt").write_text("zeroth")
    second = poke(sensor)
    assert second.is_done is True
    assert second.xcom_value == [f"file://{inbox}/0.txt", f"file://{inbox}/a.txt", f"file://{inbox}/b.txt"]


def test_prefix_counts_every_object_under_it_recursively(inbox):
    result = poke(make_sensor(source=f"file://{inbox}/"))
    assert result.xcom_value == [f"file://{inbox}/a.txt", f"file://{inbox}/b.txt", f"file://{inbox}/sub/c.txt"]


def test_nothing_matching_keeps_waiting(tmp_path):
    result = poke(make_sensor(source=f"file://{tmp_path}/not-there-yet/*.txt"))
    assert result.is_done is False


def test_list_input_is_merged_deduplicated_and_sorted(inbox):
    sensor = make_sensor(
        source=[f"file://{inbox}/sub/*.txt", f"file://{inbox}/b.txt", ObjectStoragePath(f"file://{inbox}/b.txt")],
        min_objects=2,
    )
    assert poke(sensor).xcom_value == [f"file://{inbox}/b.txt", f"file://{inbox}/sub/c.txt"]


def test_templates_render_before_poking(inbox):
    sensor = make_sensor(source="{{ params.folder }}/*.txt", source_conn_id="{{ params.storage or '' }}", min_objects=2)
    result = poke(sensor, params={"folder": f"file://{inbox}", "storage": None})
    assert sensor.source == f"file://{inbox}/*.txt"
    assert sensor.source_conn_id == ""
    assert result.xcom_value == [f"file://{inbox}/a.txt", f"file://{inbox}/b.txt"]


def test_poke_logs_counts_and_pattern(inbox, log_text):
    poke(make_sensor(source=f"file://{inbox}/*.txt", min_objects=5))
    assert f"file://{inbox}/*.txt matches 2 object(s) (need 5)" in log_text()


# ---------------------------------------------------------------------- only unscored


def test_only_unscored_objects_count(inbox, sqlite_db):
    sensor = make_sensor(source=f"file://{inbox}/", sql_conn_id=SQL_CONN_ID, min_objects=2)
    # No averages table yet: nothing is scored, every match counts.
    assert poke(sensor).xcom_value == [f"file://{inbox}/a.txt", f"file://{inbox}/b.txt", f"file://{inbox}/sub/c.txt"]
    assert not sqlite_db.exists() or "deepgram_sentiment_averages" not in _tables(sqlite_db)

    store_scored([f"file://{inbox}/a.txt", "s3://elsewhere/a.txt"])
    assert poke(sensor).xcom_value == [f"file://{inbox}/b.txt", f"file://{inbox}/sub/c.txt"]

    store_scored([f"file://{inbox}/b.txt"])
    waiting = poke(sensor)  # one unscored object, two needed
    assert waiting.is_done is False


def test_while_every_match_is_scored_the_sensor_keeps_waiting(inbox, sqlite_db, log_text):
    sources = [f"file://{inbox}/a.txt", f"file://{inbox}/b.txt"]
    store_scored(sources)
    sensor = make_sensor(source=f"file://{inbox}/*.txt", sql_conn_id=SQL_CONN_ID)
    assert poke(sensor).is_done is False
    assert (
        "matches 2 object(s), 2 unchanged since their last complete read into deepgram_sentiment_averages, "
        "0 new or changed to read (need 1)"
    ) in log_text()

    (inbox / "a.txt").write_text("first, rewritten")  # a rewritten object is read again: it counts
    assert poke(sensor).xcom_value == [f"file://{inbox}/a.txt"]

    (inbox / "new.txt").write_text("fresh")
    assert poke(sensor).xcom_value == [f"file://{inbox}/a.txt", f"file://{inbox}/new.txt"]


def test_only_unscored_with_templated_table_name(inbox, sqlite_db):
    store_scored([f"file://{inbox}/a.txt"], averages_table="nightly_averages")
    sensor = make_sensor(
        source=f"file://{inbox}/*.txt", sql_conn_id="{{ params.sql }}", averages_table="{{ params.table }}"
    )
    result = poke(sensor, params={"sql": SQL_CONN_ID, "table": "nightly_averages"})
    assert result.xcom_value == [f"file://{inbox}/b.txt"]
    # The default table does not exist in this database: there, nothing is scored.
    assert poke(make_sensor(source=f"file://{inbox}/*.txt", sql_conn_id=SQL_CONN_ID)).xcom_value == [
        f"file://{inbox}/a.txt",
        f"file://{inbox}/b.txt",
    ]


def test_find_objects_is_usable_without_the_sensor(inbox, sqlite_db):
    store_scored([f"file://{inbox}/b.txt"])
    sensed = find_objects(f"file://{inbox}/*.txt", None, sql_conn_id=SQL_CONN_ID)
    assert sensed == SensedObjects(matched=2, uris=[f"file://{inbox}/a.txt"], scored=1, records=0, unknown=1)
    assert find_objects(f"file://{inbox}/*.txt") == SensedObjects(
        matched=2, uris=[f"file://{inbox}/a.txt", f"file://{inbox}/b.txt"]
    )


def test_known_sources_batches_lookups_and_treats_a_missing_table_as_empty(sqlite_db):
    many = [f"s3://bucket/doc-{index:05d}.txt" for index in range(LOOKUP_BATCH_SIZE + 20)]
    with WarehouseWriter(SQL_CONN_ID) as writer:
        assert writer.known_sources(many) == set()  # no table yet
        writer.ensure_tables()
        assert writer.known_sources(many) == set()
    store_scored(many[:3] + many[-2:], averages_table="deepgram_sentiment_averages")
    with WarehouseWriter(SQL_CONN_ID) as writer:
        assert writer.known_sources(many + many[:1] + ["s3://bucket/other.txt"]) == set(many[:3] + many[-2:])
        assert writer.known_sources([]) == set()


def test_known_sources_binds_values_as_parameters(sqlite_db):
    tricky = "file:///in/it's; DROP TABLE deepgram_sentiment_averages; --.txt"
    store_scored([tricky])
    with WarehouseWriter(SQL_CONN_ID) as writer:
        assert writer.known_sources([tricky, "file:///in/x.txt"]) == {tricky}
    assert "deepgram_sentiment_averages" in _tables(sqlite_db)


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# ---------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": ""}, "source must name a URI, a glob or a prefix, got nothing"),
        ({"source": []}, "source must name a URI, a glob or a prefix, got nothing"),
        ({"source": ["file:///a.txt", 3]}, "source[1] must be a URI string or ObjectStoragePath, got 3"),
        ({"source": None}, "source must be a URI, an ObjectStoragePath or a list of those, got NoneType"),
        ({"source": "file:///a/*.txt", "min_objects": 0}, "min_objects must be a whole number of at least 1, got 0"),
        (
            {"source": "file:///a/*.txt", "min_objects": "2"},
            "min_objects must be a whole number of at least 1, got '2'",
        ),
        ({"source": "file:///a/*.txt", "min_objects": True}, "min_objects must be a whole number of at least 1"),
        (
            {"source": "file:///a/*.txt", "sql_conn_id": SQL_CONN_ID, "averages_table": "x; DROP TABLE y"},
            "averages_table 'x; DROP TABLE y' is not a valid table name",
        ),
    ],
)
def test_bad_arguments_fail_clearly_on_poke_and_execute(kwargs, message):
    sensor = make_sensor(**kwargs)
    with pytest.raises(DeepgramConfigurationError) as poked:
        sensor.poke({})
    assert message in str(poked.value)
    with pytest.raises(DeepgramConfigurationError) as executed:
        sensor.execute({})
    assert message in str(executed.value)


def test_listing_error_names_the_source(monkeypatch):
    def broken(entry, conn_id, log, versions):
        raise PermissionError("access denied")

    monkeypatch.setattr(sources_module, "_expand", broken)
    expected = r"Could not list source s3://bucket/in/\*.txt: PermissionError: access denied"
    with pytest.raises(DeepgramError, match=expected):
        make_sensor(source="s3://bucket/in/*.txt").poke({})


def test_sql_conn_that_is_not_a_sql_connection_is_refused(inbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", json.dumps({"conn_type": "deepgram", "password": "k"}))
    with pytest.raises(DeepgramConfigurationError, match="not a SQL"):
        make_sensor(source=f"file://{inbox}/*.txt", sql_conn_id="not_sql").poke({})


# ---------------------------------------------------------------------- execute in reschedule mode


class FakeTaskInstance:
    """The one thing a reschedule-mode sensor asks its task instance: when it first poked."""

    # Airflow 2's BaseSensorOperator.execute reads these and looks the first try's start up in the DB.
    dag_id, task_id, run_id, map_index, max_tries = "test_sensor", "sense", "manual__test", -1, 0

    def __init__(self, first_reschedule_date=None) -> None:
        self.first_reschedule_date = first_reschedule_date

    def get_first_reschedule_date(self, context):
        return self.first_reschedule_date


def execute(sensor: DeepgramSentimentSensor, first_reschedule_date=None):
    context = {"params": {}, "run_id": "manual__test", "ti": FakeTaskInstance(first_reschedule_date)}
    sensor.render_template_fields(context)
    with pytest.MonkeyPatch.context() as patch:
        import airflow.sensors.base as sensor_base

        # Airflow 2 reads the first poke's time from TaskReschedule rows.
        if hasattr(sensor_base, "_orig_start_date"):
            patch.setattr(sensor_base, "_orig_start_date", lambda **_: first_reschedule_date)
        return sensor.execute(context)


def test_reschedule_mode_gives_the_slot_back_then_returns_the_uris(inbox):
    try:
        from airflow.sdk.exceptions import AirflowRescheduleException
    except ImportError:  # Airflow 2
        from airflow.exceptions import AirflowRescheduleException

    sensor = make_sensor(
        source=f"file://{inbox}/*.txt", min_objects=3, mode="reschedule", poke_interval=30, timeout=600
    )
    before = datetime.now(timezone.utc)
    with pytest.raises(AirflowRescheduleException) as rescheduled:
        execute(sensor)
    assert before + timedelta(seconds=29) <= rescheduled.value.reschedule_date <= before + timedelta(seconds=60)

    (inbox / "c.txt").write_text("third")
    assert execute(sensor, first_reschedule_date=before) == [
        f"file://{inbox}/a.txt",
        f"file://{inbox}/b.txt",
        f"file://{inbox}/c.txt",
    ]


def test_only_unscored_sensor_times_out_while_everything_is_scored(inbox, sqlite_db):
    try:
        from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException
    except ImportError:  # Airflow 2
        from airflow.exceptions import AirflowSensorTimeout, AirflowSkipException

    store_scored([f"file://{inbox}/a.txt", f"file://{inbox}/b.txt"])
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=120)
    kwargs = {"source": f"file://{inbox}/*.txt", "sql_conn_id": SQL_CONN_ID, "mode": "reschedule", "timeout": 60}
    with pytest.raises(AirflowSensorTimeout, match="exceeds the specified timeout of 60"):
        execute(make_sensor(**kwargs), first_reschedule_date=long_ago)
    with pytest.raises(AirflowSkipException):
        execute(make_sensor(soft_fail=True, **kwargs), first_reschedule_date=long_ago)


def test_bad_arguments_fail_even_with_soft_fail(inbox):
    sensor = make_sensor(source=f"file://{inbox}/*.txt", min_objects=-1, soft_fail=True, mode="reschedule")
    with pytest.raises(DeepgramConfigurationError, match="min_objects"):
        execute(sensor)


def test_the_old_argument_names_keep_working_with_a_deprecation_warning(inbox):
    from airflow.exceptions import AirflowProviderDeprecationWarning

    with pytest.warns(AirflowProviderDeprecationWarning, match=r"path=\.\.\.\) is deprecated: use source="):
        sensor = make_sensor(path=f"file://{inbox}/*.txt", min_objects=2)
    with pytest.warns(AirflowProviderDeprecationWarning, match="use source_conn_id="):
        assert make_sensor(source=f"file://{inbox}/*.txt", conn_id="aws_x").source_conn_id == "aws_x"
    assert sensor.source == f"file://{inbox}/*.txt"
    assert poke(sensor).xcom_value == [f"file://{inbox}/a.txt", f"file://{inbox}/b.txt"]
    with pytest.raises(DeepgramConfigurationError, match="not both"):
        make_sensor(source="file:///a/*.txt", path="file:///b/*.txt")


def test_counts_output_stays_small_at_any_number_of_objects(tmp_path):
    for i in range(2000):
        (tmp_path / f"{i:04}.txt").write_text("x")
    result = poke(make_sensor(source=f"file://{tmp_path}/*.txt", xcom_output="counts"))
    assert result.is_done
    assert result.xcom_value == {
        "source": [f"file://{tmp_path}/*.txt"],
        "matched": 2000,
        "scored": 0,
        "to_score": 2000,
        "records": 0,
        "unknown": 0,
    }
    assert len(json.dumps(result.xcom_value)) < 200


def test_special_files_never_count(tmp_path):
    import os

    (tmp_path / "a.txt").write_text("real")
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "linked").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    result = poke(make_sensor(source=f"file://{tmp_path}/*.txt"))
    assert result.xcom_value == [f"file://{tmp_path}/a.txt", f"file://{tmp_path}/link.txt"]
