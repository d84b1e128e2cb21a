"""The object stores of the integration tests, each filled and read with its own vendor client.

Each store is a fresh bucket (or container) on a loopback server that ``scripts/services.sh``
starts, reached through an ordinary Airflow connection as users configure one:

- ``s3``: moto's server, an ``aws`` connection whose extra holds ``endpoint_url`` (boto3 fills it);
- ``gs``: gcp-storage-emulator, a ``google_cloud_platform`` connection with ``is_anonymous`` and the
  extra ``gcs.endpoint`` (the google provider's filesystem passes it to gcsfs); the google-cloud-storage
  client fills it. gcsfs's gRPC bucket-type probe is switched off in tests/conftest.py (the emulator
  speaks HTTP only);
- ``abfs`` and ``wasb``: Azurite, a ``wasb`` connection whose extra holds a connection string (the
  Azure provider's filesystem, adlfs, takes it); azure-storage-blob fills it. ``wasb://`` is how
  users of the ``wasb`` connection write URIs; the provider reads it as ``abfs://``, so a blob's
  name (``source`` in tables) is ``abfs://container/key`` however it was written.

The provider's code under test never fills or reads a store for the test: the vendor clients do,
so a mistake in the provider's storage layer cannot hide itself.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import missing_in_ci, require_service

#: Dummy credentials: moto accepts any, boto3 and s3fs need some.
S3_KEY_ID = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"
GCS_PROJECT = "dgs-test"
#: The stores a test can ask for (``pytest.fixture(params=STORES)``). gs:// needs the google provider,
#: which lives in its own venv (scripts/test-gcs.sh): its tests carry the ``gcs`` marker, which the
#: default run (``-m 'not deployment and not gcs'``) leaves to that script.
STORES = ("s3", pytest.param("gs", marks=pytest.mark.gcs), "abfs", "wasb")


@dataclass
class ObjectStore:
    """
    One fresh bucket or container, the connection that reaches it, and a vendor client for it.

    :param scheme: the scheme users write (``s3``, ``gs``, ``abfs``, ``wasb``).
    :param bucket: the bucket or container.
    :param conn_id: the Airflow connection the URIs name.
    :param named_scheme: the scheme of the names the provider stores (``abfs`` for ``wasb``).
    """

    scheme: str
    bucket: str
    conn_id: str
    named_scheme: str
    client: Any = field(repr=False)

    def uri(self, key: str = "") -> str:
        """``<scheme>://<conn>@<bucket>/<key>``: a URI naming its connection, as users write it."""
        return f"{self.scheme}://{self.conn_id}@{self.bucket}/{key}"

    def name(self, key: str) -> str:
        """The object's name as the provider stores it (``source`` in tables and XCom)."""
        return f"{self.named_scheme}://{self.bucket}/{key}"

    def key_of(self, name: str) -> str:
        prefix = f"{self.named_scheme}://{self.bucket}/"
        assert name.startswith(prefix), f"{name} is not in {prefix}"
        return name[len(prefix) :]

    def put(self, key: str, text: str) -> str:
        """Upload ``text`` as ``key`` with the vendor client; return its name."""
        data = text.encode("utf-8")
        if self.scheme == "s3":
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        elif self.scheme == "gs":
            self.client.bucket(self.bucket).blob(key).upload_from_string(data)
        else:
            self.client.get_container_client(self.bucket).upload_blob(key, data, overwrite=True)
        return self.name(key)

    def read(self, name: str) -> str:
        """Download an object by its stored name with the vendor client."""
        key = self.key_of(name)
        if self.scheme == "s3":
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8")
        if self.scheme == "gs":
            return self.client.bucket(self.bucket).blob(key).download_as_bytes().decode("utf-8")
        return self.client.get_container_client(self.bucket).download_blob(key).readall().decode("utf-8")

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted (vendor client)."""
        if self.scheme == "s3":
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
        if self.scheme == "gs":
            return sorted(blob.name for blob in self.client.list_blobs(self.bucket, prefix=prefix))
        container = self.client.get_container_client(self.bucket)
        return sorted(blob.name for blob in container.list_blobs(name_starts_with=prefix))

    def remove(self) -> None:
        """Delete every object and the bucket."""
        if self.scheme == "s3":
            for key in self.keys():
                self.client.delete_object(Bucket=self.bucket, Key=key)
            self.client.delete_bucket(Bucket=self.bucket)
        elif self.scheme == "gs":
            self.client.bucket(self.bucket).delete(force=True)
        else:
            self.client.delete_container(self.bucket)


def open_store(scheme: str, monkeypatch) -> ObjectStore:
    """Create a fresh bucket on the server for ``scheme`` and the connection to it (an env var)."""
    bucket = f"dgs-it-{uuid.uuid4().hex[:12]}"
    if scheme == "s3":
        return _s3(bucket, monkeypatch)
    if scheme == "gs":
        return _gcs(bucket, monkeypatch)
    if scheme in ("abfs", "wasb"):
        return _azure(scheme, bucket, monkeypatch)
    raise ValueError(f"unknown store {scheme}")


def _connection(monkeypatch, conn_id: str, connection: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


def s3_connection_and_client(conn_id: str, monkeypatch):
    """The ``aws`` connection ``conn_id`` to the S3-compatible server (an env var) and a boto3 client to it."""
    endpoint = require_service("DGS_TEST_S3_ENDPOINT", "S3-compatible server")
    import boto3

    _connection(
        monkeypatch,
        conn_id,
        {
            "conn_type": "aws",
            "login": S3_KEY_ID,
            "password": S3_SECRET,
            "extra": {"endpoint_url": endpoint, "region_name": S3_REGION},
        },
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name=S3_REGION,
    )


def _s3(bucket: str, monkeypatch) -> ObjectStore:
    conn_id = "aws_store_test"
    client = s3_connection_and_client(conn_id, monkeypatch)
    client.create_bucket(Bucket=bucket)
    return ObjectStore("s3", bucket, conn_id, "s3", client)


def _gcs(bucket: str, monkeypatch) -> ObjectStore:
    try:
        import airflow.providers.google  # noqa: F401  (registers the gs filesystem)
    except ImportError:
        # The gcs extra lives in its own pinned venv (.venv-gcs, constraints/gcs.txt): scripts/test-gcs.sh.
        missing_in_ci("gs:// needs the google provider: run bash scripts/test-gcs.sh (or pip install -e '.[gcs]')")
    endpoint = require_service("DGS_TEST_GCS_ENDPOINT", "GCS server (gcp-storage-emulator)")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    conn_id = "gcp_store_test"
    _connection(
        monkeypatch,
        conn_id,
        {
            "conn_type": "google_cloud_platform",
            "extra": {"is_anonymous": True, "project": GCS_PROJECT, "gcs.endpoint": endpoint},
        },
    )
    client = storage.Client(
        project=GCS_PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    client.create_bucket(bucket)
    return ObjectStore("gs", bucket, conn_id, "gs", client)


def _azure(scheme: str, bucket: str, monkeypatch) -> ObjectStore:
    endpoint = require_service("DGS_TEST_AZURE_BLOB_ENDPOINT", "Azure Blob server (Azurite)")
    from azure.storage.blob import BlobServiceClient

    account = require_service("DGS_TEST_AZURE_ACCOUNT", "Azure Blob server (Azurite)")
    key = require_service("DGS_TEST_AZURE_KEY", "Azure Blob server (Azurite)")
    connection_string = f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={endpoint};"
    conn_id = "wasb_store_test"
    _connection(monkeypatch, conn_id, {"conn_type": "wasb", "extra": {"connection_string": connection_string}})
    client = BlobServiceClient.from_connection_string(connection_string)
    client.create_container(bucket)
    return ObjectStore(scheme, bucket, conn_id, "abfs", client)
