"""DeepgramSentimentOperator: score documents or inline text with Deepgram's Sentiment Analysis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, conf

from airflow_provider_dgsentiment.exceptions import DeepgramConfigurationError, DeepgramError, first_and_more
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook
from airflow_provider_dgsentiment.run.events import OUTCOME_KEY, check_event
from airflow_provider_dgsentiment.run.outcome import (
    MAX_LISTED_DOCUMENTS,
    PER_DOCUMENT_OUTPUTS,
    XCOM_ITEMS_WARNING,
    XCOM_OUTPUTS,
    ScoringOutcome,
)
from airflow_provider_dgsentiment.run.scoring import (
    DEFAULT_PROGRESS_INTERVAL,
    WRITE_BATCH_SIZE,
    ScoringOptions,
    ScoringRun,
    too_many_for_the_event,
)
from airflow_provider_dgsentiment.storage import lineage
from airflow_provider_dgsentiment.storage.records import DEFAULT_TEXT_FIELD, FORMATS
from airflow_provider_dgsentiment.storage.result_files import ResultFiles
from airflow_provider_dgsentiment.storage.sources import DocumentSource, conn_id_in_uris, parse_shard, source_entries
from airflow_provider_dgsentiment.storage.usage import DEFAULT_USAGE_TABLE, UsageRow, UsageTable
from airflow_provider_dgsentiment.storage.warehouse import (
    DEFAULT_AVERAGES_TABLE,
    DEFAULT_SEGMENTS_TABLE,
    RunIdentity,
    WarehouseWriter,
    validate_table_name,
)
from airflow_provider_dgsentiment.triggers.sentiment import DeepgramSentimentTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

ON_ERROR_MODES = ("fail", "skip")
#: Documents a deferred run may carry back in its event at most (per-document XCom, or no SQL/results_path).
MAX_DEFERRED_DOCUMENTS = 1000
#: Characters of a Deepgram ``tag`` at most.
MAX_TAG_LENGTH = 128
#: Why a run that was told to stop stopped.
STOP_REASON = "the task was told to stop (on_kill: SIGTERM, 'mark failed', a timeout or an eviction)"


class DeepgramSentimentOperator(BaseOperator):
    """
    Score documents or inline text with Deepgram's Sentiment Analysis.

    Give exactly one of ``text``, ``source`` and ``sql``. Each document is read once, scored with
    bounded concurrency and, when ``sql_conn_id`` or ``results_path`` is set, stored every
    few hundred documents (so a crash mid-run keeps what was scored). Empty or
    whitespace-only documents are skipped without a request.

    The XCom shapes (``xcom_output``), document names, ``results_path`` files, asset statistics
    and every error are described in ``docs/operator.md`` (and ``docs/errors-and-troubleshooting.md``).

    :param text: a string or a list of strings to score. (templated)
    :param source: an object-storage URI, a glob, a folder/prefix, or a list of those
        (``file://``, ``s3://conn@bucket/key``, anything ``ObjectStoragePath`` reads); a URI
        naming an existing object is that object even when its name holds ``*?[``; a string
        holding a list literal (e.g. a rendered sensor XCom) is read as that list. (templated)
    :param source_conn_id: the storage connection; default the one named in the URI. (templated)
    :param shard: score only the objects of one shard of ``source``: ``"i/n"`` or ``[i, n]``
        (a stable hash of each object's name modulo ``n``), for ``.expand()`` over shards of
        one listing instead of lists of URIs. (templated)
    :param claims: the id of a listing published with
        :func:`~airflow_provider_dgsentiment.storage.sources.publish_listing` in the database
        of ``sql_conn_id``: the task never lists ``source`` but takes its objects from the
        listing in small batches it claims as it reads them, so mapped tasks over one listing
        finish together; a retried task takes its own unfinished batches back. ``source``
        still names the storage (its connection). (templated)
    :param deepgram_conn_id: the ``deepgram`` connection holding the API key. (templated)
    :param language: the language code of the texts. (templated)
    :param sql_conn_id: a SQL connection (any ``DbApiHook``: SQLite, PostgreSQL, ...) to
        store results in; None stores nothing. (templated)
    :param segments_table: table of per-segment rows, ``name`` or ``schema.name``. (templated)
    :param averages_table: table of per-document rows, ``name`` or ``schema.name``. (templated)
    :param results_path: an object-storage prefix (any ``ObjectStoragePath`` scheme) where
        per-document results land as JSONL parts under
        ``dag_id=/run_id=/task_id=/map_index=/part-NNNNN.jsonl`` (``map_index=-1`` unmapped: hive
        partitions for any mix of tasks); a retry keeps the scored lines of its task's earlier
        tries. Without ``sql_conn_id`` the load history lives beside them, under
        ``<results_path>/_load_history/`` (JSON lines), so later DAG runs skip what earlier ones
        read and scored (``skip_scored``): keep ``results_path`` the same across runs. None or
        ``""`` (a DAG param left empty) writes no files. (templated)
    :param results_conn_id: the storage connection for ``results_path``; default the one
        named in it. (templated)
    :param sql: a SELECT whose rows are the documents, streamed in batches (never the whole
        result in memory), instead of ``text``/``source``; each row is named
        ``sql://<sql_source_conn_id>/<id_field>#<key>`` in the tables. (templated)
    :param sql_source_conn_id: the connection (any ``DbApiHook``) to run ``sql`` on; default
        ``sql_conn_id``, so a table can be enriched in place. (templated)
    :param text_field: the field of a record (JSONL key, CSV/Parquet column, SQL column) to
        score; a dotted path reaches into nested JSON objects or Parquet struct columns
        (``ticket.body``), a literal key holding the dot winning. A field none of a file's first
        100 records holds fails that file once, naming the fields they have. Naming it (or
        ``id_field``) when no object of ``source`` is read as records (``.txt`` files holding JSON)
        refuses the run before any request, instead of scoring each object whole. (templated)
    :param id_field: the field (or dotted path) that keys a record; None keys it by its 1-based
        line (JSONL) or row (CSV, Parquet, SQL) number. With ``id_field`` a record is the entity its
        key names, named ``<key_namespace>#<key>``: the same key in another object (tomorrow's dated
        export, a re-export, another shard file) or another run is the same document, sent again
        only when its content changed (its rows are then replaced). Records keyed by line are
        named ``<object URI>#<line>``, scoped to their object. (templated)
    :param key_namespace: scopes record keys: two tasks scoring different entities with
        overlapping ids into the same tables give different namespaces, two tasks sharing
        entities give the same one. Default for record files ``<dag_id>.<task_id>``; SQL rows keep
        0.2's names (``sql://<conn>/<id_field>#<key>``) unless it is given. (templated)
    :param retry_failed: read and send again the documents recorded as failed for their content
        (``deepgram_sentiment_unscored``). Without it a known failure whose content is unchanged is
        not sent again, is listed as a known failure, and does not fail the task.
    :param format: how to read each object of ``source``: ``"auto"`` (by extension:
        ``.jsonl``/``.ndjson``, ``.json`` (a JSON array or newline-delimited JSON), ``.csv``,
        ``.tsv``, ``.parquet``, each optionally ``.gz``, ``.bz2`` or ``.zst``, are record files;
        anything else is one text document), ``"text"``, ``"jsonl"``, ``"json"``, ``"csv"`` or
        ``"parquet"``. (templated)
    :param tags: Deepgram ``tag`` query parameters sent with every request, so usage can be
        broken down by pipeline; default ``["airflow", <dag_id>, <task_id>]`` (each cut to 128
        characters, Deepgram's limit). ``[]`` sends none. (templated)
    :param max_input_tokens: stop before a request would pass this many input tokens in the
        task run: a ``DeepgramTokenBudgetError`` names the cap, what was scored is stored. Counted
        as the API bills: the one-token-per-word estimate is corrected by the tokens the answers
        report (one request in flight until the first answer), so the cap can be passed only by
        requests in flight when the text turns costlier per word than before. With
        ``sql_conn_id``, tokens already stored by the same task in the same DAG run (an earlier
        try; for a mapped task, any of its instances) count too.
    :param xcom_output: ``"full"`` (the API's response shape plus ``source``, per document),
        ``"summary"`` (counts and one compact item per document), ``"manifest"`` (counts and
        result URIs, bounded at any size) or ``"none"``.
    :param on_error: ``"fail"`` (score and store everything possible, then fail naming each
        failed document) or ``"skip"`` (record failures and succeed). A systemic error (bad
        key, no credit) stops the run either way.
    :param max_concurrency: requests in flight at most; default the connection's
        ``max_concurrency`` extra (10).
    :param deferrable: score in the triggerer instead of the worker (default from
        ``[operators] default_deferrable``): the worker checks the arguments and tables, then
        defers to :class:`~airflow_provider_dgsentiment.triggers.sentiment.DeepgramSentimentTrigger`,
        which scores and stores; inline ``text`` is always scored in the worker. Limits in
        ``docs/deferrable-and-scale.md``.
    :param skip_scored: with ``sql_conn_id`` (or ``results_path`` alone), skip what was done
        before: objects whose listed version (ETag, generation, size and mtime) and reading options
        are unchanged since a complete read are not read at all (the load history,
        ``deepgram_sentiment_loads`` or ``<results_path>/_load_history/``), and documents already
        scored with the same content fingerprint (sha256: in the averages table, or in the history's
        documents index) or failed for the same content are not sent; a changed document is
        scored again and its rows replaced. False reads and sends everything.
    :param fail_on_empty_source: fail when ``source`` matches no object; False logs a
        warning and succeeds with zero documents.
    :param progress_interval: seconds between progress log lines (a last line is always
        logged at the end).
    :param usage_table: with ``sql_conn_id``, the table that gets one row per task try: tags,
        documents by outcome, input/output tokens, requests, 429s, retries, start, end and
        outcome (:mod:`airflow_provider_dgsentiment.storage.usage`). (templated)
    """

    template_fields: Sequence[str] = (
        "deepgram_conn_id",
        "text",
        "source",
        "source_conn_id",
        "shard",
        "claims",
        "sql_conn_id",
        "segments_table",
        "averages_table",
        "results_path",
        "results_conn_id",
        "sql",
        "sql_source_conn_id",
        "text_field",
        "id_field",
        "key_namespace",
        "format",
        "tags",
        "language",
        "usage_table",
    )
    template_fields_renderers = {"text": "py", "source": "py", "sql": "sql"}
    ui_color = "#13ef93"

    def __init__(
        self,
        *,
        text: str | list[str] | None = None,
        source: Any = None,
        source_conn_id: str | None = None,
        shard: str | list[int] | None = None,
        claims: str | None = None,
        deepgram_conn_id: str = DeepgramSentimentHook.default_conn_name,
        language: str = "en",
        sql_conn_id: str | None = None,
        segments_table: str = DEFAULT_SEGMENTS_TABLE,
        averages_table: str = DEFAULT_AVERAGES_TABLE,
        results_path: str | None = None,
        results_conn_id: str | None = None,
        sql: str | None = None,
        sql_source_conn_id: str | None = None,
        text_field: str | None = None,
        id_field: str | None = None,
        key_namespace: str | None = None,
        format: str = "auto",
        tags: list[str] | None = None,
        max_input_tokens: int | None = None,
        xcom_output: str = "full",
        on_error: str = "fail",
        max_concurrency: int | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        skip_scored: bool = True,
        retry_failed: bool = False,
        fail_on_empty_source: bool = True,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        usage_table: str = DEFAULT_USAGE_TABLE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.text = text
        self.source = source
        self.source_conn_id = source_conn_id
        self.shard = shard
        self.claims = claims
        self.deepgram_conn_id = deepgram_conn_id
        self.language = language
        self.sql_conn_id = sql_conn_id
        self.segments_table = segments_table
        self.averages_table = averages_table
        self.results_path = results_path
        self.results_conn_id = results_conn_id
        self.sql = sql
        self.sql_source_conn_id = sql_source_conn_id
        self.text_field = text_field
        self.id_field = id_field
        self.key_namespace = key_namespace
        self.format = format
        self.tags = tags
        self.max_input_tokens = max_input_tokens
        self.xcom_output = xcom_output
        self.on_error = on_error
        self.max_concurrency = max_concurrency
        self.deferrable = deferrable
        self.skip_scored = skip_scored
        self.retry_failed = retry_failed
        self.fail_on_empty_source = fail_on_empty_source
        self.progress_interval = progress_interval
        self.usage_table = usage_table
        self._run_identity = RunIdentity()
        self._active_run: ScoringRun | None = None
        #: OpenLineage ``(namespace, name)`` of what the run read; None before it knew.
        self._lineage_inputs: list[tuple[str, str]] | None = None

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
        self._run_identity = run_identity(self, context)
        source = self._document_source(context)
        if self.deferrable and not source.is_inline:
            return self._defer_scoring(context, source)
        if self.deferrable:
            self.log.info(
                "deferrable=True: scoring the inline text in this worker, because document text must "
                "not go into trigger arguments (give the documents as source to score in the triggerer)"
            )
        run = ScoringRun(
            source=source,
            hook=self.hook,
            keep=self.xcom_output,
            options=self._options(),
            log=self.log,
            writer=self.writer,
            result_files=self._result_files(context),
        )
        self._active_run = run
        self._lineage_inputs = [] if source.is_inline else None
        try:
            outcome = asyncio.run(run.run())
        finally:
            self._active_run = None
            self._close()
        if not source.is_inline:
            self._lineage_inputs = [(location[0], location[1]) for location in outcome.inputs]
        return self._finish(context, outcome, single_text=source.single_text)

    def on_kill(self) -> None:
        """Stop sending at once; the run stores what was scored and the try fails saying so."""
        run = self._active_run
        if run is not None:
            self.log.warning("Told to stop: no new requests; storing what was scored")
            run.stop(STOP_REASON)

    def _defer_scoring(self, context: Context, source: DocumentSource) -> None:
        """Check the tables here as the worker path does (before any request), then hand the run to the triggerer."""
        if self.writer is not None:
            try:
                self.writer.check_tables()
            finally:
                self._close()
        keeps_results = self.sql_conn_id or self.results_path
        bounded = self.xcom_output in PER_DOCUMENT_OUTPUTS or not keeps_results
        if not keeps_results and source.holds_records(list(source.entries)):
            # Records are counted only as they are read, and with nowhere to store them a run stopped
            # at the bound would lose what it paid for: refuse here, before any request.
            raise too_many_for_the_event(
                f"{source.describe()} holds records, which may be more than", MAX_DEFERRED_DOCUMENTS
            )
        options = self._options(max_documents=MAX_DEFERRED_DOCUMENTS if bounded else None)
        self.log.info(
            "Deferring the scoring of %s to the triggerer (language=%s, max_concurrency=%s)",
            source.describe(),
            self.language,
            self.max_concurrency or "from connection",
        )
        self.defer(
            trigger=DeepgramSentimentTrigger(
                deepgram_conn_id=self.deepgram_conn_id,
                source=source.to_json(),
                xcom_output=self.xcom_output,
                options=options.to_json(),
                warehouse=self._warehouse_kwargs(),
                results=self._results_kwargs(context),
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """
        Finish a deferred run: return what ``execute`` returns in a worker.

        The trigger has stored the results; its event carries the outcome (counts, the
        first failures, per-document items for ``full``/``summary``).

        :param context: the task context.
        :param event: the payload of :class:`DeepgramSentimentTrigger`'s event.
        :raises DeepgramAPIError: the typed error of an ``"error"`` event, or the systemic
            error that stopped the run.
        :raises DeepgramError: for failed documents (``on_error="fail"``) or an unexpected event.
        """
        payload = check_event(event, "Scoring")
        outcome = ScoringOutcome.from_state(payload.get(OUTCOME_KEY))
        self._run_identity = run_identity(self, context)
        self._lineage_inputs = [(location[0], location[1]) for location in outcome.inputs]
        self.log.info("Resumed from the triggerer: %s", payload.get("message"))
        return self._finish(context, outcome)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """
        Return the run's OpenLineage lineage: the objects read as inputs, the two tables as outputs.

        Inline ``text`` has no inputs; more than ``MAX_LINEAGE_INPUTS`` objects in one
        namespace are reported as their common folder. Outputs follow the SQL operators'
        naming (:mod:`airflow_provider_dgsentiment.storage.lineage`). Returns None without the
        OpenLineage provider.

        :param task_instance: the finished task instance (unused).
        """
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        if self._lineage_inputs is None:  # failed before it knew what to read
            return OperatorLineage()
        outputs = lineage.datasets(lineage.table_locations(self.writer)) if self.writer is not None else []
        return OperatorLineage(inputs=lineage.datasets(self._lineage_inputs), outputs=outputs)

    # ------------------------------------------------------------------ finishing

    def _finish(self, context: Context, outcome: ScoringOutcome, *, single_text: bool = False) -> Any:
        """
        Log what happened, attach the statistics to the asset events, raise what the caller asked to fail on.

        :param outcome: what happened to each document.
        :param single_text: the input was one ``text`` string: return its item, not a list.
        :return: the XCom value.
        """
        if outcome.empty_count:
            self.log.warning(
                "Skipped %d empty document(s) without a request: %s",
                outcome.empty_count,
                first_and_more(outcome.empty, total=outcome.empty_count, limit=MAX_LISTED_DOCUMENTS),
            )
        if outcome.unchanged:
            self.log.info(
                "Skipped %d object(s) unchanged since their last complete read (not read again)", outcome.unchanged
            )
        if outcome.already_scored:
            self.log.info("Skipped %d already-scored document(s)", outcome.already_scored)
        if outcome.known_failed:
            self.log.warning(
                "%d known failure(s), unchanged since they failed: not sent again and not failing the task "
                "(retry_failed=True sends them again):\n%s",
                outcome.known_failed,
                outcome.failure_lines(known=True),
            )
        if self.sql_conn_id:
            self.log.info(
                "Stored %d document(s) in %s and %s", outcome.stored, self.averages_table, self.segments_table
            )
        if outcome.results_uris:
            self.log.info("Wrote results to %d part(s): %s", len(outcome.results_uris), ", ".join(outcome.results_uris))
        self._attach_asset_statistics(context, outcome)
        self._record_usage(context, outcome)

        left = outcome.total - outcome.scored - outcome.skipped
        stored = f"; the {outcome.scored} scored were stored" if self.sql_conn_id and outcome.scored else ""
        error = outcome.systemic_error
        if error is not None:
            raise error.with_context(f"stopped the run: {left} of {outcome.total} document(s) left unscored{stored}")
        if outcome.stopped:
            raise AirflowException(
                f"Stopped before the end: {outcome.stopped}; {outcome.scored} of {outcome.total} document(s) "
                f"scored{stored}, {left} left unscored (a retry scores them)"
            )
        if outcome.new_failed:
            message = f"{outcome.new_failed} of {outcome.total} document(s) failed:\n{outcome.failure_lines()}"
            if self.on_error == "fail":
                raise DeepgramError(message)
            self.log.warning("%s", message)
        if outcome.keeps_items and outcome.total > XCOM_ITEMS_WARNING:
            self.log.warning(
                "xcom_output=%r keeps %d per-document items in XCom (Airflow's metadata database); "
                "use xcom_output='manifest' with sql_conn_id or results_path for runs this big",
                self.xcom_output,
                outcome.total,
            )
        return outcome.xcom_value(single_text=single_text)

    def _record_usage(self, context: Context, outcome: ScoringOutcome) -> None:
        """Write the try's row to the usage table (with ``sql_conn_id``); a failure to do so is logged, not raised."""
        if not self.sql_conn_id:
            return
        if outcome.systemic_error is not None:
            ended = "error"
        elif outcome.stopped:
            ended = "stopped"
        elif outcome.failed and self.on_error == "fail":
            ended = "failed"
        else:
            ended = "success"
        ti = context.get("ti") or context.get("task_instance")
        run = self._run_identity
        row = UsageRow.of_try(
            dag_id=str(run.dag_id),
            task_id=str(run.task_id),
            run_id=str(run.run_id),
            map_index=map_index(context),
            try_number=int(getattr(ti, "try_number", 1) or 1),
            tags=self._options().tags,
            figures=outcome.counts(),
            started_at=outcome.started_at,
            ended_at=outcome.ended_at,
            outcome=ended,
        )
        try:
            UsageTable(self.sql_conn_id, self.usage_table).record(row)
        except Exception as exc:  # the results are stored; a missing usage row must not fail the try
            self.log.error("Could not record usage in %s: %s: %s", self.usage_table, type(exc).__name__, exc)

    def _attach_asset_statistics(self, context: Context, outcome: ScoringOutcome) -> None:
        """Put the run's statistics into the ``extra`` of each outlet's asset event."""
        if not self.outlets:
            return
        events = context.get("outlet_events")
        if events is None:
            return
        for outlet in self.outlets:
            try:
                events[outlet].extra.update(outcome.counts())
            except (KeyError, TypeError, AttributeError) as exc:  # not an asset (e.g. a plain string)
                self.log.debug("No asset event for outlet %r: %s", outlet, exc)

    # ------------------------------------------------------------------ set-up

    def _options(self, *, max_documents: int | None = None) -> ScoringOptions:
        tags = ["airflow", self.dag_id, self.task_id] if self.tags is None else list(self.tags)
        return ScoringOptions(
            tags=tuple(str(tag)[:MAX_TAG_LENGTH] for tag in tags if tag),
            max_input_tokens=self.max_input_tokens,
            language=self.language,
            max_concurrency=self.max_concurrency,
            skip_scored=bool(self.skip_scored),
            fail_on_empty_source=bool(self.fail_on_empty_source),
            max_documents=max_documents,
            progress_interval=float(self.progress_interval),
            metric_tags=(("dag_id", str(self.dag_id)), ("task_id", str(self.task_id))),
            retry_failed=bool(self.retry_failed),
        )

    def _warehouse_kwargs(self) -> dict[str, Any] | None:
        if not self.sql_conn_id:
            return None
        run = self._run_identity
        return {
            "sql_conn_id": self.sql_conn_id,
            "segments_table": self.segments_table,
            "averages_table": self.averages_table,
            "dag_id": run.dag_id,
            "task_id": run.task_id,
            "run_id": run.run_id,
        }

    def _results_kwargs(self, context: Context) -> dict[str, Any] | None:
        if not self.results_path:
            return None
        run = self._run_identity
        return {
            "results_path": str(self.results_path),
            "conn_id": self.results_conn_id,
            "dag_id": run.dag_id,
            "run_id": run.run_id,
            "task_id": run.task_id,
            "map_index": map_index(context),
        }

    def _result_files(self, context: Context) -> ResultFiles | None:
        kwargs = self._results_kwargs(context)
        return ResultFiles.for_task(**kwargs) if kwargs else None

    def _close(self) -> None:
        if "hook" in self.__dict__:
            self.hook.close()
        writer = self.__dict__.get("writer")
        if writer is not None:
            writer.close()

    def _check_arguments(self) -> None:
        """Check the rendered arguments; raise :class:`DeepgramConfigurationError` saying what is wrong."""
        given = [name for name in ("text", "source", "sql") if getattr(self, name) is not None]
        if len(given) != 1:
            raise DeepgramConfigurationError(
                "Give exactly one of text, source and sql"
                + (f" ({' and '.join(given)} were given)" if given else " (none was given)")
            )
        if self.sql is not None:
            if not isinstance(self.sql, str) or not self.sql.strip():
                raise DeepgramConfigurationError(f"sql must be a SELECT statement, got {self.sql!r}")
            if not (self.sql_source_conn_id or self.sql_conn_id):
                raise DeepgramConfigurationError("sql needs sql_source_conn_id (or sql_conn_id) to run on")
        if self.tags is not None and (
            not isinstance(self.tags, (list, tuple)) or not all(isinstance(tag, str) for tag in self.tags)
        ):
            raise DeepgramConfigurationError(f"tags must be a list of strings, got {self.tags!r}")
        if self.max_input_tokens is not None and (
            isinstance(self.max_input_tokens, bool)
            or not isinstance(self.max_input_tokens, int)
            or self.max_input_tokens < 1
        ):
            raise DeepgramConfigurationError(
                f"max_input_tokens must be a whole number of at least 1, got {self.max_input_tokens!r}"
            )
        if self.format not in FORMATS:
            raise DeepgramConfigurationError(
                f"format must be one of {', '.join(map(repr, FORMATS))}, got {self.format!r}"
            )
        if self.text_field is not None and (not isinstance(self.text_field, str) or not self.text_field.strip()):
            raise DeepgramConfigurationError(f"text_field must name a field, got {self.text_field!r}")
        if self.id_field is not None and (not isinstance(self.id_field, str) or not self.id_field.strip()):
            raise DeepgramConfigurationError(f"id_field must name a field or be None, got {self.id_field!r}")
        if self.key_namespace is not None and (
            not isinstance(self.key_namespace, str) or not self.key_namespace.strip() or "#" in self.key_namespace
        ):
            raise DeepgramConfigurationError(
                f"key_namespace must be a non-empty name without '#' (e.g. 'tickets'), or None, got {self.key_namespace!r}"
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
        if self.results_path not in (None, "") and (
            not isinstance(self.results_path, str) or not self.results_path.strip()
        ):
            raise DeepgramConfigurationError(
                f"results_path must be an object-storage prefix such as 's3://bucket/results/', got {self.results_path!r}"
            )
        if self.shard is not None and self.text is not None:
            raise DeepgramConfigurationError("shard applies to source, not to inline text")
        parse_shard(self.shard)
        if self.claims is not None:
            if self.text is not None or self.sql is not None or self.shard is not None:
                raise DeepgramConfigurationError(
                    "claims takes the objects of a listing: give source, not text, sql or shard"
                )
            if not self.sql_conn_id:
                raise DeepgramConfigurationError("claims needs sql_conn_id: the listing is in the results database")
            if not isinstance(self.claims, str) or not self.claims.strip():
                raise DeepgramConfigurationError(f"claims must be a listing id, got {self.claims!r}")
        validate_table_name(self.segments_table, "segments_table")
        validate_table_name(self.averages_table, "averages_table")
        validate_table_name(self.usage_table, "usage_table")

    def _document_source(self, context: Context) -> DocumentSource:
        """What the run scores: the inline texts, or the objects ``source`` names."""
        if self.text is not None:
            return DocumentSource.inline(self.text, stored_prefix=inline_prefix(self, context))
        if self.sql is not None:
            return DocumentSource(
                sql=self.sql,
                sql_conn_id=self.sql_source_conn_id or self.sql_conn_id,
                text_field=self.text_field or DEFAULT_TEXT_FIELD,
                id_field=self.id_field,
                key_namespace=self.key_namespace or None,
            )
        entries = source_entries(self.source)
        conn_id = self.source_conn_id or conn_id_in_uris(entries)
        return DocumentSource(
            entries=tuple(str(entry) for entry in entries),
            conn_id=conn_id,
            shard=parse_shard(self.shard),
            given_as=repr(self.source),
            claims=self.claims,
            claims_conn_id=self.sql_conn_id if self.claims else None,
            claim_holder=claim_holder(self, context) if self.claims else None,
            format=self.format,
            text_field=self.text_field or DEFAULT_TEXT_FIELD,
            id_field=self.id_field,
            record_fields=self.text_field is not None or self.id_field is not None,
            key_namespace=self.key_namespace or default_key_namespace(self),
        )


def claim_holder(task: BaseOperator, context: Context) -> str:
    """Who claims batches of a listing: the task instance, the same on each of its tries."""
    return f"{task.dag_id}/{run_identity(task, context).run_id}/{task.task_id}/{map_index(context)}"


def default_key_namespace(task: BaseOperator) -> str:
    """``<dag_id>.<task_id>``: the key namespace of a task's record files when it names none."""
    return f"{task.dag_id}.{task.task_id}"


def map_index(context: Context) -> int:
    ti = context.get("ti") or context.get("task_instance")
    index = getattr(ti, "map_index", -1)
    return index if isinstance(index, int) else -1


def run_identity(task: BaseOperator, context: Context) -> RunIdentity:
    run_id = context.get("run_id")
    if run_id is None:
        dag_run = context.get("dag_run")
        run_id = getattr(dag_run, "run_id", None)
    return RunIdentity(dag_id=task.dag_id, task_id=task.task_id, run_id=run_id)


def inline_prefix(task: BaseOperator, context: Context) -> str:
    """Return ``inline://<dag_id>/<task_id>[/<map_index>]/``, the SQL name prefix of inline text."""
    index = map_index(context)
    mapped = f"/{index}" if index >= 0 else ""
    return f"inline://{task.dag_id}/{task.task_id}{mapped}/"
