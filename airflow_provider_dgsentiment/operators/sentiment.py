"""DeepgramSentimentOperator: score documents or inline text with Deepgram's Sentiment Analysis."""

from __future__ import annotations

import ast
import posixpath
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseOperator, ObjectStoragePath, conf

from airflow_provider_dgsentiment.documents import (
    GLOB_CHARACTERS,
    SKIP_EMPTY,
    LoadedDocument,
    document_name,
    fingerprint,
    iter_document_texts,
    list_documents,
    storage_conn_id,
    storage_path,
)
from airflow_provider_dgsentiment.exceptions import (
    DeepgramAPIError,
    DeepgramConfigurationError,
    DeepgramError,
)
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook
from airflow_provider_dgsentiment.warehouse import (
    DEFAULT_AVERAGES_TABLE,
    DEFAULT_SEGMENTS_TABLE,
    RunIdentity,
    ScoredDocument,
    WarehouseWriter,
    batched,
    validate_table_name,
)

if TYPE_CHECKING:
    from logging import Logger

    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_dgsentiment.results import SentimentResult

XCOM_OUTPUTS = ("full", "summary", "none")
ON_ERROR_MODES = ("fail", "skip")
DEFAULT_PROGRESS_INTERVAL = 30.0
#: Documents per fingerprint lookup in the averages table (``skip_scored``).
FINGERPRINT_LOOKUP_BATCH = 200
#: Scored documents per SQL transaction; a crash loses at most this many scored documents.
WRITE_BATCH_SIZE = 200
#: Documents listed by name in a failure message or log line; the rest are counted.
MAX_LISTED_DOCUMENTS = 20
#: The name of the document when ``text`` is one string; a list gives ``text[0]``, ``text[1]``, ...
SINGLE_TEXT_NAME = "text"
SKIP_ALREADY_SCORED = "already scored (stored with the same content fingerprint)"
#: Input objects reported to OpenLineage one by one at most; more become their common folder.
MAX_LINEAGE_INPUTS = 100


@dataclass(frozen=True)
class DocumentPlan:
    """
    The documents one task run scores, in input order.

    :param names: the documents' names (URIs, or ``text``/``text[i]`` for inline text).
    :param texts: the inline texts, or None when the documents are read from storage.
    :param conn_id: the storage connection for reading ``names``.
    :param description: what was asked for, for log lines (a pattern, never document text).
    :param stored_prefix: prepended to a name to make the ``source`` stored in SQL tables.
    """

    names: list[str]
    texts: list[str] | None
    conn_id: str | None
    description: str
    stored_prefix: str = ""

    @property
    def single_text(self) -> bool:
        return self.texts is not None and self.names == [SINGLE_TEXT_NAME]

    def documents(self) -> Iterator[LoadedDocument]:
        """Yield the documents in order, reading stored objects lazily with a bounded read-ahead."""
        if self.texts is not None:
            for name, text in zip(self.names, self.texts):
                yield LoadedDocument(source=name, text=text)
        else:
            yield from iter_document_texts(self.names, self.conn_id)


@dataclass
class ScoringOutcome:
    """
    What happened to each document of a run.

    :param total: number of documents.
    :param keep: which per-document items to keep: ``"full"``, ``"summary"`` or ``"none"``.
    """

    total: int
    keep: str
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    #: Documents written to SQL.
    stored: int = 0
    #: Per-document XCom items in input order (empty for ``keep="none"``).
    items: list[dict[str, Any] | None] = field(default_factory=list)
    #: ``(name, reason)`` of the first failures, up to ``MAX_LISTED_DOCUMENTS``.
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: Names of the first empty documents, up to ``MAX_LISTED_DOCUMENTS``.
    empty: list[str] = field(default_factory=list)
    empty_count: int = 0
    #: The error that stopped the run (bad key, no credit, unsupported language), if any.
    systemic_error: DeepgramAPIError | None = None

    def __post_init__(self) -> None:
        if self.keep != "none" and not self.items:
            self.items = [None] * self.total

    @property
    def processed(self) -> int:
        return self.scored + self.skipped + self.failed

    def record_scored(self, position: int, name: str, result: SentimentResult) -> None:
        self.scored += 1
        if self.keep == "full":
            self.items[position] = {"source": name, **result.to_dict()}
        elif self.keep == "summary":
            average = result.average
            self.items[position] = _summary_item(
                name,
                "scored",
                sentiment=average.sentiment,
                sentiment_score=average.sentiment_score,
                segment_count=len(result.segments),
                request_id=result.request_id,
            )

    def record_skipped(self, position: int, name: str, reason: str) -> None:
        self.skipped += 1
        if reason == SKIP_EMPTY:
            self.empty_count += 1
            if len(self.empty) < MAX_LISTED_DOCUMENTS:
                self.empty.append(name)
        if self.keep == "full":
            self.items[position] = {"source": name, "status": "skipped", "reason": reason}
        elif self.keep == "summary":
            self.items[position] = _summary_item(name, "skipped", reason=reason)

    def record_failed(self, position: int, name: str, reason: str, request_id: str | None = None) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED_DOCUMENTS:
            self.failures.append((name, reason))
        if self.keep == "full":
            self.items[position] = {"source": name, "status": "failed", "error": reason}
        elif self.keep == "summary":
            self.items[position] = _summary_item(name, "failed", request_id=request_id, error=reason)

    def to_state(self, pending: int) -> dict[str, Any]:
        """
        Return the outcome so far as plain JSON, to finish it after a deferral (see :meth:`from_state`).

        :param pending: how many documents go to the trigger; their ``items`` entries are None.
        """
        return {
            "total": self.total,
            "keep": self.keep,
            "scored": self.scored,
            "skipped": self.skipped,
            "failed": self.failed,
            "items": list(self.items),
            "failures": [[name, reason] for name, reason in self.failures],
            "empty": list(self.empty),
            "empty_count": self.empty_count,
            "pending": pending,
        }

    @classmethod
    def from_state(cls, state: Any) -> tuple[ScoringOutcome, list[int]]:
        """
        Rebuild an outcome from :meth:`to_state`; return it with the positions of the pending documents.

        :raises DeepgramError: when ``state`` is not what :meth:`to_state` returns.
        """
        try:
            outcome = cls(
                total=int(state["total"]),
                keep=str(state["keep"]),
                scored=int(state["scored"]),
                skipped=int(state["skipped"]),
                failed=int(state["failed"]),
                items=list(state["items"]),
                failures=[(str(name), str(reason)) for name, reason in state["failures"]],
                empty=[str(name) for name in state["empty"]],
                empty_count=int(state["empty_count"]),
            )
            pending = int(state["pending"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DeepgramError(
                f"The trigger event carries no usable resume_state ({type(exc).__name__}: {exc})"
            ) from None
        if outcome.keep == "none":
            # Nothing is kept per document, so positions do not matter.
            return outcome, [0] * pending
        positions = [position for position, item in enumerate(outcome.items) if item is None]
        if len(positions) != pending or len(outcome.items) != outcome.total:
            raise DeepgramError(
                f"The trigger event's resume_state is inconsistent: {pending} pending document(s), "
                f"{len(positions)} open position(s)"
            )
        return outcome, positions

    def failure_lines(self) -> str:
        """One ``name: reason`` line per failure (the first few), then ``and N more``."""
        lines = [f"  {name}: {reason}" for name, reason in self.failures]
        if self.failed > len(self.failures):
            lines.append(f"  ... and {self.failed - len(self.failures)} more")
        return "\n".join(lines)


def _summary_item(
    name: str,
    status: str,
    *,
    sentiment: str | None = None,
    sentiment_score: float | None = None,
    segment_count: int | None = None,
    request_id: str | None = None,
    **extra: str,
) -> dict[str, Any]:
    return {
        "source": name,
        "status": status,
        "sentiment": sentiment,
        "sentiment_score": sentiment_score,
        "segment_count": segment_count,
        "request_id": request_id,
        **extra,
    }


class ProgressLog:
    """
    Log ``Processed n/total`` lines with rate and ETA, at most every ``interval`` seconds.

    :param log: the logger.
    :param total: number of documents.
    :param interval: seconds between lines.
    """

    def __init__(self, log: Logger, total: int, interval: float) -> None:
        self.log = log
        self.total = total
        self.interval = interval
        self.started = time.monotonic()
        self._next_at = self.started + interval
        self._last_logged: int | None = None

    def update(self, outcome: ScoringOutcome, *, final: bool = False) -> None:
        """Log a progress line when the interval has passed, or always when ``final``."""
        now = time.monotonic()
        if final and self._last_logged == outcome.processed:
            return
        if not final and now < self._next_at:
            return
        self._next_at = now + self.interval
        self._last_logged = outcome.processed
        elapsed = max(now - self.started, 1e-9)
        rate = outcome.processed / elapsed
        remaining = self.total - outcome.processed
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "unknown"
        self.log.info(
            "Processed %d/%d documents (scored %d, failed %d, skipped %d), %.1f docs/s, ETA %s",
            outcome.processed,
            self.total,
            outcome.scored,
            outcome.failed,
            outcome.skipped,
            rate,
            eta,
        )


class DeepgramSentimentOperator(BaseOperator):
    """
    Score documents or inline text with Deepgram's Sentiment Analysis.

    Give exactly one of ``text`` and ``source``. Documents are read lazily, scored
    with bounded concurrency and, when ``sql_conn_id`` is set, written to two tables
    every few hundred documents (so a crash mid-run keeps what was scored). Empty or
    whitespace-only documents are skipped without a request.

    **Names.** A document from ``source`` is named by its URI without connection id
    (``s3://bucket/key``, ``file:///abs/path``). Inline text is named ``text`` (one
    string) or ``text[0]``, ``text[1]``, ... (a list); in the SQL tables those names are
    qualified as ``inline://<dag_id>/<task_id>[/<map_index>]/<name>`` so that inline
    texts of different tasks never replace each other's rows.

    **Return value (XCom)**, plain JSON-safe data:

    - ``xcom_output="full"``: for one ``text`` string, one dict: the result in the API's
      response shape (``metadata``, ``results``) plus ``"source"``. Otherwise a list with
      one entry per document in input order: scored documents as that dict; skipped ones
      as ``{"source", "status": "skipped", "reason"}``; failed ones (``on_error="skip"``)
      as ``{"source", "status": "failed", "error"}``. Only scored entries have ``"results"``.
    - ``xcom_output="summary"``: ``{"documents", "scored", "skipped", "failed", "items"}``,
      ``items`` one per document in input order, each with ``source``, ``status``
      (``"scored"``/``"skipped"``/``"failed"``), ``sentiment``, ``sentiment_score``,
      ``segment_count``, ``request_id`` (None where they do not apply), plus ``reason``
      for skipped and ``error`` for failed documents. Use it for big runs.
    - ``xcom_output="none"``: None (results only in SQL); nothing per document is kept in memory.

    **Errors.** With ``on_error="fail"`` every document that can be scored is scored and
    stored, then the task fails naming each failed document and why. With
    ``on_error="skip"`` failures are logged and listed in the return value. A systemic
    error (bad key 401/403, no credit 402, unsupported language, wrong URL) stops sending
    at once whatever ``on_error`` says: what was scored is stored, then that typed error
    is raised saying how many documents were left unscored.

    :param text: a string or a list of strings to score. (templated)
    :param source: an object-storage URI, a glob, a folder/prefix, or a list of those
        (``file://``, ``s3://conn@bucket/key``, anything ``ObjectStoragePath`` reads);
        a string holding a list literal (e.g. a rendered sensor XCom) is read as that
        list. (templated)
    :param source_conn_id: the storage connection; default the one named in the URI. (templated)
    :param deepgram_conn_id: the ``deepgram`` connection holding the API key.
    :param language: the language code of the texts. (templated)
    :param sql_conn_id: a SQL connection (any ``DbApiHook``: SQLite, PostgreSQL, ...) to
        store results in; None stores nothing. (templated)
    :param segments_table: table of per-segment rows, ``name`` or ``schema.name``. (templated)
    :param averages_table: table of per-document rows, ``name`` or ``schema.name``. (templated)
    :param xcom_output: ``"full"``, ``"summary"`` or ``"none"`` (see above).
    :param on_error: ``"fail"`` or ``"skip"`` (see above).
    :param max_concurrency: requests in flight at most; default the connection's
        ``max_concurrency`` extra (10).
    :param deferrable: score in the triggerer instead of the worker (default from
        ``[operators] default_deferrable``). Documents from ``source`` are first read in the
        worker only to skip empty, unreadable and (with ``skip_scored``) already-scored ones
        without deferring; the rest are scored by
        :class:`~airflow_provider_dgsentiment.triggers.sentiment.DeepgramSentimentTrigger`
        with async I/O, and ``execute_complete`` stores the results and returns the same value,
        rows and errors as a run in the worker. With nothing left to score the task does not
        defer. Inline ``text`` is always scored in the worker (an INFO line says so), because
        document text must not go into trigger arguments, which Airflow stores in its database.
    :param skip_scored: with ``sql_conn_id``, skip documents already stored in the averages
        table with the same content fingerprint (sha256); a changed document is scored again
        and its rows replaced.
    :param fail_on_empty_source: fail when ``source`` matches no object; False logs a
        warning and succeeds with zero documents.
    :param progress_interval: seconds between progress log lines (a last line is always
        logged at the end).
    """

    template_fields: Sequence[str] = (
        "text",
        "source",
        "source_conn_id",
        "sql_conn_id",
        "segments_table",
        "averages_table",
        "language",
    )
    template_fields_renderers = {"text": "py", "source": "py"}
    ui_color = "#13ef93"

    def __init__(
        self,
        *,
        text: str | list[str] | None = None,
        source: str | ObjectStoragePath | list[str | ObjectStoragePath] | None = None,
        source_conn_id: str | None = None,
        deepgram_conn_id: str = DeepgramSentimentHook.default_conn_name,
        language: str = "en",
        sql_conn_id: str | None = None,
        segments_table: str = DEFAULT_SEGMENTS_TABLE,
        averages_table: str = DEFAULT_AVERAGES_TABLE,
        xcom_output: str = "full",
        on_error: str = "fail",
        max_concurrency: int | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        skip_scored: bool = True,
        fail_on_empty_source: bool = True,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.text = text
        self.source = source
        self.source_conn_id = source_conn_id
        self.deepgram_conn_id = deepgram_conn_id
        self.language = language
        self.sql_conn_id = sql_conn_id
        self.segments_table = segments_table
        self.averages_table = averages_table
        self.xcom_output = xcom_output
        self.on_error = on_error
        self.max_concurrency = max_concurrency
        self.deferrable = deferrable
        self.skip_scored = skip_scored
        self.fail_on_empty_source = fail_on_empty_source
        self.progress_interval = progress_interval
        self._run_identity = RunIdentity()
        #: What the run read, for OpenLineage: object URIs or ``source`` patterns; None before planning.
        self._lineage_sources: list[str] | None = None

    @cached_property
    def hook(self) -> DeepgramSentimentHook:
        """The Deepgram hook (built on first use, in the worker)."""
        return DeepgramSentimentHook(deepgram_conn_id=self.deepgram_conn_id, max_concurrency=self.max_concurrency)

    @cached_property
    def writer(self) -> WarehouseWriter | None:
        """The SQL writer, or None without ``sql_conn_id`` (built on first use)."""
        if not self.sql_conn_id:
            return None
        return WarehouseWriter(
            self.sql_conn_id,
            segments_table=self.segments_table,
            averages_table=self.averages_table,
            run=self._run_identity,
            write_batch_size=WRITE_BATCH_SIZE,
        )

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> Any:
        self._check_arguments()
        self._run_identity = _run_identity(self, context)
        plan = self._plan_documents(context)
        self._lineage_sources = plan.names if plan.texts is None else []
        if self.deferrable and plan.texts is None:
            return self._defer_scoring(plan)
        if self.deferrable:
            self.log.info(
                "deferrable=True: scoring the inline text in this worker, because document text must "
                "not go into trigger arguments (give the documents as source to score in the triggerer)"
            )
        try:
            outcome = self._score_documents(plan)
        finally:
            self._close()
        return self._finish(outcome, single_text=plan.single_text)

    def _defer_scoring(self, plan: DocumentPlan) -> Any:
        """
        Settle what needs no request here, then defer the rest to :class:`DeepgramSentimentTrigger`.

        The documents are read in the worker only to find empty ones, unreadable ones and
        (with ``skip_scored``) already-scored ones; their text is not kept. With nothing left
        to score, the run finishes here without deferring.
        """
        from airflow_provider_dgsentiment.triggers.sentiment import DeepgramSentimentTrigger

        outcome = ScoringOutcome(total=len(plan.names), keep=self.xcom_output)
        progress = ProgressLog(self.log, outcome.total, float(self.progress_interval))
        self.log.info(
            "Checking %d document(s) from %s before deferring (sql_conn_id=%s, skip_scored=%s)",
            outcome.total,
            plan.description,
            self.sql_conn_id,
            self.skip_scored,
        )
        try:
            if self.writer is not None:
                self.writer.ensure_tables()
            screened = self._screen_documents(plan, outcome, progress)
            with closing(screened):
                pending = [(position, name) for position, name, _, _ in screened]
        finally:
            self._close()
        if not pending:
            progress.update(outcome, final=True)
            self.log.info("Nothing left to score: not deferring")
            return self._finish(outcome)
        self.log.info(
            "Deferring %d of %d document(s) to the triggerer (language=%s, max_concurrency=%s)",
            len(pending),
            outcome.total,
            self.language,
            self.max_concurrency or "from connection",
        )
        self.defer(
            trigger=DeepgramSentimentTrigger(
                deepgram_conn_id=self.deepgram_conn_id,
                uris=[name for _, name in pending],
                source_conn_id=plan.conn_id,
                language=self.language,
                max_concurrency=self.max_concurrency,
                resume_state=outcome.to_state(pending=len(pending)),
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """
        Finish a deferred run: store the trigger's results and return what ``execute`` returns in a worker.

        Same XCom value, same SQL rows, same failure messages and the same typed errors as
        scoring in the worker.

        :param context: the task context.
        :param event: the payload of :class:`DeepgramSentimentTrigger`'s event.
        :raises DeepgramAPIError: the typed error of an ``"error"`` event, or the systemic
            error that stopped the run.
        :raises DeepgramError: for failed documents (``on_error="fail"``) or an unexpected event.
        """
        documents, state = _checked_event(event)
        outcome, positions = ScoringOutcome.from_state(state)
        if len(positions) != len(documents):
            raise DeepgramError(
                f"The trigger event has {len(documents)} document(s) for {len(positions)} deferred document(s)"
            )
        self._run_identity = _run_identity(self, context)
        self._lineage_sources = _resumed_sources(outcome, documents, self.source)
        progress = ProgressLog(self.log, outcome.total, float(self.progress_interval))
        self.log.info("Resumed from the triggerer: storing the results of %d document(s)", len(documents))
        try:
            if self.writer is not None:
                self.writer.ensure_tables()
            self._record_results(outcome, progress, _event_results(outcome, positions, documents))
        finally:
            self._close()
        return self._finish(outcome)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """
        Return the run's OpenLineage lineage: the objects read as inputs, the two tables as outputs.

        Inline ``text`` has no inputs; more than ``MAX_LINEAGE_INPUTS`` objects in one
        namespace are reported as their common folder. Outputs follow the SQL operators'
        naming: the namespace from the hook's ``get_openlineage_database_info`` (else
        ``<conn_type>://<host>[:<port>]``) and ``[database.]schema.table`` names. Uses what
        the run recorded; returns None without the OpenLineage provider.

        :param task_instance: the finished task instance (unused).
        """
        try:
            from airflow.providers.common.compat.openlineage.facet import Dataset
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        if self._lineage_sources is None:  # failed before it knew what to read
            return OperatorLineage()
        names_by_namespace: dict[str, dict[str, None]] = {}
        for uri in self._lineage_sources:
            namespace, name = _lineage_location(uri)
            names_by_namespace.setdefault(namespace, {})[name] = None
        inputs = []
        for namespace, names in names_by_namespace.items():
            if len(names) > MAX_LINEAGE_INPUTS:
                names = {posixpath.commonpath(list(names)) or "/": None}
            inputs.extend(Dataset(namespace=namespace, name=name) for name in names)
        return OperatorLineage(inputs=inputs, outputs=self._lineage_tables() if self.writer is not None else [])

    def _lineage_tables(self) -> list[Dataset]:
        """The two tables as OpenLineage datasets, named the way common.sql's operators name them."""
        from airflow.providers.common.compat.openlineage.facet import Dataset

        hook = self.writer.hook
        connection = hook.get_connection(self.sql_conn_id)
        info = hook.get_openlineage_database_info(connection)
        if info is not None:
            namespace = f"{info.scheme}://{info.authority}" if info.authority else info.scheme
            database = info.database
        else:  # the hook does not support OpenLineage (e.g. SQLite)
            port = f":{connection.port}" if connection.port else ""
            namespace, database = f"{connection.conn_type}://{connection.host or ''}{port}", None
        tables = (self.writer.segments_table, self.writer.averages_table)
        # PostgreSQL answers this with a query (its search_path), so ask only when a name needs it.
        default_schema = hook.get_openlineage_default_schema() if info and not all("." in t for t in tables) else None
        datasets = []
        for table in tables:
            schema, _, name = table.rpartition(".")
            parts = (database, schema or default_schema, name)
            datasets.append(Dataset(namespace=namespace, name=".".join(part for part in parts if part)))
        return datasets

    def _close(self) -> None:
        if "hook" in self.__dict__:
            self.hook.close()
        writer = self.__dict__.get("writer")
        if writer is not None:
            writer.close()

    def _check_arguments(self) -> None:
        """Check the rendered arguments; raise :class:`DeepgramConfigurationError` saying what is wrong."""
        if (self.text is None) == (self.source is None):
            raise DeepgramConfigurationError(
                "Give exactly one of text and source"
                + (" (both were given)" if self.text is not None else " (neither was given)")
            )
        if self.text is not None:
            if isinstance(self.text, (list, tuple)):
                for index, item in enumerate(self.text):
                    if not isinstance(item, str):
                        raise DeepgramConfigurationError(f"text[{index}] must be a string, got {type(item).__name__}")
            elif not isinstance(self.text, str):
                raise DeepgramConfigurationError(
                    f"text must be a string or a list of strings, got {type(self.text).__name__}"
                )
        if self.xcom_output not in XCOM_OUTPUTS:
            raise DeepgramConfigurationError(
                f"xcom_output must be one of {', '.join(map(repr, XCOM_OUTPUTS))}, got {self.xcom_output!r}"
            )
        if self.on_error not in ON_ERROR_MODES:
            raise DeepgramConfigurationError(
                f"on_error must be one of {', '.join(map(repr, ON_ERROR_MODES))}, got {self.on_error!r}"
            )
        if self.max_concurrency is not None and (
            isinstance(self.max_concurrency, bool)
            or not isinstance(self.max_concurrency, int)
            or self.max_concurrency < 1
        ):
            raise DeepgramConfigurationError(
                f"max_concurrency must be a whole number of at least 1, got {self.max_concurrency!r}"
            )
        if not isinstance(self.language, str) or not self.language.strip():
            raise DeepgramConfigurationError(f"language must be a language code such as 'en', got {self.language!r}")
        if (
            isinstance(self.progress_interval, bool)
            or not isinstance(self.progress_interval, (int, float))
            or self.progress_interval < 0
        ):
            raise DeepgramConfigurationError(
                f"progress_interval must be a number of seconds, 0 or more, got {self.progress_interval!r}"
            )
        validate_table_name(self.segments_table, "segments_table")
        validate_table_name(self.averages_table, "averages_table")

    def _plan_documents(self, context: Context) -> DocumentPlan:
        """Name the documents to score: the inline texts, or the objects ``source`` matches."""
        if self.text is not None:
            texts = [self.text] if isinstance(self.text, str) else list(self.text)
            names = [SINGLE_TEXT_NAME] if isinstance(self.text, str) else [f"text[{i}]" for i in range(len(texts))]
            return DocumentPlan(
                names=names,
                texts=texts,
                conn_id=None,
                description=f"{len(texts)} inline text(s)",
                stored_prefix=_inline_prefix(self, context),
            )

        entries = _source_entries(self.source)
        conn_id = self.source_conn_id or _conn_id_in_uris(entries)
        description = ", ".join(str(entry) for entry in entries[:5]) + (
            f" (and {len(entries) - 5} more)" if len(entries) > 5 else ""
        )
        if not entries:
            description = f"{self.source!r} (no URI given)"
        found: dict[str, None] = {}
        unmatched_patterns: list[str | ObjectStoragePath] = []
        for entry in entries:
            try:
                matches = list_documents(entry, conn_id)
            except Exception as exc:  # storage backends raise their own families (botocore, OSError, ...)
                raise DeepgramError(f"Could not list source {entry}: {type(exc).__name__}: {exc}") from exc
            found.update(dict.fromkeys(matches))
            if matches:
                continue
            path = storage_path(entry, conn_id)
            if _is_pattern(entry) or path.exists():  # a glob, or a folder with nothing in it
                unmatched_patterns.append(entry)
            else:
                # A named object that is gone: keep it, so reading it fails naming the object.
                found[document_name(path)] = None
        if not found:
            message = f"source {description} matched no objects"
            if self.fail_on_empty_source:
                raise DeepgramError(f"{message} (set fail_on_empty_source=False to succeed with zero documents)")
            self.log.warning("%s; nothing to score", message)
            return DocumentPlan(names=[], texts=None, conn_id=conn_id, description=f"source {description}")
        for entry in unmatched_patterns:
            self.log.warning("source entry %s matched no objects", entry)
        return DocumentPlan(names=sorted(found), texts=None, conn_id=conn_id, description=f"source {description}")

    def _score_documents(self, plan: DocumentPlan) -> ScoringOutcome:
        """
        Score every document of ``plan``, storing results in SQL as they complete.

        Unreadable documents are recorded as failed, empty ones and (with ``skip_scored``)
        already-scored ones as skipped, without a request. A systemic error stops sending;
        it is recorded in the outcome, not raised.

        :param plan: the documents.
        :return: what happened to each document.
        """
        outcome = ScoringOutcome(total=len(plan.names), keep=self.xcom_output)
        progress = ProgressLog(self.log, outcome.total, float(self.progress_interval))
        if self.writer is not None:
            self.writer.ensure_tables()
        self.log.info(
            "Scoring %d document(s) from %s (language=%s, max_concurrency=%s, sql_conn_id=%s)",
            outcome.total,
            plan.description,
            self.language,
            self.max_concurrency or "from connection",
            self.sql_conn_id,
        )
        if outcome.total == 0:
            progress.update(outcome, final=True)
            return outcome

        # analyze_many index -> (position in input, name, fingerprint)
        in_request: dict[int, tuple[int, str, str]] = {}
        screened = self._screen_documents(plan, outcome, progress)

        def texts_to_send() -> Iterator[str]:
            for sent, (position, name, content_key, text) in enumerate(screened):
                in_request[sent] = (position, name, content_key)
                yield text

        def tagged(results: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, str, str, Any]]:
            for index, result in results:
                position, name, content_key = in_request.pop(index)
                yield position, name, content_key, result

        texts = texts_to_send()
        results = self.hook.analyze_many(texts, language=self.language, max_concurrency=self.max_concurrency)
        with closing(results), closing(texts), closing(screened):
            self._record_results(outcome, progress, tagged(results), stored_prefix=plan.stored_prefix)
        return outcome

    def _screen_documents(
        self, plan: DocumentPlan, outcome: ScoringOutcome, progress: ProgressLog
    ) -> Iterator[tuple[int, str, str, str]]:
        """
        Read the documents in order; record those that need no request, yield the others.

        Unreadable documents are recorded as failed; empty ones, and with ``skip_scored``
        those already stored with the same content fingerprint, as skipped.

        :return: ``(position, name, fingerprint, text)`` of each document to score.
        """
        writer = self.writer
        lookup_batch = FINGERPRINT_LOOKUP_BATCH if writer is not None and self.skip_scored else 1
        documents = plan.documents()
        with closing(documents):
            for batch in batched(enumerate(documents), lookup_batch):
                prints = {position: fingerprint(doc.text) for position, doc in batch if doc.text and doc.text.strip()}
                stored = (
                    writer.stored_fingerprints(plan.stored_prefix + plan.names[position] for position in prints)
                    if lookup_batch > 1 and prints
                    else {}
                )
                for position, doc in batch:
                    name = plan.names[position]
                    if doc.error is not None:
                        outcome.record_failed(position, name, doc.error.reason)
                    elif position not in prints:
                        outcome.record_skipped(position, name, SKIP_EMPTY)
                    elif stored.get(plan.stored_prefix + name) == prints[position]:
                        outcome.record_skipped(position, name, SKIP_ALREADY_SCORED)
                    else:
                        yield position, name, prints[position], doc.text
                progress.update(outcome)

    def _record_results(
        self,
        outcome: ScoringOutcome,
        progress: ProgressLog,
        results: Iterable[tuple[int, str, str | None, SentimentResult | DeepgramAPIError]],
        *,
        stored_prefix: str = "",
    ) -> None:
        """
        Record each scored or failed document and store the scored ones in SQL, in batches.

        Shared by the worker (results of ``analyze_many``) and ``execute_complete`` (results
        of the trigger's event). The first systemic error is kept in ``outcome.systemic_error``.

        :param outcome: the outcome to complete.
        :param progress: the progress log.
        :param results: ``(position, name, fingerprint, result_or_error)`` as they complete.
        :param stored_prefix: prepended to the name to make the ``source`` stored in SQL.
        """
        writer = self.writer
        to_store: list[ScoredDocument] = []

        def store() -> None:
            if writer is None or not to_store:
                return
            batch = list(to_store)
            to_store.clear()
            writer.write(batch)
            outcome.stored += len(batch)

        try:
            for position, name, content_key, result in results:
                if isinstance(result, DeepgramAPIError):
                    outcome.record_failed(position, name, str(result), result.request_id)
                    if result.systemic and outcome.systemic_error is None:
                        outcome.systemic_error = result
                        self.log.error("Stopping: %s", result)
                else:
                    outcome.record_scored(position, name, result)
                    if writer is not None:
                        to_store.append(ScoredDocument(stored_prefix + name, str(content_key), result, self.language))
                        if len(to_store) >= WRITE_BATCH_SIZE:
                            store()
                progress.update(outcome)
        finally:
            store()
        progress.update(outcome, final=True)

    def _finish(self, outcome: ScoringOutcome, *, single_text: bool = False) -> Any:
        """
        Log what happened, raise for failures the caller asked to fail on, and return the XCom value.

        :param outcome: what happened to each document.
        :param single_text: the input was one ``text`` string: return its item, not a list.
        """
        if outcome.empty_count:
            more = outcome.empty_count - len(outcome.empty)
            self.log.warning(
                "Skipped %d empty document(s) without a request: %s%s",
                outcome.empty_count,
                ", ".join(outcome.empty),
                f" and {more} more" if more else "",
            )
        if outcome.skipped > outcome.empty_count:
            self.log.info("Skipped %d already-scored document(s)", outcome.skipped - outcome.empty_count)
        if self.writer is not None:
            self.log.info(
                "Stored %d document(s) in %s and %s",
                outcome.stored,
                self.writer.averages_table,
                self.writer.segments_table,
            )

        error = outcome.systemic_error
        if error is not None:
            left = outcome.total - outcome.scored - outcome.skipped
            stored = f"; the {outcome.scored} scored were stored" if self.writer is not None and outcome.scored else ""
            error.args = (f"{error} -- stopped the run: {left} of {outcome.total} document(s) left unscored{stored}",)
            raise error
        if outcome.failed:
            message = f"{outcome.failed} of {outcome.total} document(s) failed:\n{outcome.failure_lines()}"
            if self.on_error == "fail":
                raise DeepgramError(message)
            self.log.warning("%s", message)

        if self.xcom_output == "none":
            return None
        if self.xcom_output == "summary":
            return {
                "documents": outcome.total,
                "scored": outcome.scored,
                "skipped": outcome.skipped,
                "failed": outcome.failed,
                "items": outcome.items,
            }
        if single_text:
            return outcome.items[0]
        return outcome.items


def _checked_event(event: Any) -> tuple[list[dict[str, Any]], Any]:
    """Return ``(documents, resume_state)`` of a trigger's success event; raise the error an error event describes."""
    if not isinstance(event, dict) or event.get("status") not in ("success", "error"):
        shape = f"a dict with keys {sorted(event)}" if isinstance(event, dict) else type(event).__name__
        raise DeepgramError(f"Unexpected event from the triggerer: {shape}, not a status success/error event")
    if event["status"] == "error":
        raise _event_error(event)
    documents = event.get("documents")
    if not isinstance(documents, list) or not all(
        isinstance(document, dict) and isinstance(document.get("source"), str) for document in documents
    ):
        raise DeepgramError("The trigger's success event has no list of documents each with a source")
    return documents, event.get("resume_state")


def _event_error(event: dict[str, Any]) -> Exception:
    """The typed error an ``"error"`` event describes (the one the worker would have raised)."""
    from airflow_provider_dgsentiment.triggers.sentiment import api_error_from_dict

    message = str(event.get("message") or "no message")
    error = event.get("error")
    if isinstance(error, dict):
        return api_error_from_dict(error)
    error_class = event.get("error_class")
    if error_class == DeepgramConfigurationError.__name__:
        return DeepgramConfigurationError(message)
    if error_class == AirflowNotFoundException.__name__:
        return AirflowNotFoundException(message)
    return DeepgramError(f"Scoring in the triggerer failed: {f'{error_class}: ' if error_class else ''}{message}")


def _event_results(
    outcome: ScoringOutcome, positions: list[int], documents: list[dict[str, Any]]
) -> Iterator[tuple[int, str, str | None, SentimentResult | DeepgramAPIError]]:
    """
    Turn the trigger's per-document entries back into results and typed errors.

    Unreadable and empty objects are recorded in ``outcome`` on the way, as in the worker;
    objects not sent after a systemic error are left unrecorded, as in the worker.
    """
    from airflow_provider_dgsentiment.results import SentimentResult
    from airflow_provider_dgsentiment.triggers.sentiment import api_error_from_dict

    for position, document in zip(positions, documents):
        name = document["source"]
        if "result" in document:
            content_key = document.get("fingerprint")
            if not isinstance(content_key, str):
                raise DeepgramError(f"The trigger event's result for {name} has no fingerprint")
            yield position, name, content_key, SentimentResult.from_response(document["result"])
        elif isinstance(document.get("error"), dict):
            yield position, name, None, api_error_from_dict(document["error"])
        elif "read_error" in document:
            outcome.record_failed(position, name, str(document["read_error"]))
        elif "skipped" in document:
            outcome.record_skipped(position, name, str(document["skipped"]))
        elif "not_sent" not in document:
            raise DeepgramError(
                f"The trigger event's entry for {name} has none of result, error, read_error, skipped, not_sent"
            )


def _resumed_sources(outcome: ScoringOutcome, documents: list[dict[str, Any]], source: Any) -> list[str]:
    """What a resumed run read, for OpenLineage: every document's URI when known, else the ``source`` entries."""
    known = {item["source"] for item in outcome.items if item} | {document["source"] for document in documents}
    if len(known) == outcome.total:
        return sorted(known)
    # xcom_output="none" keeps no per-document items: only the deferred documents are known here.
    entries = _source_entries(source)
    return [document_name(entry) if isinstance(entry, ObjectStoragePath) else entry for entry in entries]


def _lineage_location(uri: str) -> tuple[str, str]:
    """
    Return the OpenLineage ``(namespace, name)`` of an object URI or ``source`` pattern.

    ``s3://[conn@]bucket/key`` gives ``("s3://bucket", "key")``, ``file:///abs/path`` gives
    ``("file", "/abs/path")``; a glob or folder gives the folder it lists.
    """
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


def _run_identity(task: BaseOperator, context: Context) -> RunIdentity:
    run_id = context.get("run_id")
    if run_id is None:
        dag_run = context.get("dag_run")
        run_id = getattr(dag_run, "run_id", None)
    return RunIdentity(dag_id=task.dag_id, task_id=task.task_id, run_id=run_id)


def _inline_prefix(task: BaseOperator, context: Context) -> str:
    """Return ``inline://<dag_id>/<task_id>[/<map_index>]/``, the SQL name prefix of inline text."""
    ti = context.get("ti") or context.get("task_instance")
    map_index = getattr(ti, "map_index", -1)
    mapped = f"/{map_index}" if isinstance(map_index, int) and map_index >= 0 else ""
    return f"inline://{task.dag_id}/{task.task_id}{mapped}/"


def _source_entries(source: Any) -> list[str | ObjectStoragePath]:
    """Return ``source`` as a list of URIs (a string holding a list literal is parsed)."""
    if isinstance(source, str):
        stripped = source.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            try:
                parsed = ast.literal_eval(stripped)
            except (ValueError, SyntaxError):
                raise DeepgramConfigurationError(f"source {source!r} looks like a list but is not one") from None
            return _source_entries(list(parsed))
        return [stripped] if stripped else []
    if isinstance(source, ObjectStoragePath):
        return [source]
    if isinstance(source, (list, tuple)):
        entries: list[str | ObjectStoragePath] = []
        for index, entry in enumerate(source):
            if isinstance(entry, ObjectStoragePath) or (isinstance(entry, str) and entry.strip()):
                entries.append(entry.strip() if isinstance(entry, str) else entry)
            else:
                raise DeepgramConfigurationError(
                    f"source[{index}] must be a URI string or ObjectStoragePath, got {entry!r}"
                )
        return entries
    raise DeepgramConfigurationError(
        f"source must be a URI, an ObjectStoragePath or a list of those, got {type(source).__name__}"
    )


def _is_pattern(entry: str | ObjectStoragePath) -> bool:
    """Return True for a glob or a folder (``.../``), False for what names one object."""
    text = str(entry)
    return text.endswith("/") or any(character in text for character in GLOB_CHARACTERS)


def _conn_id_in_uris(entries: list[str | ObjectStoragePath]) -> str | None:
    """Return the storage connection named in the URIs (``s3://conn@bucket/...``), if they agree on one."""
    conn_ids = {storage_conn_id(storage_path(entry)) for entry in entries} - {None}
    if len(conn_ids) > 1:
        raise DeepgramConfigurationError(
            f"source names several storage connections ({', '.join(sorted(conn_ids))}); "
            "give source_conn_id, or score each connection's objects in its own task"
        )
    return next(iter(conn_ids), None)
