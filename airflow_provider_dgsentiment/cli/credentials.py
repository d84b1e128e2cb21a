"""Which ``deepgram`` connection the command uses, and where it looked when there is no key.

In order: ``--conn-id`` (an Airflow connection: environment variable, secrets backend or the
metadata database), the ``DEEPGRAM_API_KEY`` environment variable (with ``--base-url``), or the
emulator ``--emulator`` started. The key never comes from a prompt, and it is never printed.
"""

from __future__ import annotations

import json
import os

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError
from airflow_provider_dgsentiment.hooks.sentiment import API_KEY_ENV_VAR

#: The connection the command defines for itself (in its own process only) from a key and a base URL.
COMMAND_CONN_ID = "dgsentiment_command"
DEFAULT_BASE_URL = "https://api.deepgram.com"


def define_connection(base_url: str, api_key: str) -> str:
    """
    Define the ``deepgram`` connection :data:`COMMAND_CONN_ID` in this process's environment.

    Airflow reads ``AIRFLOW_CONN_<ID>`` before any other secrets backend, so the hook gets
    the same settings, checks and engine as in a task, with no metadata database.

    :return: the connection id.
    """
    os.environ[f"AIRFLOW_CONN_{COMMAND_CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "deepgram", "host": base_url, "password": api_key}
    )
    return COMMAND_CONN_ID


def connection_id(conn_id: str | None, base_url: str | None) -> str:
    """
    Return the connection id the hook should use: ``conn_id``, else one made from ``DEEPGRAM_API_KEY``.

    :param conn_id: ``--conn-id``, or None.
    :param base_url: ``--base-url``, or None for Deepgram's.
    :raises DeepgramConfigurationError: no key anywhere, naming each place looked at.
    """
    if conn_id:
        return conn_id
    api_key = os.environ.get(API_KEY_ENV_VAR)
    if api_key:
        return define_connection(base_url or DEFAULT_BASE_URL, api_key)
    raise DeepgramConfigurationError(
        f"No Deepgram API key: --conn-id was not given and {API_KEY_ENV_VAR} is not set. "
        f"Give --conn-id <an Airflow deepgram connection>, export {API_KEY_ENV_VAR}=<your key>, "
        "or use --emulator for a dry run against the local emulator."
    )
