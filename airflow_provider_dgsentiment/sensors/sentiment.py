"""DeepgramSentimentSensor: wait for text objects to score, in any ``ObjectStoragePath`` storage."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, first_and_more
from airflow_provider_dgsentiment.run.events import check_event
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

    With ``sql_conn_id`` only objects not yet scored count: those whose URI is not a
    ``source`` in ``averages_table`` (the operator's table of one row per document).
    While every match is scored the sensor keeps waiting, until ``timeout``.

    The XCom value (a ``PokeReturnValue``) is, with ``xcom_output="uris"`` (default), the
    sorted list of the URIs that count, without connection id, ready for
    ``DeepgramSentimentOperator(source=...)``. For big listings use ``xcom_output="counts"``:
    ``{"source", "matched", "scored", "to_score"}``, a few bytes at any number of objects,
    and give the operator the same ``source`` with ``.expand(shard=...)``. Use
    ``mode="reschedule"`` for long waits; the listing is redone at every poke.

    :param source: a URI glob, prefix or object, an ``ObjectStoragePath``, or a list of those. (templated)
    :param source_conn_id: the storage connection; default the one named in each URI, else
        the scheme's default. (templated)
    :param min_objects: how many objects must count before the sensor succeeds.
    :param sql_conn_id: a SQL connection (any ``DbApiHook``) with the averages table; when
        set, only objects not yet scored count. (templated)
    :param averages_table: the averages table, ``name`` or ``schema.name``. (templated)
    :param xcom_output: ``"uris"`` or ``"counts"`` (see above).
    :param claims: a listing id (added to the ``counts`` XCom as ``listing``) (e.g. ``"{{ dag.dag_id }}/{{ run_id }}"``): on success the objects
        that count are published there, in the database of ``sql_conn_id``, as batches the
        operator's ``claims=`` takes, so the run lists the source once, here
        (:mod:`~airflow_provider_dgsentiment.storage.work_claims`). A deferred sensor lists once
        more when it resumes (the trigger's event carries counts, not 100k names). (templated)
    :param deferrable: after one poke in the worker, wait in the triggerer
        (:class:`~airflow_provider_dgsentiment.triggers.sentiment.DeepgramObjectsTrigger`);
        default Airflow's ``operators.default_deferrable``.
    :param path: deprecated name of ``source``.
    :param conn_id: deprecated name of ``source_conn_id``.
    """

    template_fields: Sequence[str] = ("source", "source_conn_id", "sql_conn_id", "averages_table", "claims")
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
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Return what the trigger found (the sensor's XCom value); raise what went wrong when it failed."""
        payload = check_event(event, f"Waiting for objects at {self._describe_source()}")
        self.log.info("%s: %s", self._describe_source(), payload.get("message"))
        sensed = SensedObjects(
            matched=int(payload["matched"]), uris=list(payload.get("uris") or []), scored=int(payload["scored"])
        )
        if self.claims:
            self._publish(lambda: self.find_objects().uris)
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

    def find_objects(self) -> SensedObjects:
        """Look at the storage (and the averages table) once."""
        return find_objects(
            self.source,
            self.source_conn_id or None,
            sql_conn_id=self.sql_conn_id or None,
            averages_table=self.averages_table,
            log=self.log,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        self._check_arguments()
        sensed = self.find_objects()
        done = len(sensed.uris) >= self.min_objects
        shown = first_and_more(sensed.uris)
        if self.sql_conn_id:
            self.log.info(
                "%s matches %d object(s), %d already scored in %s, %d to score (need %d)%s",
                self._describe_source(),
                sensed.matched,
                sensed.scored,
                self.averages_table,
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
            self._publish(sensed.uris)
        return PokeReturnValue(is_done=done, xcom_value=self._xcom_value(sensed, len(sensed.uris)) if done else None)

    def _publish(self, uris: Any) -> None:
        assert self.sql_conn_id and self.claims  # checked in _check_arguments
        published = publish_names(uris, sql_conn_id=self.sql_conn_id, listing=self.claims)
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
        }
        if self.claims:
            counts["listing"] = self.claims  # the operator's claims=
        return counts

    def _describe_source(self) -> str:
        return describe_entries(source_entries(self.source))
