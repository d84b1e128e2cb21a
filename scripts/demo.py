"""The README's demo: emulator + example DAGs + SQLite, then print the stored scores.

Run by ``make demo`` inside the project's venv. Everything stays on this machine:
the Deepgram emulator listens on 127.0.0.1, Airflow's metadata DB and the score
tables are SQLite files under ``.demo/``.

Steps:
1. start the emulator (``python -m airflow_provider_dgsentiment.emulator --port 0``);
2. ``airflow db migrate`` for a private AIRFLOW_HOME;
3. ``airflow dags test deepgram_sentiment_quickstart`` (inline text -> XCom), printing its result lines;
4. ``airflow dags test deepgram_sentiment_files_to_sql`` over ``example_dags/sample_texts``
   (file:// -> SQLite), twice, to show the second run scores nothing new;
5. print the averages and segments tables.

Every ``airflow`` command keeps its own numbered log under ``.demo/`` (nothing is overwritten). The
scores are the emulator's lexicon model (VADER), not Deepgram's, and the output says so.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from airflow_provider_dgsentiment.cli.local_emulator import LocalEmulator

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"
EMULATOR_KEY = "demo-emulator-key"
MODEL_NOTE = "scores from the emulator's lexicon model (VADER), not from Deepgram"
#: The quickstart's print_scores task prints one such line per text.
QUICKSTART_LINE = re.compile(r"(text\[\d+\]: \w+ \([+-]\d+\.\d+\), \d+ segment\(s\))")
_log_numbers = itertools.count(1)


def airflow(env: dict[str, str], *args: str) -> Path:
    """Run one ``airflow`` command with its own numbered log (never overwritten); return the log's path."""
    print(f"demo: airflow {' '.join(args)}")
    words = "-".join(re.sub(r"[^\w.-]", "", a) for a in args[:4] if not a.startswith(("{", "-")))
    log_path = DEMO / f"{next(_log_numbers):02d}-airflow-{words}.log"
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        print(log_path.read_text()[-6000:])
        raise SystemExit(f"demo: `airflow {' '.join(args)}` failed (exit {result.returncode}); full log: {log_path}")
    return log_path


def print_quickstart(log_path: Path) -> None:
    """Print the quickstart's result lines (from its print_scores task) beside the texts it scored."""
    sys.path.insert(0, str(REPO / "example_dags"))
    from deepgram_sentiment_quickstart import SAMPLE_TEXTS

    lines = list(dict.fromkeys(QUICKSTART_LINE.findall(log_path.read_text())))
    print(f"\ndeepgram_sentiment_quickstart: {len(lines)} text(s) scored, {MODEL_NOTE}")
    for line in lines:
        index = int(line.split("[", 1)[1].split("]", 1)[0])
        print(f"  {line}  {SAMPLE_TEXTS[index][:60]!r}")
    if len(lines) != len(SAMPLE_TEXTS):
        raise SystemExit(
            f"demo: the quickstart printed {len(lines)} result line(s), not {len(SAMPLE_TEXTS)}; see {log_path}"
        )


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
    print(f"\ndeepgram_sentiment_averages ({len(averages)} rows; {MODEL_NOTE})")
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
    with LocalEmulator(api_key=EMULATOR_KEY) as emulator:
        url = emulator.url
        print(f"demo: Deepgram emulator at {url} ({MODEL_NOTE})")
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
        print_quickstart(airflow(env, "dags", "test", "deepgram_sentiment_quickstart"))
        conf = json.dumps({"source": f"file://{REPO / 'example_dags' / 'sample_texts'}/*.txt"})
        airflow(env, "dags", "test", "deepgram_sentiment_files_to_sql", "2024-01-01", "-c", conf)
        first = sqlite3.connect(scores_db).execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()[0]
        airflow(env, "dags", "test", "deepgram_sentiment_files_to_sql", "2024-01-02", "-c", conf)
        second = sqlite3.connect(scores_db).execute("SELECT COUNT(*) FROM deepgram_sentiment_averages").fetchone()[0]
        print_tables(scores_db)
        print(f"\ndemo: averages rows after run 1: {first}, after run 2 (same files): {second}")
        print(f"demo: scores stored in {scores_db}; one Airflow log per command under {DEMO}")


if __name__ == "__main__":
    main()
