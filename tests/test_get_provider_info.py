"""Provider metadata: valid against Airflow's schema, registered, connection form declared."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema

from airflow_provider_dgsentiment import __version__
from airflow_provider_dgsentiment.get_provider_info import get_provider_info
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook


def test_provider_info_validates_against_airflow_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_point_registered():
    eps = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_dgsentiment")
    ]
    assert len(eps) == 1
    assert eps[0].load()()["package-name"] == "airflow-provider-dgsentiment"


def test_connection_type_declared_for_ui():
    info = get_provider_info()
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == DeepgramSentimentHook.conn_type == "deepgram"
    behaviour = conn_type["ui-field-behaviour"]
    assert behaviour["relabeling"]["password"] == "API Key"
    assert set(behaviour["hidden-fields"]) == {"schema", "port", "login"}
    assert set(conn_type["conn-fields"]) >= {"timeout", "max_retries", "max_concurrency"}
    hook_form = DeepgramSentimentHook.get_ui_field_behaviour()
    assert hook_form == {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }
    schema = json.loads((Path(airflow.__file__).parent / "customized_form_field_behaviours.schema.json").read_text())
    jsonschema.validate(hook_form, schema)


def test_versions_are_the_released_ones_newest_first_each_in_the_changelog():
    versions = get_provider_info()["versions"]
    assert __version__ in versions
    assert versions == sorted(versions, key=lambda version: tuple(map(int, version.split("."))), reverse=True)
    assert versions[-1] == "0.1.0"
    changelog = (Path(__file__).resolve().parent.parent / "docs" / "changelog.md").read_text()
    headings = [line.split()[1] for line in changelog.splitlines() if line.startswith("## ")]
    assert headings == versions


def test_documentation_urls_point_at_the_docs():
    info = get_provider_info()
    (integration,) = info["integrations"]
    assert integration["external-doc-url"].endswith("/tree/main/docs")
    import tomllib

    urls = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Documentation"] == integration["external-doc-url"]


def test_providers_manager_sees_hook_and_connection_type():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-dgsentiment" in manager.providers
    assert "deepgram" in manager.hooks
    assert manager.hooks["deepgram"].hook_class_name.endswith("DeepgramSentimentHook")


def test_the_form_and_the_hook_agree_on_each_number(monkeypatch):
    """What the form offers as default and minimum is what the hook uses and accepts."""
    import pytest

    from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError

    fields = get_provider_info()["connection-types"][0]["conn-fields"]

    def settings(**extra):
        monkeypatch.setenv(
            "AIRFLOW_CONN_DGS_FORM",
            json.dumps({"conn_type": "deepgram", "host": "http://127.0.0.1:9", "password": "k", "extra": extra}),
        )
        return DeepgramSentimentHook(deepgram_conn_id="dgs_form").settings

    defaults = settings()
    for name in ("timeout", "max_retries", "max_concurrency"):
        schema = fields[name]["schema"]
        assert getattr(defaults, name) == schema["default"], name
        assert getattr(settings(**{name: schema["minimum"]}), name) == schema["minimum"], name
        below = schema["minimum"] - (1 if "integer" in schema["type"] else schema["minimum"])
        with pytest.raises(DeepgramConfigurationError, match=f"{name} must be at least"):
            settings(**{name: below})
