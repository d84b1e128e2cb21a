"""A small client for Airflow 3's REST API (``/api/v2``) with SimpleAuthManager login.

The deployment (``scripts/deployment.sh``) configures one SimpleAuthManager user with the
admin role; ``POST /auth/token`` with its name and password returns a JWT, sent as
``Authorization: Bearer``. A 401 (the token expired) logs in again once.
"""

from __future__ import annotations

from typing import Any

import requests

#: Seconds before an API call gives up; the api-server answers in milliseconds when healthy.
REQUEST_TIMEOUT = 30


class AirflowAPIError(RuntimeError):
    """An answer from the api-server that is not a success."""


class AirflowAPI:
    """Call ``/api/v2`` of one api-server as one SimpleAuthManager user."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._session = requests.Session()
        self._session.headers["Content-Type"] = "application/json"

    def login(self) -> None:
        """Get a JWT from ``POST /auth/token`` and send it with every later call."""
        response = self._session.post(
            f"{self.base_url}/auth/token",
            json={"username": self._username, "password": self._password},
            timeout=REQUEST_TIMEOUT,
        )
        if response.status_code not in (200, 201):
            raise AirflowAPIError(f"login as {self._username!r} failed: HTTP {response.status_code}")
        self._session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> Any:
        """Call ``/api/v2{path}``; return the JSON body (None when empty); raise on other statuses."""
        if "Authorization" not in self._session.headers:
            self.login()
        url = f"{self.base_url}/api/v2{path}"
        response = self._session.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
        if response.status_code == 401:
            self.login()
            response = self._session.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
        if response.status_code not in ok:
            raise AirflowAPIError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    # Resources the deployment test sets up.

    def put_connection(self, connection: dict[str, Any]) -> None:
        """Create the connection, replacing one with the same id."""
        self.delete(f"/connections/{connection['connection_id']}", ok=(204, 404))
        self.post("/connections", connection)

    def put_pool(self, name: str, slots: int, *, include_deferred: bool, description: str) -> dict[str, Any]:
        """Create the pool, or update its slots and ``include_deferred`` if it exists."""
        body = {"name": name, "slots": slots, "include_deferred": include_deferred, "description": description}
        created = self.request("POST", "/pools", json=body, ok=(201, 409))
        if created is not None and created.get("name") == name:
            return created
        return self.patch(f"/pools/{name}", body)

    def unpause(self, dag_id: str) -> None:
        self.patch(f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str) -> dict[str, Any]:
        """Start a manual run now (``logical_date`` null) with ``conf``."""
        return self.post(f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def dag_runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100, **params)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones included (paged)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=len(items))
            items.extend(page["task_instances"])
            if len(items) >= page["total_entries"] or not page["task_instances"]:
                return items

    def task_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        """Every try of one task instance (``/tries``: the history and the current one)."""
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries")["task_instances"]

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]
