"""Fixtures for the integration tests: a real S3-compatible server, PostgreSQL and the emulator.

The servers come from ``scripts/services.sh`` (``make services``), which exports
``DGS_TEST_S3_ENDPOINT`` and ``DGS_TEST_POSTGRES_URI``; without them the tests skip
(outside CI) or fail (in CI).

The S3 connection ``aws_s3_test`` is an ordinary Airflow ``aws`` connection whose extra
carries ``endpoint_url`` (and ``region_name``): the amazon provider's S3 filesystem for
``ObjectStoragePath`` (s3fs) takes ``endpoint_url`` from the connection, so
``s3://aws_s3_test@bucket/key`` reaches the local server with nothing else configured.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import require_service
from tests.support.object_stores import s3_connection_and_client

S3_CONN_ID = "aws_s3_test"
POSTGRES_CONN_ID = "dgs_postgres_test"
POOL_NAME = "deepgram"
POOL_SLOTS = 2


@dataclass
class Bucket:
    """A fresh bucket on the S3-compatible server, with a boto3 client to fill it."""

    name: str
    client: object
    conn_id: str = S3_CONN_ID

    def put(self, key: str, text: str) -> str:
        """Upload ``text`` as ``key``; return the object's name as the provider stores it."""
        self.client.put_object(Bucket=self.name, Key=key, Body=text.encode("utf-8"))
        return f"s3://{self.name}/{key}"

    def uri(self, key: str = "") -> str:
        """Return ``s3://<conn>@<bucket>/<key>``: a URI naming its Airflow connection."""
        return f"s3://{self.conn_id}@{self.name}/{key}"


@dataclass
class PostgresTables:
    """Unique segment and average table names in the test database, and a hook to query them."""

    conn_id: str
    segments: str
    averages: str
    hook: object

    def count(self, table: str) -> int:
        return int(self.hook.get_first(f"SELECT COUNT(*) FROM {table}")[0])

    def duplicate_sources(self) -> int:
        """Sources with more than one row in the averages table."""
        return int(
            self.hook.get_first(
                f"SELECT COUNT(*) FROM (SELECT source FROM {self.averages} GROUP BY source HAVING COUNT(*) > 1) d"
            )[0]
        )


@pytest.fixture
def s3_bucket(monkeypatch) -> Iterator[Bucket]:
    """A new bucket on the S3-compatible server and the ``aws_s3_test`` connection pointing at it."""
    client = s3_connection_and_client(S3_CONN_ID, monkeypatch)
    name = f"dgs-it-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    try:
        yield Bucket(name=name, client=client)
    finally:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)


@pytest.fixture
def postgres_tables(monkeypatch) -> Iterator[PostgresTables]:
    """The ``dgs_postgres_test`` connection and unique table names, dropped afterwards."""
    uri = require_service("DGS_TEST_POSTGRES_URI", "PostgreSQL")
    monkeypatch.setenv(f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}", uri)
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    suffix = uuid.uuid4().hex[:10]
    tables = PostgresTables(
        conn_id=POSTGRES_CONN_ID,
        segments=f"dgs_it_segments_{suffix}",
        averages=f"dgs_it_averages_{suffix}",
        hook=PostgresHook(postgres_conn_id=POSTGRES_CONN_ID),
    )
    try:
        yield tables
    finally:
        tables.hook.run(f"DROP TABLE IF EXISTS {tables.segments}")
        tables.hook.run(f"DROP TABLE IF EXISTS {tables.averages}")


@pytest.fixture
def deepgram_pool(airflow_db) -> str:
    """The ``deepgram`` pool the nightly DAG's scoring tasks run in (2 slots x 5 requests = 10)."""
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(
        POOL_NAME,
        POOL_SLOTS,
        "Deepgram: slots x max_concurrency stays within the account's concurrency limit",
        False,
    )
    return POOL_NAME
