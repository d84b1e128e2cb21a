"""The connection forms docs/connection.md gives, against the emulator; the plain-HTTP trap names its fix."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from airflow_provider_dgsentiment.exceptions import DeepgramPlainHTTPError
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook


def address(server) -> str:
    parts = urlsplit(server.url)
    return f"{parts.hostname}:{parts.port}"


def test_uri_with_the_http_schema_reaches_a_loopback_emulator(monkeypatch, deepgram_emulator):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT", f"deepgram://:{deepgram_emulator.api_key}@{address(deepgram_emulator)}/http"
    )
    with DeepgramSentimentHook() as hook:
        assert hook.settings.base_url == deepgram_emulator.url
        assert hook.analyze("What a lovely day.").average.sentiment == "positive"


@pytest.mark.parametrize("form", ["uri", "json"])
def test_https_to_a_plain_http_server_names_the_fix_without_retrying(monkeypatch, deepgram_emulator, form):
    key = deepgram_emulator.api_key
    if form == "uri":  # no schema: the hook assumes https, the emulator speaks http
        conn = f"deepgram://:{key}@{address(deepgram_emulator)}"
    else:
        conn = json.dumps({"conn_type": "deepgram", "host": f"https://{address(deepgram_emulator)}", "password": key})
    monkeypatch.setenv("AIRFLOW_CONN_DEEPGRAM_DEFAULT", conn)

    with DeepgramSentimentHook() as hook, pytest.raises(DeepgramPlainHTTPError) as raised:
        hook.analyze("What a lovely day.")
    message = str(raised.value)
    assert f"https://{address(deepgram_emulator)} answered in plain HTTP, not TLS" in message
    assert f"http://{address(deepgram_emulator)}" in message
    assert f"deepgram://:KEY@{address(deepgram_emulator)}/http" in message
    assert "loopback" in message
    assert key not in message
    assert hook.request_count == 1  # systemic: not retried five times
    assert raised.value.systemic and not raised.value.retryable


def test_test_button_says_the_same(monkeypatch, deepgram_emulator):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEEPGRAM_DEFAULT", f"deepgram://:{deepgram_emulator.api_key}@{address(deepgram_emulator)}"
    )
    ok, message = DeepgramSentimentHook().test_connection()
    assert not ok
    assert "answered in plain HTTP" in message and "/http" in message
