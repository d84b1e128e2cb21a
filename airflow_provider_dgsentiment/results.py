"""
Deprecated path: the result model lives in :mod:`airflow_provider_dgsentiment.client.results` (since 0.3).

Importing a name from here still works for the 0.3 line and warns; it goes in 0.5.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_dgsentiment.deprecations import warn_moved

NEW_MODULE = "airflow_provider_dgsentiment.client.results"


def __getattr__(name: str) -> Any:
    return warn_moved(__name__, NEW_MODULE, name)
