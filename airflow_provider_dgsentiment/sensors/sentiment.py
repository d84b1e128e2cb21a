"""DeepgramSentimentSensor: wait for text objects to score, in any ``ObjectStoragePath`` storage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, ObjectStoragePath, PokeReturnValue, conf

from airflow_provider_dgsentiment.documents import list_documents
from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError
from airflow_provider_dgsentiment.warehouse import DEFAULT_AVERAGES_TABLE, WarehouseWriter, validate_table_name

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: URIs named in a log line at most; the rest are counted.
MAX_LOGGED_URIS = 5


@dataclass(frozen=True)
class SensedObjects:
    """
    What one look at the storage found.

    :param matched: how many objects match the path.
    :param uris: the objects that count, sorted: every match, or only the unscored ones.
    :param scored: how many matches are already in the averages table (0 when not checked).
    """

    matched: int
    uris: list[str] = field(default_factory=list)
    scored: int = 0


def path_entries(path: Any) -> list[str | ObjectStoragePath]:
    """
    Return ``path`` as a non-empty list of URIs or ``ObjectStoragePath`` objects.

    :param path: a URI (glob, prefix or one object), an ``ObjectStoragePath``, or a list of those.
    :raises DeepgramConfigurationError: saying what is wrong with ``path``.
    """
    if isinstance(path, ObjectStoragePath):
        return [path]
    if isinstance(path, str):
        if not path.strip():
            raise DeepgramConfigurationError("path must name a URI, a glob or a prefix, got an empty string")
        return [path.strip()]
    if isinstance(path, (list, tuple)):
        if not path:
            raise DeepgramConfigurationError("path must name at least one URI, got an empty list")
        entries: list[str | ObjectStoragePath] = []
        for index, entry in enumerate(path):
            if isinstance(entry, ObjectStoragePath):
                entries.append(entry)
            elif isinstance(entry, str) and entry.strip():
                entries.append(entry.strip())
            else:
                raise DeepgramConfigurationError(
                    f"path[{index}] must be a URI string or ObjectStoragePath, got {entry!r}"
                )
        return entries
    raise DeepgramConfigurationError(
        f"path must be a URI, an ObjectStoragePath or a list of those, got {type(path).__name__}"
    )


def check_min_objects(min_objects: Any) -> int:
    """Return ``min_objects`` when it is a whole number of at least 1; raise otherwise."""
    if isinstance(min_objects, bool) or not isinstance(min_objects, int) or min_objects < 1:
        raise DeepgramConfigurationError(f"min_objects must be a whole number of at least 1, got {min_objects!r}")
    return min_objects


def find_objects(
    path: Any,
    conn_id: str | None = None,
    *,
    sql_conn_id: str | None = None,
    averages_table: str = DEFAULT_AVERAGES_TABLE,
) -> SensedObjects:
    """
    List the objects ``path`` matches and, with ``sql_conn_id``, keep those not yet scored.

    This is the whole of one poke, in one blocking call: the sensor calls it in
    the worker, a trigger can call it with ``asyncio.to_thread``. An object counts as
    scored when its name (URI without connection id, as the operator stores it) is a
    ``source`` in the averages table; a missing table means nothing is scored yet.

    :param path: a URI glob, prefix or object, an ``ObjectStoragePath``, or a list of those.
    :param conn_id: the storage connection; None uses the one in each URI (or the scheme's default).
    :param sql_conn_id: a SQL connection holding the averages table; None counts every match.
    :param averages_table: the averages table (``name`` or ``schema.name``).
    :raises DeepgramConfigurationError: for a bad ``path`` or table name.
    :raises DeepgramError: naming the entry when the storage cannot be listed.
    """
    entries = path_entries(path)
    if sql_conn_id:
        validate_table_name(averages_table, "averages_table")
    found: dict[str, None] = {}
    for entry in entries:
        try:
            found.update(dict.fromkeys(list_documents(entry, conn_id or None)))
        except Exception as exc:  # storage backends raise their own families (botocore, OSError, ...)
            raise DeepgramError(f"Could not list path {entry}: {type(exc).__name__}: {exc}") from exc
    matched = sorted(found)
    if not sql_conn_id or not matched:
        return SensedObjects(matched=len(matched), uris=matched)
    with WarehouseWriter(sql_conn_id, averages_table=averages_table) as writer:
        scored = writer.known_sources(matched)
    unscored = [uri for uri in matched if uri not in scored]
    return SensedObjects(matched=len(matched), uris=unscored, scored=len(matched) - len(unscored))


class DeepgramSentimentSensor(BaseSensorOperator):
    """
    Wait until at least ``min_objects`` text objects match ``path``; return their URIs.

    ``path`` is anything ``ObjectStoragePath`` reads (``file://``, ``s3://conn@bucket/...``,
    ``gs://``, ...): a glob (``s3://bucket/in/*.txt``), a prefix or folder (every object
    under it) or one object, or a list of those. Hidden objects (``.name``) never count.

    With ``sql_conn_id`` only objects not yet scored count: those whose URI is not a
    ``source`` in ``averages_table`` (the operator's table of one row per document).
    While every match is scored the sensor keeps waiting, until ``timeout``.

    The XCom value (a ``PokeReturnValue``) is the sorted list of the URIs that count,
    without connection id, ready for ``DeepgramSentimentOperator(source=...)`` or for
    ``.expand()`` over batches of it. Give the operator the same storage connection.
    Use ``mode="reschedule"`` for long waits; the list is rebuilt at every poke.

    :param path: a URI glob, prefix or object, an ``ObjectStoragePath``, or a list of those. (templated)
    :param conn_id: the storage connection; default the one named in each URI, else the
        scheme's default. (templated)
    :param min_objects: how many objects must count before the sensor succeeds.
    :param sql_conn_id: a SQL connection (any ``DbApiHook``) with the averages table; when
        set, only objects not yet scored count. (templated)
    :param averages_table: the averages table, ``name`` or ``schema.name``. (templated)
    :param deferrable: after one poke in the worker, wait in the triggerer
        (:class:`~airflow_provider_dgsentiment.triggers.sentiment.DeepgramObjectsTrigger`);
        default Airflow's ``operators.default_deferrable``.
    """

    template_fields: Sequence[str] = ("path", "conn_id", "sql_conn_id", "averages_table")
    template_fields_renderers = {"path": "py"}
    ui_color = "#13ef93"

    def __init__(
        self,
        *,
        path: str | ObjectStoragePath | list[str | ObjectStoragePath],
        conn_id: str | None = None,
        min_objects: int = 1,
        sql_conn_id: str | None = None,
        averages_table: str = DEFAULT_AVERAGES_TABLE,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.conn_id = conn_id
        self.min_objects = min_objects
        self.sql_conn_id = sql_conn_id
        self.averages_table = averages_table
        self.deferrable = deferrable

    def execute(self, context: Context) -> Any:
        self._check_arguments()
        if not self.deferrable:
            return super().execute(context)
        # Poke once in the worker: when enough objects are there already, there is no deferral.
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        from airflow_provider_dgsentiment.triggers.sentiment import DeepgramObjectsTrigger

        self.defer(
            trigger=DeepgramObjectsTrigger(
                path=[str(entry) for entry in path_entries(self.path)],
                conn_id=self.conn_id or None,
                min_objects=self.min_objects,
                sql_conn_id=self.sql_conn_id or None,
                averages_table=self.averages_table,
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[str]:
        """Return the URIs the trigger found; raise what went wrong when it failed."""
        if not isinstance(event, dict) or event.get("status") != "success":
            message = event.get("message") if isinstance(event, dict) else f"unexpected event {type(event).__name__}"
            if isinstance(event, dict) and event.get("error_class") == DeepgramConfigurationError.__name__:
                raise DeepgramConfigurationError(message)
            raise DeepgramError(f"Waiting for objects at {self._describe_path()} failed: {message}")
        uris = list(event["uris"])
        self.log.info("%s: %d object(s) to score", self._describe_path(), len(uris))
        return uris

    def _check_arguments(self) -> None:
        """Check the rendered arguments; raise :class:`DeepgramConfigurationError` saying what is wrong."""
        path_entries(self.path)
        check_min_objects(self.min_objects)
        if self.sql_conn_id:
            validate_table_name(self.averages_table, "averages_table")

    def find_objects(self) -> SensedObjects:
        """Look at the storage (and the averages table) once."""
        return find_objects(
            self.path,
            self.conn_id or None,
            sql_conn_id=self.sql_conn_id or None,
            averages_table=self.averages_table,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        self._check_arguments()
        sensed = self.find_objects()
        done = len(sensed.uris) >= self.min_objects
        shown = ", ".join(sensed.uris[:MAX_LOGGED_URIS]) + (
            f" and {len(sensed.uris) - MAX_LOGGED_URIS} more" if len(sensed.uris) > MAX_LOGGED_URIS else ""
        )
        if self.sql_conn_id:
            self.log.info(
                "%s matches %d object(s), %d already scored in %s, %d to score (need %d)%s",
                self._describe_path(),
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
                self._describe_path(),
                sensed.matched,
                self.min_objects,
                f": {shown}" if shown else "",
            )
        return PokeReturnValue(is_done=done, xcom_value=sensed.uris if done else None)

    def _describe_path(self) -> str:
        entries = path_entries(self.path)
        text = ", ".join(str(entry) for entry in entries[:MAX_LOGGED_URIS])
        return text + (f" (and {len(entries) - MAX_LOGGED_URIS} more)" if len(entries) > MAX_LOGGED_URIS else "")
