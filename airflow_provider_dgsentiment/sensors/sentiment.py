"""DeepgramSentimentSensor: wait for text objects to score, in any ``ObjectStoragePath`` storage."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, first_and_more
from airflow_provider_dgsentiment.run.events import check_event
from airflow_provider_dgsentiment.storage.records import FORMATS
from airflow_provider_dgsentiment.storage.sources import SensedObjects, describe_entries, find_objects, source_entries
from airflow_provider_dgsentiment.storage.warehouse import DEFAULT_AVERAGES_TABLE, validate_table_name
from airflow_provider_dgsentiment.storage.work_claims import publish_names
from airflow_provider_dgsentiment.triggers.sentiment import DeepgramObjectsTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

SENSOR_XCOM_OUTPUTS = ("uris", "counts")


def check_min_objects(min_objects: Any) -> int:
    """Return ``min_objects`` when it is a whole number of at least 1; raise otherwise."""
    if isinstance(min_objects, bool) or not isinstance(min_objects, int) or min_objects < 1:
        raise DeepgramConfigurationError(f"min_objects must be a whole number of at least 1, got {min_objects!r}")
    return min_objects


class DeepgramSentimentSensor(BaseSensorOperator):
    """
    Wait until at least ``min_objects`` text objects match ``source``; return their URIs.

    ``source`` is anything ``ObjectStoragePath`` reads (``file://``, ``s3://conn@bucket/...``,
    ``gs://``, ...): a glob (``s3://bucket/in/*.txt``), a prefix or folder (every object
    under it) or one object, or a list of those, as for ``DeepgramSentimentOperator``.
    Hidden objects (``.name``) and special files (named pipes, sockets) never count.

    With ``sql_conn_id`` only the objects the operator would read count: the decision is the
    operator's own (``plan_object_reads`` over its load history in the same database), so new
    or changed objects count, and objects read completely at their listed version (scored,
    empty or failed alike, record files included) do not. Give the operator's reading options
    (``format``, ``text_field``, ``id_field``, ``key_namespace``) where they are not the defaults;
    without ``key_namespace`` a read in any namespace counts. While nothing is new the sensor
    keeps waiting, until ``timeout``. With ``results_path`` and no ``sql_conn_id`` the same holds
    with the operator's load history beside its results (``<results_path>/_load_history/``).

    The XCom value (a ``PokeReturnValue``) is, with ``xcom_output="uris"`` (default), the
    sorted list of the URIs that count, without connection id, ready for
    ``DeepgramSentimentOperator(source=...)``. For big listings use ``xcom_output="counts"``:
    ``{"source", "matched", "scored", "to_score", "records", "unknown"}``, a few bytes at any
    number of objects (``scored``: objects unchanged since a complete read; ``to_score``: objects
    to read; ``records``: the documents the history knows in them, from their last read;
    ``unknown``: objects to read never read before), and give the operator the same ``source``
    with ``.expand(shard=...)``. Use ``mode="reschedule"`` for long waits; the listing is redone
    at every poke.

    :param source: a URI glob, prefix or object, an ``ObjectStoragePath``, or a list of those. (templated)
    :param source_conn_id: the storage connection; default the one named in each URI, else
        the scheme's default. (templated)
    :param min_objects: how many objects must count before the sensor succeeds.
    :param sql_conn_id: a SQL connection (any ``DbApiHook``) with the averages table; when
        set, only objects not yet scored count. (templated)
    :param averages_table: the averages table, ``name`` or ``schema.name``. (templated)
    :param results_path: the operator's ``results_path``: without ``sql_conn_id``, only objects its
        load history (beside the results) has not read at their listed version count. (templated)
    :param results_conn_id: the operator's ``results_conn_id``. (templated)
    :param format: the operator's ``format``. (templated)
    :param text_field: the operator's ``text_field``. (templated)
    :param id_field: the operator's ``id_field``. (templated)
    :param key_namespace: the operator's ``key_namespace`` (the operator's default is
        ``<dag_id>.<operator task_id>``); None counts a read in any namespace. (templated)
    :param xcom_output: ``"uris"`` or ``"counts"`` (see above).
    :param claims: a listing id (e.g. ``"{{ dag.dag_id }}/{{ run_id }}"``; the ``counts`` XCom
        carries it as ``listing``): on success the objects
        that count are published there, in the database of ``sql_conn_id``, as batches the
        operator's ``claims=`` takes, so the run lists the source once, here
        (:mod:`~airflow_provider_dgsentiment.storage.work_claims`). A deferred sensor lists once
        more when it resumes (the trigger's event carries counts, not 100k names). (templated)
    :param deferrable: after one poke in the worker, wait in the triggerer
        (:class:`~airflow_provider_dgsentiment.triggers.sentiment.DeepgramObjectsTrigger`);
        default Airflow's ``operators.default_deferrable``. The trigger carries the sensor's
        ``timeout`` as its own deadline and fails the task with ``AirflowSensorTimeout`` when it
        passes, also under ``airflow dags test``; SIGTERM stops it.
    :param path: deprecated name of ``source``.
    :param conn_id: deprecated name of ``source_conn_id``.
    """

    template_fields: Sequence[str] = (
        "source",
        "source_conn_id",
        "sql_conn_id",
        "averages_table",
        "results_path",
        "results_conn_id",
        "format",
        "text_field",
        "id_field",
        "key_namespace",
        "claims",
    )
    template_fields_renderers = {"source": "py"}
    ui_color = "#13ef93"

    def __init__(
        self,
        *,
        source: Any = None,
        source_conn_id: str | None = None,
        min_objects: int = 1,
        sql_conn_id: str | None = None,
        averages_table: str = DEFAULT_AVERAGES_TABLE,
        results_path: str | None = None,
        results_conn_id: str | None = None,
        format: str = "auto",
        text_field: str = "text",
        id_field: str | None = None,
        key_namespace: str | None = None,
        xcom_output: str = "uris",
        claims: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        path: Any = None,
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if path is not None:
            warnings.warn(
                "DeepgramSentimentSensor(path=...) is deprecated: use source=..., as for the operator",
                AirflowProviderDeprecationWarning,
                stacklevel=2,
            )
            if source is not None:
                raise DeepgramConfigurationError("Give source or its deprecated name path, not both")
            source = path
        if conn_id is not None:
            warnings.warn(
                "DeepgramSentimentSensor(conn_id=...) is deprecated: use source_conn_id=..., as for the operator",
                AirflowProviderDeprecationWarning,
                stacklevel=2,
            )
            if source_conn_id is not None:
                raise DeepgramConfigurationError("Give source_conn_id or its deprecated name conn_id, not both")
            source_conn_id = conn_id
        self.source = source
        self.source_conn_id = source_conn_id
        self.min_objects = min_objects
        self.sql_conn_id = sql_conn_id
        self.averages_table = averages_table
        self.results_path = results_path
        self.results_conn_id = results_conn_id
        self.format = format
        self.text_field = text_field
        self.id_field = id_field
        self.key_namespace = key_namespace
        self.xcom_output = xcom_output
        self.claims = claims
        self.deferrable = deferrable

    def execute(self, context: Context) -> Any:
        self._check_arguments()
        if not self.deferrable:
            return super().execute(context)
        # Poke once in the worker: when enough objects are there already, there is no deferral.
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=DeepgramObjectsTrigger(
                source=[str(entry) for entry in source_entries(self.source)],
                source_conn_id=self.source_conn_id or None,
                min_objects=self.min_objects,
                sql_conn_id=self.sql_conn_id or None,
                averages_table=self.averages_table,
                poke_interval=self.poke_interval,
                return_uris=self.xcom_output == "uris",
                deadline=(datetime.now(timezone.utc) + timedelta(seconds=self.timeout)).isoformat(),
                reading=self._reading(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Return what the trigger found (the sensor's XCom value); raise what went wrong when it failed."""
        payload = check_event(event, f"Waiting for objects at {self._describe_source()}")
        self.log.info("%s: %s", self._describe_source(), payload.get("message"))
        sensed = SensedObjects(
            matched=int(payload["matched"]),
            uris=list(payload.get("uris") or []),
            scored=int(payload["scored"]),
            records=int(payload.get("records") or 0),
            unknown=int(payload.get("unknown") or 0),
        )
        if self.claims:
            self._publish(lambda: self.find_objects().versions)
        return self._xcom_value(sensed, int(payload.get("to_score", len(sensed.uris))))

    def _check_arguments(self) -> None:
        """Check the rendered arguments; raise :class:`DeepgramConfigurationError` saying what is wrong."""
        if not source_entries(self.source):
            raise DeepgramConfigurationError("source must name a URI, a glob or a prefix, got nothing")
        check_min_objects(self.min_objects)
        if self.xcom_output not in SENSOR_XCOM_OUTPUTS:
            raise DeepgramConfigurationError(
                f"xcom_output must be one of {', '.join(map(repr, SENSOR_XCOM_OUTPUTS))}, got {self.xcom_output!r}"
            )
        if self.sql_conn_id:
            validate_table_name(self.averages_table, "averages_table")
        if self.claims and not self.sql_conn_id:
            raise DeepgramConfigurationError("claims needs sql_conn_id: the listing is published in that database")
        if self.format not in FORMATS:
            raise DeepgramConfigurationError(
                f"format must be one of {', '.join(map(repr, FORMATS))}, got {self.format!r}"
            )

    def _reading(self) -> dict[str, Any]:
        """
        The operator's reading options, as ``find_objects`` takes them (plain JSON for the trigger);
        and its ``results_path`` when the load history lives there (no ``sql_conn_id``).
        """
        reading = {
            "format": self.format,
            "text_field": self.text_field,
            "id_field": self.id_field or None,
            "key_namespace": self.key_namespace or None,
        }
        if self.results_path and not self.sql_conn_id:
            reading.update(results_path=str(self.results_path), results_conn_id=self.results_conn_id or None)
        return reading

    def find_objects(self) -> SensedObjects:
        """Look at the storage (and the operator's load history) once."""
        return find_objects(
            self.source,
            self.source_conn_id or None,
            sql_conn_id=self.sql_conn_id or None,
            averages_table=self.averages_table,
            log=self.log,
            **self._reading(),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        self._check_arguments()
        sensed = self.find_objects()
        done = len(sensed.uris) >= self.min_objects
        shown = first_and_more(sensed.uris)
        if self.sql_conn_id or self.results_path:
            self.log.info(
                "%s matches %d object(s), %d unchanged since their last complete read into %s, "
                "%d new or changed to read (need %d)%s",
                self._describe_source(),
                sensed.matched,
                sensed.scored,
                self.averages_table if self.sql_conn_id else self.results_path,
                len(sensed.uris),
                self.min_objects,
                f": {shown}" if shown else "",
            )
        else:
            self.log.info(
                "%s matches %d object(s) (need %d)%s",
                self._describe_source(),
                sensed.matched,
                self.min_objects,
                f": {shown}" if shown else "",
            )
        if done and self.claims:
            self._publish(sensed.versions)
        return PokeReturnValue(is_done=done, xcom_value=self._xcom_value(sensed, len(sensed.uris)) if done else None)

    def _publish(self, versions: Any) -> None:
        assert self.sql_conn_id and self.claims  # checked in _check_arguments
        published = publish_names(versions, sql_conn_id=self.sql_conn_id, listing=self.claims)
        self.log.info(
            "Listing %s: %s object(s) in %d batch(es)", self.claims, published["objects"], published["batches"]
        )

    def _xcom_value(self, sensed: SensedObjects, to_score: int) -> Any:
        if self.xcom_output == "uris":
            return sensed.uris
        counts = {
            "source": [str(entry) for entry in source_entries(self.source)],
            "matched": sensed.matched,
            "scored": sensed.scored,
            "to_score": to_score,
            "records": sensed.records,
            "unknown": sensed.unknown,
        }
        if self.claims:
            counts["listing"] = self.claims  # the operator's claims=
        return counts

    def _describe_source(self) -> str:
        return describe_entries(source_entries(self.source))
