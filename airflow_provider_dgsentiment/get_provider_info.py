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
                        "schema": {"type": ["number", "null"], "minimum": 1, "default": 60},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of a request after a 429, 408, 5xx or a connection error.",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "default": 5},
                    },
                    "max_concurrency": {
                        "label": "Max concurrency",
                        "description": "Requests in flight at once (Deepgram pay-as-you-go allows 10 per project).",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 10},
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
