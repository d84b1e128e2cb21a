"""The streamed JSON export reader: arrays element by element, NDJSON value by value, bounded."""

from __future__ import annotations

import io
import json

import pytest

from airflow_provider_dgsentiment.storage import json_stream
from airflow_provider_dgsentiment.storage.json_stream import BadJsonValue, JsonStreamError, iter_json_values


def values(text: str, max_chars: int = 10_000) -> list:
    return [
        (location, value.reason if isinstance(value, BadJsonValue) else value)
        for location, value in iter_json_values(io.StringIO(text), max_chars=max_chars)
    ]


@pytest.fixture(autouse=True)
def small_reads(monkeypatch):
    monkeypatch.setattr(json_stream, "READ_CHARS", 5)  # every value cut across reads


def test_an_array_is_read_element_by_element_with_its_lines():
    text = '[\n  {"id": 1, "text": "a, b ]"},\n  {"id": 2, "text": "c"}, 12345\n]\n'
    assert values(text) == [
        ("element 1 (line 2)", {"id": 1, "text": "a, b ]"}),
        ("element 2 (line 3)", {"id": 2, "text": "c"}),
        ("element 3 (line 3)", 12345),
    ]
    assert values("  [ ]  ") == []


def test_newline_delimited_json_and_one_pretty_object():
    assert values('{"a": 1}\n\n{"a": 2}\n') == [("line 1", {"a": 1}), ("line 3", {"a": 2})]
    assert values('{\n  "text": "one object",\n  "id": 7\n}\n') == [("line 1", {"text": "one object", "id": 7})]


def test_a_bad_line_outside_an_array_fails_alone():
    got = values('{"a": 1}\n{"a": 2, oops}\n{"a": "unterminated\n{"a": 3}\n')
    assert got[0] == ("line 1", {"a": 1})
    assert got[1][0] == "line 2" and got[1][1].startswith("not valid JSON (Expecting property name")
    assert got[2][0] == "line 3" and got[2][1].startswith("not valid JSON (Invalid control character")
    assert got[3] == ("line 4", {"a": 3})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1}, {"a": 2 oops}]', "element 2 (line 1) is not valid JSON"),
        ('[{"a": 1} {"a": 2}]', "the array is not closed: expected ',' or ']' after element 1 (line 1), found '{'"),
        ('[{"a": 1},', "element 2 (line 1) is not valid JSON"),
        ('[{"a": 1}', "the array is not closed: expected ',' or ']' after element 1 (line 1), found the end"),
        ('[{"a": 1}] trailing', "text follows the array's closing ']' on line 1"),
    ],
)
def test_a_broken_array_ends_the_file_saying_where(text, message):
    with pytest.raises(JsonStreamError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        values(text)


def test_a_value_longer_than_the_limit_is_refused_without_holding_the_rest():
    text = json.dumps([{"text": "x" * 500}])
    with pytest.raises(JsonStreamError, match="longer than 100 characters"):
        values(text, max_chars=100)
