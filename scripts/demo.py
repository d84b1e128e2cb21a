"""The README's demo: emulator + example DAGs + SQLite, then print the stored scores.

Run by ``make demo`` inside the project's venv. Everything stays on this machine:
the Deepgram emulator listens on 127.0.0.1, Airflow's metadata DB and the score
tables are SQLite files under ``.demo/``.

Steps:
1. start the emulator (``python -m airflow_provider_dgsentiment.emulator --port 0``);
2. ``airflow db migrate`` for a private AIRFLOW_HOME;
3. ``airflow dags test deepgram_sentiment_quickstart`` (inline text -> XCom);
4. ``airflow dags test deepgram_sentiment_files_to_sql`` over ``example_dags/sample_texts``
   (file:// -> SQLite), twice, to show the second run scores nothing new;
5. print the averages and segments tables.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"
EMULATOR_KEY = "demo-emulator-key"


def start_emulator() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_dgsentiment.emulator", "--port", "0", "--api-key", EMULATOR_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().strip()
    if "listening on " not in line:
        process.kill()
        raise SystemExit(f"demo: the emulator did not start: {line!r}")
    url = line.split("listening on ", 1)[1].strip()
    print(f"demo: Deepgram emulator at {url}")
    return process, url


def airflow(env: dict[str, str], *args: str) -> None:
    print(f"demo: airflow {' '.join(args)}")
    log_path = DEMO / f"airflow-{'-'.join(a for a in args[:3] if not a.startswith('{'))}.log"
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        print(log_path.read_text()[-6000:])
        raise SystemExit(f"demo: `airflow {' '.join(args)}` failed (exit {result.returncode}); full log: {log_path}")


def print_tables(db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        averages = db.execute(
            "SELECT source, sentiment, sentiment_score, segment_count, input_tokens FROM deepgram_sentiment_averages "
            "ORDER BY source"
        ).fetchall()
        segments = db.execute(
            "SELECT source, segment_index, start_word, end_word, sentiment, sentiment_score, text "
            "FROM deepgram_sentiment_segments ORDER BY source, segment_index"
        ).fetchall()
    print(f"\ndeepgram_sentiment_averages ({len(averages)} rows)")
    print(f"{'document':<22} {'sentiment':<9} {'score':>7} {'segments':>8} {'tokens':>6}")
    for source, sentiment, score, count, tokens in averages:
        print(f"{Path(source).name:<22} {sentiment:<9} {score:>7.3f} {count:>8} {tokens:>6}")
    print(f"\ndeepgram_sentiment_segments ({len(segments)} rows)")
    print(f"{'document':<22} {'#':>2} {'words':>7} {'sentiment':<9} {'score':>7}  text")
    for source, index, start, end, sentiment, score, text in segments:
        snippet = text if len(text) <= 60 else text[:57] + "..."
        print(f"{Path(source).name:<22} {index:>2} {start:>3}-{end:<3} {sentiment:<9} {score:>7.3f}  {snippet}")


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    scores_db = DEMO / "scores.db"
    emulator, url = start_emulator()
    try:
        env = os.environ.copy()
        env.update(
            {
                "AIRFLOW_HOME": str(DEMO / "airflow-home"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
                "AIRFLOW_CONN_DEEPGRAM_DEFAULT": json.dumps(
                    {"conn_type": "deepgram", "host": url, "password": EMULATOR_KEY}
                ),
                "AIRFLOW_CONN_DGSENTIMENT_SQLITE": json.dumps({"conn_type": "sqlite", "host": str(scores_db)}),
            }
        )
        airflow(env, "db", "migrate")
        airflow(env, "dags", "test", "deepgram_sentiment_quickstart")
        conf = json.dumps({"source": f"file://{REPO / 'example_dags' / 'sample_texts'}/*.txt"})
        airflow(env, "dags", "test", "deepgram_sentiment_files_to_sql", "2024-01-01", "-c", conf)
        first = sqlite3.connect(scores_db).execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()[0]
        airflow(env, "dags", "test", "deepgram_sentiment_files_to_sql", "2024-01-02", "-c", conf)
        second = sqlite3.connect(scores_db).execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()[0]
        print_tables(scores_db)
        print(f"\ndemo: averages rows after run 1: {first}, after run 2 (same files): {second}")
        print(f"demo: scores stored in {scores_db}; Airflow logs under {DEMO}")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
