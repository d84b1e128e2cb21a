"""The ``dgsentiment`` console script, run as a user runs it: a subprocess against the emulator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import missing_in_ci

REPO = Path(__file__).resolve().parents[2]
SAMPLE_TEXTS = REPO / "example_dags" / "sample_texts"
THREE_TEXTS = [
    "I love this product, it is wonderful.",
    "This is terrible and I hate it.",
    "The parcel came on Tuesday.",
]


def console_script() -> str:
    """The installed ``dgsentiment`` script next to this Python, else on PATH."""
    beside = Path(sys.executable).with_name("dgsentiment")
    found = str(beside) if beside.exists() else shutil.which("dgsentiment")
    if found is None:
        missing_in_ci("the dgsentiment console script is not installed in this environment (pip install -e .)")
    return found


def dgsentiment(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW_CONN_")}
    base.pop("DEEPGRAM_API_KEY", None)
    return subprocess.run(
        [console_script(), *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
    )


def key_env(server, key: str | None = None) -> dict[str, str]:
    return {"DEEPGRAM_API_KEY": key or server.api_key}


def table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["document", "label", "score", "segments"], stdout
    return [line.rsplit(None, 3) for line in lines[1:]]


def test_score_three_texts_with_a_dry_run_emulator():
    result = dgsentiment("score", "--emulator", *THREE_TEXTS)

    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert [row[0] for row in rows] == [repr(text) for text in THREE_TEXTS]
    assert [row[1] for row in rows] == ["positive", "negative", "neutral"]
    assert all(-1 <= float(row[2]) <= 1 and row[3] == "1" for row in rows)
    assert "local emulator" in result.stderr and "lexicon model (VADER), not from Deepgram" in result.stderr
    assert "Processed" not in result.stderr  # a few texts: no progress lines


def test_json_is_the_api_shape_from_the_environment_key(deepgram_emulator):
    result = dgsentiment(
        "score", "--json", "--base-url", deepgram_emulator.url, *THREE_TEXTS, env=key_env(deepgram_emulator)
    )

    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    assert [item["source"] for item in items] == ["text[0]", "text[1]", "text[2]"]
    for item, text in zip(items, THREE_TEXTS):
        assert item["metadata"]["request_id"] and item["metadata"]["sentiment_info"]["input_tokens"] > 0
        (segment,) = item["results"]["sentiments"]["segments"]
        assert segment["text"] == text
        assert item["results"]["sentiments"]["average"]["sentiment"] in ("positive", "neutral", "negative")


def test_files_globs_and_stdin_with_progress_on_stderr(deepgram_emulator, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("Brilliant support, thank you!")
    result = dgsentiment(
        "score",
        "--base-url",
        deepgram_emulator.url,
        "-",
        str(note),
        f"file://{SAMPLE_TEXTS}/*.txt",
        env=key_env(deepgram_emulator),
        stdin="The worst delivery I have ever had.",
    )

    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows[0][:2] == ["'The worst delivery I have ever had.'", "negative"]
    names = [row[0] for row in rows[1:]]
    assert len(names) == 1 + len(list(SAMPLE_TEXTS.glob("*.txt")))
    assert any(name.endswith("note.txt") for name in names)
    assert "Processed 7/7 documents" in result.stderr  # files may hold many documents: progress shown


def test_retries_never_reach_stdout(deepgram_emulator_factory):
    server = deepgram_emulator_factory(error_rate=0.3, seed=7)
    texts = [f"Review number {index} was fine." for index in range(8)]
    result = dgsentiment("score", "--json", "--base-url", server.url, *texts, env=key_env(server))

    assert result.returncode in (0, 1), result.stderr  # 1 if a text failed after every retry
    assert [item["source"] for item in json.loads(result.stdout)] == [f"text[{index}]" for index in range(8)]
    assert "retry 1/5" in result.stderr


def test_no_key_anywhere_is_a_prompt_free_error_saying_where_it_looked():
    result = dgsentiment("score", "Hello there.")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "No Deepgram API key: --conn-id was not given and DEEPGRAM_API_KEY is not set" in result.stderr
    assert "--emulator" in result.stderr


def test_check_with_an_airflow_connection(deepgram_emulator):
    def conn_env(key: str) -> dict[str, str]:
        conn = {"conn_type": "deepgram", "host": deepgram_emulator.url, "password": key}
        return {"AIRFLOW_CONN_MY_DEEPGRAM": json.dumps(conn)}

    good = dgsentiment("check", "--conn-id", "my_deepgram", env=conn_env(deepgram_emulator.api_key))
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "Connection to Deepgram works: the key sees 1 project(s)."

    bad = dgsentiment("check", "--conn-id", "my_deepgram", env=conn_env("wrong-key-12345"))
    assert bad.returncode == 1
    assert "401 INVALID_AUTH" in bad.stdout
    assert "wrong-key-12345" not in bad.stdout + bad.stderr


def test_a_bad_key_stops_the_run_and_a_bad_record_fails_alone(deepgram_emulator, tmp_path):
    export = tmp_path / "tickets.jsonl"
    export.write_text('{"body": "Lovely."}\n{"title": "no body"}\n{"body": "Awful."}\n')
    args = ("score", "--base-url", deepgram_emulator.url, "--text-field", "body", str(export))

    partly = dgsentiment(*args, env=key_env(deepgram_emulator))
    assert partly.returncode == 1
    assert [row[1] for row in table_rows(partly.stdout.split("\nfailed:")[0])] == ["positive", "failed", "negative"]
    assert f"failed: file://{export}#2: line 2: field 'body' is missing" in partly.stdout

    stopped = dgsentiment(*args, env=key_env(deepgram_emulator, "wrong-key-12345"))
    assert stopped.returncode == 2
    assert "dgsentiment: stopped: " in stopped.stderr and "401 INVALID_AUTH" in stopped.stderr
    assert "wrong-key-12345" not in stopped.stdout + stopped.stderr


def test_a_uri_matching_nothing_says_so(deepgram_emulator, tmp_path):
    result = dgsentiment(
        "score", "--base-url", deepgram_emulator.url, f"file://{tmp_path}/*.txt", env=key_env(deepgram_emulator)
    )

    assert result.returncode == 2
    assert f"dgsentiment: error: source file://{tmp_path}/*.txt matched no objects" in result.stderr
    assert "fail_on_empty_source" not in result.stderr  # the operator's argument means nothing here
