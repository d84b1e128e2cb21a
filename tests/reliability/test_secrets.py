"""The API key stays secret through real DAG runs: ``airflow dags test`` in subprocesses.

A distinctive key is used for every run of the example DAGs ``deepgram_sentiment_quickstart``
and ``deepgram_sentiment_files_to_sql`` (emulator accepting it), plus one run of the
files-to-SQL DAG against an emulator that expects a different key, so the task fails with
401. Afterwards the key must be in no captured stdout/stderr (where ``dags test`` writes
the task logs and the exception), no file under ``AIRFLOW_HOME`` (task log files, the
metadata DB with its XCom, rendered-fields and dag-run tables), no XCom value and no row of
the result tables.

That plain ``http://`` to a non-loopback host is refused (so the key never travels
unencrypted) is covered in ``tests/hooks/test_sentiment_hook_http.py``
(``test_plain_http_refused_for_remote_host``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO_ROOT / "example_dags"
SECRET_KEY = "dg-SECRET-4f9c1e7a"
OTHER_KEY = "emulator-expects-this-other-key"
SQLITE_CONN_ID = "dgsentiment_sqlite"  # the files-to-SQL DAG's default
DOCUMENTS = {
    "review-1.txt": "Fantastic hotel. The staff were friendly and the room was spotless!",
    "review-2.txt": "The room was dirty and the staff were rude. Never again.",
    "memo-3.txt": "The quarterly report is attached. The meeting starts at nine.",
}
RUN_TIMEOUT = 240


def airflow_env(home: Path, dags: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env.pop("DEEPGRAM_API_KEY", None)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **extra,
        }
    )
    return env


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    """``airflow db migrate`` once in a scratch AIRFLOW_HOME; each run starts from a copy of the result."""
    home = tmp_path_factory.mktemp("airflow-template")
    dags = home / "dags"
    dags.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=airflow_env(home, dags),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home / "airflow.db"


@dataclass
class DagRun:
    """One ``airflow dags test`` subprocess and everything it left behind."""

    name: str
    home: Path
    scores_db: Path
    process: subprocess.Popen | None = None
    output: str = ""
    #: Counters of the emulator the run talked to (the two successful runs share one).
    emulator_stats: dict = field(default_factory=dict)

    def metadata(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.home / "airflow.db") as connection:
            return connection.execute(sql).fetchall()


def start_dag_test(
    name: str, dag_id: str, migrated_db: Path, tmp_path: Path, server, key: str, conf: dict | None = None
) -> DagRun:
    home = tmp_path / name / "airflow-home"
    dags = home / "dags"
    dags.mkdir(parents=True)
    for file_name in ("deepgram_sentiment_quickstart.py", "deepgram_sentiment_files_to_sql.py"):
        (dags / file_name).symlink_to(EXAMPLE_DAGS / file_name)  # the real example DAGs, nothing else
    shutil.copy(migrated_db, home / "airflow.db")
    run = DagRun(name=name, home=home, scores_db=tmp_path / name / "scores.db")
    env = airflow_env(
        home,
        dags,
        AIRFLOW_CONN_DEEPGRAM_DEFAULT=json.dumps({"conn_type": "deepgram", "host": server.url, "password": key}),
        **{f"AIRFLOW_CONN_{SQLITE_CONN_ID.upper()}": json.dumps({"conn_type": "sqlite", "host": str(run.scores_db)})},
    )
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if conf is not None:
        command += ["-c", json.dumps(conf)]
    run.process = subprocess.Popen(
        command, env=env, cwd=tmp_path / name, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return run


def finish(run: DagRun) -> DagRun:
    try:
        run.output = run.process.communicate(timeout=RUN_TIMEOUT)[0]
    except subprocess.TimeoutExpired:
        run.process.kill()
        run.output = run.process.communicate()[0]
        pytest.fail(f"{run.name}: airflow dags test did not finish in {RUN_TIMEOUT}s:\n{run.output[-3000:]}")
    return run


def files_containing(root: Path, secret: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``secret``."""
    return [str(path) for path in sorted(root.rglob("*")) if path.is_file() and secret in path.read_bytes()]


def dump_sqlite(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return "\n".join(connection.iterdump())


@pytest.fixture(scope="module")
def dag_runs(migrated_db, tmp_path_factory) -> dict[str, DagRun]:
    """The three DAG runs, started together (each in its own AIRFLOW_HOME) and awaited."""
    from airflow_provider_dgsentiment.emulator.server import EmulatorConfig, EmulatorServer

    tmp_path = tmp_path_factory.mktemp("dag-runs")
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name, text in DOCUMENTS.items():
        (inbox / name).write_text(text)
    accepting = EmulatorServer(EmulatorConfig(api_key=SECRET_KEY)).start()
    refusing = EmulatorServer(EmulatorConfig(api_key=OTHER_KEY)).start()
    try:
        conf = {"source": f"file://{inbox}/*.txt"}
        runs = [
            start_dag_test("quickstart", "deepgram_sentiment_quickstart", migrated_db, tmp_path, accepting, SECRET_KEY),
            start_dag_test(
                "files_to_sql", "deepgram_sentiment_files_to_sql", migrated_db, tmp_path, accepting, SECRET_KEY, conf
            ),
            start_dag_test(
                "wrong_key", "deepgram_sentiment_files_to_sql", migrated_db, tmp_path, refusing, SECRET_KEY, conf
            ),
        ]
        finished = {run.name: finish(run) for run in runs}
        finished["quickstart"].emulator_stats = finished["files_to_sql"].emulator_stats = accepting.stats()
        finished["wrong_key"].emulator_stats = refusing.stats()
        return finished
    finally:
        for run in locals().get("runs", []):
            if run.process.poll() is None:
                run.process.kill()
        accepting.stop()
        refusing.stop()


def test_successful_runs_used_the_key(dag_runs):
    quickstart, files = dag_runs["quickstart"], dag_runs["files_to_sql"]
    for run in (quickstart, files):
        assert run.metadata("SELECT state FROM dag_run") == [("success",)], run.output[-4000:]
    # The key reached the emulator (which accepts only it): 3 inline texts + 3 files scored.
    assert quickstart.emulator_stats["scored_texts"] == 6
    assert "text[1]: negative (" in quickstart.output
    assert "review-2.txt: negative (" in files.output


def test_failing_run_fails_with_401_naming_no_key(dag_runs):
    run = dag_runs["wrong_key"]
    assert run.metadata("SELECT state FROM dag_run") == [("failed",)]
    # Only the 3 requests already in flight were sent; all got 401.
    assert set(run.emulator_stats["by_status"]) == {"401"} and run.emulator_stats["requests"] <= 3
    assert "DeepgramAuthenticationError" in run.output
    assert "Deepgram API error 401 INVALID_AUTH: Invalid credentials." in run.output
    assert "stopped the run: 3 of 3 document(s) left unscored" in run.output
    assert SECRET_KEY not in run.output and OTHER_KEY not in run.output
    print("\n".join(line for line in run.output.splitlines() if "DeepgramAuthenticationError" in line))


@pytest.mark.parametrize("name", ["quickstart", "files_to_sql", "wrong_key"])
def test_key_is_nowhere(dag_runs, name):
    run = dag_runs[name]
    secret = SECRET_KEY.encode()
    # Captured stdout/stderr: the task logs and, for the failing run, the exception and traceback.
    assert "Scoring 3 document(s)" in run.output
    assert SECRET_KEY not in run.output
    # Every file under AIRFLOW_HOME: task log files under logs/, airflow.cfg, the metadata DB (XCom,
    # rendered template fields, dag-run conf, serialized DAGs). `airflow dags test` runs the tasks in
    # process and writes their logs to stdout (checked above), so logs/ is normally empty.
    assert files_containing(run.home, secret) == []
    assert str(run.home / "airflow.db") in files_containing(run.home, b"Scoring 3 document(s)") or files_containing(
        run.home, b"deepgram_sentiment_"
    ), "the byte scan does not see into the metadata DB"
    # XCom values, read from the metadata DB.
    xcom = run.metadata("SELECT task_id, value FROM xcom")
    if name != "wrong_key":
        assert xcom, "the run pushed no XCom"
        assert any(
            b"request_id" in bytes(value) if isinstance(value, bytes) else "request_id" in str(value)
            for _, value in xcom
        )
    assert all(SECRET_KEY not in (value.decode() if isinstance(value, bytes) else str(value)) for _, value in xcom)
    # The result tables, every row of every table.
    if name == "files_to_sql":
        dump = dump_sqlite(run.scores_db)
        assert "review-1.txt" in dump and "INSERT INTO" in dump
        assert SECRET_KEY not in dump
    if run.scores_db.exists():
        assert files_containing(run.scores_db.parent, secret) == []
