"""Bad inputs, one row each: the exact outcome a DAG author or on-call person sees.

Every case runs the operator the way a task does and turns what happened into one
line (error class and full message, or the return value and log line), with the
temporary folder shown as ``<tmp>`` and request ids as ``<request_id>``. The test
compares that line with the expected one, so a changed message fails here; run
``pytest tests/reliability/test_bad_inputs.py -s`` to print the table
(``BAD-INPUT | case | outcome`` lines).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_dgsentiment.exceptions import (
    DeepgramAuthenticationError,
    DeepgramConfigurationError,
    DeepgramUnsupportedLanguageError,
)
from tests.hooks.stand_in import Answer, StandIn
from tests.reliability.helpers import (
    AVERAGES,
    SEGMENTS,
    SQL_CONN_ID,
    count,
    make_operator,
    rows,
    run_operator,
    sqlite_conn_json,
)

MOCK_KEY = "mock-key-31a9c0"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
POSITIVE = "The team was wonderful and solved it quickly today."
NEGATIVE = "The team was terrible and broke it again today."


@dataclass
class Env:
    """What a case may use: a folder of inputs, the SQLite file, the emulator, monkeypatch, the log."""

    tmp: Path
    inbox: Path
    db: Path
    emulator: Any
    monkeypatch: Any
    log_text: Callable[[], str]

    def normalize(self, text: str) -> str:
        return UUID.sub("<request_id>", text.replace(str(self.tmp), "<tmp>"))

    def requests(self) -> int:
        return self.emulator.stats()["requests"]

    def use_key(self, key: str | None, **extra: Any) -> None:
        conn = {"conn_type": "deepgram", "host": self.emulator.url, "extra": extra}
        if key is not None:
            conn["password"] = key
        self.monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", json.dumps(conn))

    def use_mock(self, stand_in: Any, **extra: Any) -> None:
        """Point ``deepgram_default`` at a scripted loopback stand-in (``tests.hooks.stand_in``)."""
        self.monkeypatch.setenv(
            "AIRFLOW_CONN_DEEPGRAM_DEFAULT",
            json.dumps({"conn_type": "deepgram", "host": stand_in.url, "password": MOCK_KEY, "extra": extra}),
        )

    def failure(self, operator: Any) -> tuple[BaseException, int]:
        """Run the operator, which must fail; return the error and the requests the emulator got."""
        before = self.requests()
        with pytest.raises(Exception) as raised:
            run_operator(operator)
        return raised.value, self.requests() - before


def describe(env: Env, error: BaseException) -> str:
    return f"{type(error).__name__}: {env.normalize(str(error))}"


# ---------------------------------------------------------------------- cases


def empty_text(env: Env) -> str:
    before = env.requests()
    result = run_operator(make_operator(text="", sql_conn_id=SQL_CONN_ID))
    sent = env.requests() - before
    assert sent == 0 and count(env.db, AVERAGES) == 0
    assert "Skipped 1 empty document(s) without a request: text" in env.log_text()
    return f"returns {result}; {sent} requests; log: Skipped 1 empty document(s) without a request: text"


def whitespace_only_file(env: Env) -> str:
    (env.inbox / "blank.txt").write_text("  \n\t \r\n  ")
    before = env.requests()
    result = run_operator(
        make_operator(source=f"file://{env.inbox}/*.txt", sql_conn_id=SQL_CONN_ID, xcom_output="summary")
    )
    sent = env.requests() - before
    assert sent == 0 and count(env.db, AVERAGES) == 0
    line = f"Skipped 1 empty document(s) without a request: file://{env.inbox}/blank.txt"
    assert line in env.log_text()
    item = result["items"][0]
    return f"skipped ({item['reason']}); {sent} requests; log: {env.normalize(line)}"


def non_utf8_bytes(env: Env) -> str:
    (env.inbox / "latin1.txt").write_bytes("Café crème, très bien.".encode("latin-1"))
    error, sent = env.failure(make_operator(source=f"file://{env.inbox}/*.txt", sql_conn_id=SQL_CONN_ID))
    assert sent == 0
    return describe(env, error)


def utf16_file(env: Env) -> str:
    (env.inbox / "export.txt").write_bytes("Great service!".encode("utf-16"))
    error, sent = env.failure(make_operator(source=f"file://{env.inbox}/export.txt"))
    assert sent == 0
    return describe(env, error)


def missing_object(env: Env) -> str:
    (env.inbox / "here.txt").write_text(POSITIVE)
    error, sent = env.failure(make_operator(source=[f"file://{env.inbox}/here.txt", f"file://{env.inbox}/gone.txt"]))
    assert sent == 1  # the object that exists is still scored
    return describe(env, error)


def missing_object_alone(env: Env) -> str:
    error, sent = env.failure(make_operator(source=f"file://{env.inbox}/gone.txt"))
    assert sent == 0
    return describe(env, error)


def text_of_200k_tokens(env: Env) -> str:
    sentences = [POSITIVE if i % 3 else NEGATIVE for i in range(20_000)]  # 10 tokens each
    text = " ".join(sentences)
    (env.inbox / "huge.txt").write_text(text)
    before = env.requests()
    run_operator(make_operator(source=f"file://{env.inbox}/huge.txt", sql_conn_id=SQL_CONN_ID, xcom_output="none"))
    sent = env.requests() - before
    [(segment_count, input_tokens, output_tokens)] = rows(
        env.db, f"SELECT segment_count, input_tokens, output_tokens FROM {AVERAGES}"
    )
    spans = rows(env.db, f"SELECT start_word, end_word FROM {SEGMENTS} ORDER BY segment_index")
    words = len(text.split())
    assert spans[0][0] == 0 and spans[-1][1] == words - 1
    assert all(current[0] == previous[1] + 1 for previous, current in zip(spans, spans[1:]))
    assert len(spans) == segment_count
    assert input_tokens == output_tokens == 200_000  # summed over the parts
    line = f"Text of {len(text)} characters is over the token limit; scoring it in {sent} parts"
    assert line in env.log_text()
    return f"scored in {sent} requests (log: {line}); {segment_count} segments contiguous over words 0..{words - 1}; input_tokens {input_tokens}"


def unsupported_language(env: Env) -> str:
    error, sent = env.failure(
        make_operator(text=[f"Text number {i}." for i in range(30)], language="xx", max_concurrency=1)
    )
    assert isinstance(error, DeepgramUnsupportedLanguageError) and isinstance(error, AirflowFailException)
    assert sent == 1  # stops at once
    return f"{describe(env, error)}; {sent} request"


def missing_api_key(env: Env) -> str:
    env.monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    env.use_key(None)
    error, sent = env.failure(make_operator(text=["Fine.", "Also fine."]))
    assert isinstance(error, DeepgramConfigurationError) and sent == 0
    return describe(env, error)


def wrong_api_key(env: Env) -> str:
    key = "dg-WRONG-0b7e55d1"
    env.use_key(key)
    error, sent = env.failure(make_operator(text=["Fine.", "Also fine.", "Still fine."], max_concurrency=1))
    assert isinstance(error, DeepgramAuthenticationError) and isinstance(error, AirflowFailException)
    assert key not in str(error) and key not in repr(error) and key not in env.log_text()
    assert sent == 1
    return f"{describe(env, error)}; {sent} request; key not echoed"


def malformed_json_response(env: Env) -> str:
    stand_in = StandIn()
    try:
        env.use_mock(stand_in, max_retries=0)
        stand_in.answer(Answer(text='{"metadata": {"request_id": "r-trunc"', headers={"dg-request-id": "r-trunc"}))
        with pytest.raises(Exception) as raised:
            run_operator(make_operator(text="Hello there."))
    finally:
        stand_in.stop()
    return describe(env, raised.value)


def html_502_from_proxy(env: Env) -> str:
    html = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    stand_in = StandIn()
    try:
        env.use_mock(stand_in, max_retries=2)
        stand_in.answer(Answer(502, text=html, headers={"Content-Type": "text/html"}))
        with pytest.raises(Exception) as raised:
            run_operator(make_operator(text="Hello there."))
        calls = stand_in.call_count
    finally:
        stand_in.stop()
    logs = env.log_text()
    assert "retry 1/2" in logs and "retry 2/2" in logs and calls == 3
    assert "<html" not in str(raised.value).lower()
    return f"{describe(env, raised.value)}; {calls} attempts (retry 1/2, 2/2 logged)"


def invalid_table_name(env: Env) -> str:
    error, sent = env.failure(make_operator(text="Hi.", sql_conn_id=SQL_CONN_ID, averages_table="scores; DROP TABLE x"))
    assert isinstance(error, DeepgramConfigurationError) and sent == 0
    assert not env.db.exists() or rows(env.db, "SELECT name FROM sqlite_master") == []
    return describe(env, error)


def source_glob_matching_nothing(env: Env) -> str:
    error, sent = env.failure(make_operator(source=f"file://{env.tmp}/nothing/*.txt"))
    assert sent == 0
    return describe(env, error)


CASES: list[tuple[Callable[[Env], str], str]] = [
    (
        empty_text,
        "returns {'source': 'text', 'status': 'skipped', 'reason': 'empty document'}; 0 requests; "
        "log: Skipped 1 empty document(s) without a request: text",
    ),
    (
        whitespace_only_file,
        "skipped (empty document); 0 requests; log: Skipped 1 empty document(s) without a request: "
        "file://<tmp>/in/blank.txt",
    ),
    (
        non_utf8_bytes,
        "DeepgramError: 1 of 1 document(s) failed:\n"
        "  file://<tmp>/in/latin1.txt: not valid UTF-8 text (byte 0xe9 at offset 3); convert it to UTF-8",
    ),
    (
        utf16_file,
        "DeepgramError: 1 of 1 document(s) failed:\n"
        "  file://<tmp>/in/export.txt: not valid UTF-8 text (byte 0xff at offset 0); convert it to UTF-8",
    ),
    (
        missing_object,
        "DeepgramError: 1 of 2 document(s) failed:\n  file://<tmp>/in/gone.txt: object not found",
    ),
    (
        missing_object_alone,
        "DeepgramError: 1 of 1 document(s) failed:\n  file://<tmp>/in/gone.txt: object not found",
    ),
    (
        text_of_200k_tokens,
        "scored in 2 requests (log: Text of 1013331 characters is over the token limit; scoring it in 2 parts); "
        "13334 segments contiguous over words 0..179999; input_tokens 200000",
    ),
    (
        unsupported_language,
        "DeepgramUnsupportedLanguageError: Deepgram API error 400 INVALID_QUERY_PARAMETER: Request specified "
        "unsupported language: xx. Only English is supported. (request_id=<request_id>) -- stopped the run: "
        "30 of 30 document(s) left unscored; 1 request",
    ),
    (
        missing_api_key,
        "DeepgramConfigurationError: No Deepgram API key: set the password (API Key) of connection "
        "'deepgram_default' or the DEEPGRAM_API_KEY environment variable",
    ),
    (
        wrong_api_key,
        "DeepgramAuthenticationError: Deepgram API error 401 INVALID_AUTH: Invalid credentials. "
        "(request_id=<request_id>) -- stopped the run: 3 of 3 document(s) left unscored; 1 request; key not echoed",
    ),
    (
        malformed_json_response,
        "DeepgramError: 1 of 1 document(s) failed:\n  text: Unreadable Deepgram response (HTTP 200): the body is "
        'not JSON (non-JSON response: {"metadata": {"request_id": "r-trunc") (request_id=r-trunc)',
    ),
    (
        html_502_from_proxy,
        "DeepgramError: 1 of 1 document(s) failed:\n  text: Deepgram API error 502: non-JSON HTML response: "
        "502 Bad Gateway; 3 attempts (retry 1/2, 2/2 logged)",
    ),
    (
        invalid_table_name,
        "DeepgramConfigurationError: averages_table 'scores; DROP TABLE x' is not a valid table name: use letters, "
        "digits and underscores (starting with a letter or underscore, at most 63 characters), optionally as "
        "schema.table",
    ),
    (
        source_glob_matching_nothing,
        "DeepgramError: source file://<tmp>/nothing/*.txt matched no objects "
        "(set fail_on_empty_source=False to succeed with zero documents)",
    ),
]


@pytest.mark.parametrize(("case", "expected"), CASES, ids=[case.__name__ for case, _ in CASES])
def test_bad_input_outcome(case, expected, tmp_path, monkeypatch, deepgram_conn, sleeps_fast, log_text):
    inbox = tmp_path / "in"
    inbox.mkdir()
    db = tmp_path / "scores.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQL_CONN_ID.upper()}", sqlite_conn_json(db))
    env = Env(tmp=tmp_path, inbox=inbox, db=db, emulator=deepgram_conn, monkeypatch=monkeypatch, log_text=log_text)
    observed = case(env)
    print(f"\nBAD-INPUT | {case.__name__} | {observed!r}")
    assert observed == expected


def test_missing_named_object_is_an_error_even_when_empty_sources_are_allowed(tmp_path, deepgram_conn):
    """E.g. a sensor listed the URI, then the object was deleted before the operator read it."""
    gone = f"file://{tmp_path}/gone.txt"
    operator = make_operator(source=[gone], fail_on_empty_source=False, xcom_output="summary")
    try:
        outcome = run_operator(operator)
    except Exception as error:  # the fixed behaviour
        assert str(error) == f"1 of 1 document(s) failed:\n  {gone}: object not found"
    else:
        assert outcome["failed"] == 1, f"succeeded with {outcome}"
