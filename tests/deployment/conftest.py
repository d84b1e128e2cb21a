"""Fixtures for the deployment tests: the loopback Airflow 3 deployment of scripts/deployment.sh.

``make test-deployment`` starts it and exports its addresses (``.ci-state/deployment/deployment.env``);
the ordinary suite deselects them (``-m "not deployment"`` in pyproject.toml). Without
``DGS_DEPLOY_API_URL`` they skip outside CI and fail in CI; an unreachable deployment is a failure.
"""

from __future__ import annotations

import pytest

from tests.conftest import missing_in_ci
from tests.deployment.api import AirflowAPI
from tests.deployment.pipeline import Deployment, set_up_airflow


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    found = Deployment.from_env()
    if found is None:
        missing_in_ci("no deployment: DGS_DEPLOY_API_URL is not set (run `make test-deployment`)")
    return found


@pytest.fixture(scope="session")
def airflow(deployment: Deployment) -> AirflowAPI:
    """The REST API, logged in, with the connections, the pool and both DAGs unpaused."""
    api = deployment.api()
    api.login()
    set_up_airflow(deployment, api)
    return api


@pytest.fixture
def say(capsys):
    """Print a line to the terminal past pytest's capture (the figures the run reports)."""

    def _say(line: str) -> None:
        with capsys.disabled():
            print(f"\n[deployment] {line}", end="")

    return _say
