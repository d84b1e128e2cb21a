"""OpenLineage names of objects and tables, and the tables' Assets."""

from __future__ import annotations

import pytest

from airflow_provider_dgsentiment.storage.lineage import (
    MAX_LINEAGE_INPUTS,
    input_locations,
    object_location,
    table_asset_uri,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/in/a.txt", ("s3://bucket", "in/a.txt")),
        ("s3://aws_conn@bucket/in/a.txt", ("s3://bucket", "in/a.txt")),
        ("s3://bucket/in/2024/*.txt", ("s3://bucket", "in/2024")),
        ("s3://bucket/in/", ("s3://bucket", "in")),
        ("s3://bucket/*.txt", ("s3://bucket", "/")),
        ("gs://bucket/a/b/c.txt", ("gs://bucket", "a/b/c.txt")),
        ("file:///data/in/a.txt", ("file", "/data/in/a.txt")),
        ("file:///data/**/*.txt", ("file", "/data")),
    ],
)
def test_lineage_location(uri, expected):
    assert object_location(uri) == expected


def test_many_objects_collapse_to_their_common_folder_per_namespace():
    uris = [f"s3://bucket/in/{day:02d}/{index}.txt" for day in range(1, 4) for index in range(200)]
    assert input_locations(uris + ["file:///data/a.txt"]) == [("s3://bucket", "in"), ("file", "/data/a.txt")]


def test_up_to_the_bound_objects_are_named_one_by_one():
    uris = [f"file:///data/{index}.txt" for index in range(MAX_LINEAGE_INPUTS)]
    assert input_locations(uris) == [("file", f"/data/{index}.txt") for index in range(MAX_LINEAGE_INPUTS)]


@pytest.mark.parametrize(
    ("namespace", "name", "uri"),
    [
        ("postgres://db:5432", "warehouse.public.avgs", "postgres://db:5432/warehouse/public/avgs"),
        ("sqlite:///data/scores.db", "avgs", "sqlite:///data/scores.db/avgs"),
    ],
)
def test_table_asset_uri(namespace, name, uri):
    assert table_asset_uri(namespace, name) == uri
