"""OpenLineage names: the objects a run read and the tables it wrote, named as Airflow's own operators name them.

Objects: ``s3://[conn@]bucket/key`` is ``("s3://bucket", "key")``, ``file:///abs/path`` is
``("file", "/abs/path")``; a glob or folder is the folder it lists. More than
``MAX_LINEAGE_INPUTS`` objects in one namespace are reported as their common folder, so the
inputs stay small at any number of documents.

Tables: the namespace from the SQL hook's ``get_openlineage_database_info`` (else
``<conn_type>://<host>[:<port>]``) and ``[database.]schema.table`` names, as common.sql's
operators report them. :func:`table_asset_uri` turns the same names into the Asset URI of a
table, so the asset a DAG schedules on is the dataset OpenLineage shows.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Any

from airflow_provider_dgsentiment.storage.sources import GLOB_CHARACTERS
from airflow_provider_dgsentiment.storage.warehouse import WarehouseWriter, validate_table_name

#: Input objects reported one by one at most per namespace; more become their common folder.
MAX_LINEAGE_INPUTS = 100


def object_location(uri: str) -> tuple[str, str]:
    """Return the OpenLineage ``(namespace, name)`` of an object URI or ``source`` pattern."""
    scheme, _, location = uri.partition("://")
    if scheme == "file":
        namespace, name = "file", location
    else:
        bucket, _, name = location.partition("/")
        namespace = f"{scheme}://{bucket.rpartition('@')[2]}"
    globs = [name.index(character) for character in GLOB_CHARACTERS if character in name]
    if globs:
        name = name[: min(globs)].rpartition("/")[0]
    return namespace, name.rstrip("/") or "/"


def input_locations(uris: Iterable[str]) -> list[tuple[str, str]]:
    """
    The ``(namespace, name)`` of each object, collapsed to the common folder above ``MAX_LINEAGE_INPUTS``.

    Keeps at most ``MAX_LINEAGE_INPUTS + 1`` names and one running common folder per namespace,
    so it costs the same at 100 objects and at a million.
    """
    kept: dict[str, dict[str, None]] = {}
    common: dict[str, str] = {}
    for uri in uris:
        namespace, name = object_location(uri)
        common[namespace] = posixpath.commonpath([common[namespace], name]) if namespace in common else name
        names = kept.setdefault(namespace, {})
        if len(names) <= MAX_LINEAGE_INPUTS:
            names[name] = None
    locations = []
    for namespace, names in kept.items():
        if len(names) > MAX_LINEAGE_INPUTS:
            locations.append((namespace, common[namespace] or "/"))
        else:
            locations.extend((namespace, name) for name in names)
    return locations


def table_locations(writer: WarehouseWriter) -> list[tuple[str, str]]:
    """The ``(namespace, name)`` of the segments and averages tables."""
    hook = writer.hook
    connection = hook.get_connection(writer.sql_conn_id)
    info = hook.get_openlineage_database_info(connection)
    if info is not None:
        namespace = f"{info.scheme}://{info.authority}" if info.authority else info.scheme
        database = info.database
    else:  # the hook does not support OpenLineage (e.g. SQLite)
        port = f":{connection.port}" if connection.port else ""
        namespace, database = f"{connection.conn_type}://{connection.host or ''}{port}", None
    tables = (writer.segments_table, writer.averages_table)
    # PostgreSQL answers this with a query (its search_path), so ask only when a name needs it.
    default_schema = hook.get_openlineage_default_schema() if info and not all("." in t for t in tables) else None
    locations = []
    for table in tables:
        schema, _, name = table.rpartition(".")
        parts = (database, schema or default_schema, name)
        locations.append((namespace, ".".join(part for part in parts if part)))
    return locations


def table_asset_uri(namespace: str, name: str) -> str:
    """The Asset URI of a table with OpenLineage ``(namespace, name)``: ``<namespace>/<name with / for .>``."""
    if namespace.startswith("sqlite://"):
        return f"{namespace}/{name}"
    return f"{namespace.rstrip('/')}/{name.replace('.', '/')}"


def table_asset(table: str, *, namespace: str, database: str | None = None, schema: str | None = None) -> Any:
    """
    Return the Airflow Asset (Dataset on Airflow 2) of one of the provider's tables, named as OpenLineage names it.

    Give it to the operator as an outlet and to a downstream DAG as its schedule: both sides
    then name the table by the URI OpenLineage shows for the operator's output, e.g.
    ``postgres://db:5432/warehouse/public/deepgram_sentiment_averages`` or
    ``sqlite:///data/scores.db/deepgram_sentiment_averages``. It makes no connection (DAG files
    build it at parse time): give what :func:`table_locations` reads from the connection.

    :param table: the table, ``name`` or ``schema.name``, as given to the operator.
    :param namespace: ``<scheme>://<host>[:<port>]`` (PostgreSQL) or ``sqlite://<path>`` (SQLite).
    :param database: the database, for engines whose names carry it (PostgreSQL).
    :param schema: the schema when ``table`` has none (PostgreSQL's default is ``public``).
    """
    from airflow.providers.common.compat.sdk import Asset

    table_schema, _, name = validate_table_name(table).rpartition(".")
    qualified = ".".join(part for part in (database, table_schema or schema, name) if part)
    uri = table_asset_uri(namespace, qualified)
    try:
        return Asset(name=uri, uri=uri)
    except TypeError:  # Airflow 2: Dataset(uri)
        return Asset(uri)


def datasets(locations: Iterable[tuple[str, str]]) -> list[Any]:
    """OpenLineage ``Dataset`` objects for ``(namespace, name)`` pairs."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return [Dataset(namespace=namespace, name=name) for namespace, name in locations]
