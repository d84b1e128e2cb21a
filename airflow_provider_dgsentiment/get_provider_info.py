"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

Kept free of imports: Airflow calls it while it loads its own configuration.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "airflow-provider-dgsentiment"
#: The provider's documentation: one page per topic (docs/ in the repository).
DOCUMENTATION_URL = "https://github.com/deepgram/airflow-provider-dgsentiment/tree/main/docs"
#: Every version released, newest first (docs/changelog.md has a section for each).
VERSIONS = ["0.3.0", "0.2.0", "0.1.0"]

#: The connection's numeric extras, defined once: name -> (kind, smallest allowed value, default).
#: The UI form below and the hook's checks (``hooks/sentiment.py``) both read this.
#: ``timeout`` may be any positive number of seconds (sub-second deadlines included).
CONNECTION_NUMBERS: dict[str, tuple[type, float, float]] = {
    "timeout": (float, 0.001, 60.0),
    "max_retries": (int, 0, 5),
    "max_concurrency": (int, 1, 10),
}


def _number_schema(name: str) -> dict[str, Any]:
    kind, minimum, default = CONNECTION_NUMBERS[name]
    return {"type": ["integer" if kind is int else "number", "null"], "minimum": minimum, "default": kind(default)}


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata, including the ``deepgram`` connection form."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Deepgram Sentiment Analysis",
        "description": "Score text with Deepgram's Sentiment Analysis (`POST /v1/read?sentiment=true`).",
        "versions": list(VERSIONS),
        "integrations": [
            {
                "integration-name": "Deepgram Sentiment Analysis",
                "external-doc-url": DOCUMENTATION_URL,
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Deepgram Sentiment Analysis",
                "python-modules": ["airflow_provider_dgsentiment.hooks.sentiment"],
            }
        ],
        "operators": [
            {
                "integration-name": "Deepgram Sentiment Analysis",
                "python-modules": ["airflow_provider_dgsentiment.operators.sentiment"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Deepgram Sentiment Analysis",
                "python-modules": ["airflow_provider_dgsentiment.sensors.sentiment"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Deepgram Sentiment Analysis",
                "python-modules": ["airflow_provider_dgsentiment.triggers.sentiment"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_dgsentiment.hooks.sentiment.DeepgramSentimentHook",
                "connection-type": "deepgram",
                "hook-name": "Deepgram",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"password": "API Key", "host": "Base URL"},
                    "placeholders": {
                        "host": "https://api.deepgram.com",
                        "password": "Deepgram API key (Authorization: Token ...)",
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Seconds to wait for one response before retrying it.",
                        "schema": _number_schema("timeout"),
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of a request after a 429, 408, 5xx or a connection error.",
                        "schema": _number_schema("max_retries"),
                    },
                    "max_concurrency": {
                        "label": "Max concurrency",
                        "description": "Requests in flight at once (Deepgram pay-as-you-go allows 10 per project).",
                        "schema": _number_schema("max_concurrency"),
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain http",
                        "description": "Allow an http:// Base URL for a host other than loopback.",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
            }
        ],
    }
