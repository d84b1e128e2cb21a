"""What happened to each document of a run: counts, failures, progress lines and the XCom shapes.

:class:`ScoringOutcome` is filled as documents are settled (scored, skipped, failed) in
the worker or in the triggerer, travels between them as plain JSON (:meth:`to_state`),
and gives the task's XCom value in one of the shapes ``xcom_output`` names:

- ``"full"``: per document, the API's response shape plus ``"source"``;
- ``"summary"``: counts plus one compact item per document;
- ``"manifest"``: counts, token totals, the first failures and the result URIs, bounded at any N;
- ``"none"``: nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_dgsentiment.client.results import SENTIMENT_LABELS
from airflow_provider_dgsentiment.exceptions import DeepgramAPIError, DeepgramError, first_and_more
from airflow_provider_dgsentiment.storage.sources import SKIP_EMPTY

if TYPE_CHECKING:
    from logging import Logger

    from airflow_provider_dgsentiment.client.results import SentimentResult

XCOM_OUTPUTS = ("full", "summary", "manifest", "none")
#: Shapes that keep one item per document.
PER_DOCUMENT_OUTPUTS = ("full", "summary")
MANIFEST_SCHEMA_VERSION = 1
#: Failures listed in the manifest at most (the rest are counted).
MANIFEST_FAILURES = 100
#: Result parts listed in the manifest at most; more are given as the folder that holds them.
MANIFEST_RESULT_URIS = 100
#: Characters of a source name or an error message kept in the manifest, so 100 failures stay small.
MANIFEST_TEXT_LIMIT = 240
#: Documents named in a failure message or log line; the rest are counted.
MAX_LISTED_DOCUMENTS = 20
#: Per-document XCom items above which a run warns that ``manifest`` is the shape for its size.
XCOM_ITEMS_WARNING = 10_000
#: Why a document already stored with the same content is skipped.
SKIP_ALREADY_SCORED = "already scored (stored with the same content fingerprint)"
#: Why an object is not read: the load history holds a complete read of its listed version.
SKIP_UNCHANGED = "unchanged since its last complete read"


#: The counts a ``summary`` value carries beside its items (the first of :meth:`ScoringOutcome.counts`).
SUMMARY_COUNTS = ("documents", "scored", "skipped", "failed", "unchanged", "known_failed")


@dataclass
class ScoringOutcome:
    """
    What happened to each document of a run.

    :param keep: the XCom shape: ``"full"``, ``"summary"``, ``"manifest"`` or ``"none"``;
        only the first two keep an item per document.
    :param total: documents in the run (grows as record files are read).
    :param streaming: the documents are counted as they are read (records), so ``total`` is "so far".
    """

    keep: str
    total: int = 0
    streaming: bool = False
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    #: Documents written to SQL.
    stored: int = 0
    already_scored: int = 0
    #: Objects not read, unchanged since a complete read (counted in ``skipped``, one each).
    unchanged: int = 0
    #: Failures recorded by an earlier run whose content is unchanged (counted in ``failed``).
    known_failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    sentiment_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SENTIMENT_LABELS, 0))
    #: Per-document XCom items by position in the run (``full`` / ``summary`` only).
    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: ``(name, reason)`` of the first failures, up to ``MANIFEST_FAILURES``.
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: ``(name, reason)`` of the first known failures, up to ``MANIFEST_FAILURES``.
    known_failures: list[tuple[str, str]] = field(default_factory=list)
    #: Names of the first empty documents, up to ``MAX_LISTED_DOCUMENTS``.
    empty: list[str] = field(default_factory=list)
    empty_count: int = 0
    #: URIs of the result files written under ``results_path``.
    results_uris: list[str] = field(default_factory=list)
    #: OpenLineage ``(namespace, name)`` of the objects read (bounded: collapsed to folders).
    inputs: list[tuple[str, str]] = field(default_factory=list)
    #: The error that stopped the run (bad key, no credit, unsupported language), if any.
    systemic_error: DeepgramAPIError | None = None
    #: Why the run stopped before the end when it was told to (``on_kill``), else None.
    stopped: str | None = None
    #: Requests sent (every attempt, retries included), 429 answers, retries: the engine's counters for the run.
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    #: When the run started and ended (ISO-8601 UTC).
    started_at: str | None = None
    ended_at: str | None = None

    @property
    def processed(self) -> int:
        return self.scored + self.skipped + self.failed

    @property
    def new_failed(self) -> int:
        """Failures that are not known failures: the ones ``on_error="fail"`` fails the task for."""
        return self.failed - self.known_failed

    @property
    def keeps_items(self) -> bool:
        return self.keep in PER_DOCUMENT_OUTPUTS

    # ------------------------------------------------------------------ recording

    def record_scored(self, position: int, name: str, result: SentimentResult) -> None:
        self.scored += 1
        self.input_tokens += result.input_tokens or 0
        self.output_tokens += result.output_tokens or 0
        label = result.average.sentiment
        if label in self.sentiment_counts:
            self.sentiment_counts[label] += 1
        if self.keep == "full":
            self.items[position] = {"source": name, **result.to_dict()}
        elif self.keep == "summary":
            average = result.average
            self.items[position] = summary_item(
                name,
                "scored",
                sentiment=average.sentiment,
                sentiment_score=average.sentiment_score,
                segment_count=len(result.segments),
                request_id=result.request_id,
            )

    def record_skipped(
        self,
        position: int,
        name: str,
        reason: str,
        *,
        sentiment: str | None = None,
        sentiment_score: float | None = None,
    ) -> None:
        """
        Count a document settled without a request.

        :param sentiment: the stored label of a document already scored (its summary item carries it).
        :param sentiment_score: the stored score of a document already scored.
        """
        self.skipped += 1
        if reason == SKIP_EMPTY:
            self.empty_count += 1
            if len(self.empty) < MAX_LISTED_DOCUMENTS:
                self.empty.append(name)
        elif reason == SKIP_ALREADY_SCORED:
            self.already_scored += 1
        if self.keep == "full":
            self.items[position] = {"source": name, "status": "skipped", "reason": reason}
        elif self.keep == "summary":
            self.items[position] = summary_item(
                name, "skipped", sentiment=sentiment, sentiment_score=sentiment_score, reason=reason
            )

    def record_unchanged(self, position: int, name: str, last_read: str) -> None:
        """Count an object not read: unchanged since a complete read (``last_read`` describes it)."""
        self.unchanged += 1
        self.record_skipped(position, name, f"{SKIP_UNCHANGED} ({last_read})")

    def record_failed(
        self, position: int, name: str, reason: str, request_id: str | None = None, *, known: bool = False
    ) -> None:
        """
        Count a failed document.

        :param known: an earlier run recorded the same failure of the same content: it was not sent
            again and does not fail the task.
        """
        self.failed += 1
        if known:
            self.known_failed += 1
            reason = f"known failure, not sent again: {reason}"
        listed = self.known_failures if known else self.failures
        if len(listed) < MANIFEST_FAILURES:
            listed.append((name, reason))
        if self.keep == "full":
            self.items[position] = {"source": name, "status": "failed", "error": reason}
        elif self.keep == "summary":
            self.items[position] = summary_item(name, "failed", request_id=request_id, error=reason)

    def record_unstored(self, position: int, name: str, reason: str) -> None:
        """A scored document the database refused to store: it counts as failed (its tokens were spent)."""
        self.scored -= 1
        self.record_failed(position, name, reason)

    # ------------------------------------------------------------------ shapes

    def counts(self) -> dict[str, Any]:
        """The run's statistics: what the manifest and the asset event's ``extra`` carry."""
        return {
            "documents": self.total,
            "scored": self.scored,
            "skipped": self.skipped,
            "failed": self.failed,
            "unchanged": self.unchanged,
            "known_failed": self.known_failed,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "sentiment_counts": dict(self.sentiment_counts),
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "retries": self.retries,
        }

    def manifest(self) -> dict[str, Any]:
        """The bounded ``xcom_output="manifest"`` value (at most ~64 KB at any number of documents)."""
        return {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            **self.counts(),
            "failures": _listed(self.failures),
            "known_failures": _listed(self.known_failures),
            "results_uri": _bounded_uris(self.results_uris),
        }

    def xcom_value(self, *, single_text: bool = False) -> Any:
        """The task's return value for ``keep``."""
        if self.keep == "none":
            return None
        if self.keep == "manifest":
            return self.manifest()
        items = [self.items.get(position) for position in range(self.total)]
        if self.keep == "summary":
            counts = self.counts()
            return {**{name: counts[name] for name in SUMMARY_COUNTS}, "items": items}
        return items[0] if single_text and items else items

    def failure_lines(self, *, known: bool = False) -> str:
        """One ``name: reason`` line per new (or known) failure (the first few), then ``and N more``."""
        listed, count = (self.known_failures, self.known_failed) if known else (self.failures, self.new_failed)
        lines = [f"{name}: {reason}" for name, reason in listed[:MAX_LISTED_DOCUMENTS]]
        return "  " + first_and_more(lines, total=count, limit=MAX_LISTED_DOCUMENTS, separator="\n  ")

    # ------------------------------------------------------------------ travel (trigger -> task)

    def to_state(self) -> dict[str, Any]:
        """The outcome as plain JSON, for the trigger's event (see :meth:`from_state`)."""
        return {
            "keep": self.keep,
            "total": self.total,
            "streaming": self.streaming,
            "scored": self.scored,
            "skipped": self.skipped,
            "failed": self.failed,
            "stored": self.stored,
            "already_scored": self.already_scored,
            "unchanged": self.unchanged,
            "known_failed": self.known_failed,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "sentiment_counts": dict(self.sentiment_counts),
            "items": [self.items.get(position) for position in range(self.total)] if self.keeps_items else None,
            "failures": [[name, reason] for name, reason in self.failures],
            "known_failures": [[name, reason] for name, reason in self.known_failures],
            "empty": list(self.empty),
            "empty_count": self.empty_count,
            "results_uris": list(self.results_uris),
            "inputs": [list(location) for location in self.inputs],
            "systemic_error": self.systemic_error.to_dict() if self.systemic_error is not None else None,
            "stopped": self.stopped,
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "retries": self.retries,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_state(cls, state: Any) -> ScoringOutcome:
        """
        Rebuild an outcome from :meth:`to_state`.

        :raises DeepgramError: when ``state`` is not what :meth:`to_state` returns.
        """
        try:
            items = state["items"]
            systemic = state["systemic_error"]
            outcome = cls(
                keep=str(state["keep"]),
                total=int(state["total"]),
                streaming=bool(state.get("streaming")),
                scored=int(state["scored"]),
                skipped=int(state["skipped"]),
                failed=int(state["failed"]),
                stored=int(state["stored"]),
                already_scored=int(state["already_scored"]),
                unchanged=int(state.get("unchanged") or 0),
                known_failed=int(state.get("known_failed") or 0),
                input_tokens=int(state["input_tokens"]),
                output_tokens=int(state["output_tokens"]),
                sentiment_counts={str(key): int(value) for key, value in dict(state["sentiment_counts"]).items()},
                items={position: item for position, item in enumerate(items or []) if item is not None},
                failures=[(str(name), str(reason)) for name, reason in state["failures"]],
                known_failures=[(str(name), str(reason)) for name, reason in state.get("known_failures") or []],
                empty=[str(name) for name in state["empty"]],
                empty_count=int(state["empty_count"]),
                results_uris=[str(uri) for uri in state["results_uris"]],
                inputs=[(str(namespace), str(name)) for namespace, name in state["inputs"]],
                systemic_error=DeepgramAPIError.from_dict(systemic) if isinstance(systemic, dict) else None,
                stopped=state.get("stopped"),
                # 0.2's events carry no usage figures.
                requests=int(state.get("requests", 0)),
                rate_limited=int(state.get("rate_limited", 0)),
                retries=int(state.get("retries", 0)),
                started_at=state.get("started_at"),
                ended_at=state.get("ended_at"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DeepgramError(f"The trigger event carries no usable outcome ({type(exc).__name__}: {exc})") from None
        return outcome


def summary_item(
    name: str,
    status: str,
    *,
    sentiment: str | None = None,
    sentiment_score: float | None = None,
    segment_count: int | None = None,
    request_id: str | None = None,
    **extra: str,
) -> dict[str, Any]:
    """One ``xcom_output="summary"`` item: the one definition of its shape."""
    return {
        "source": name,
        "status": status,
        "sentiment": sentiment,
        "sentiment_score": sentiment_score,
        "segment_count": segment_count,
        "request_id": request_id,
        **extra,
    }


def _listed(failures: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"source": _clip(name), "error": _clip(reason)} for name, reason in failures[:MANIFEST_FAILURES]]


def _bounded_uris(uris: list[str]) -> list[str]:
    """The result part URIs, or (above ``MANIFEST_RESULT_URIS``) the folder holding them, as ``<folder>/part-*.jsonl``."""
    if len(uris) <= MANIFEST_RESULT_URIS:
        return list(uris)
    return [uris[0].rsplit("/", 1)[0] + "/part-*.jsonl"]


def _clip(text: str) -> str:
    return text if len(text) <= MANIFEST_TEXT_LIMIT else text[: MANIFEST_TEXT_LIMIT - 3] + "..."


class ProgressLog:
    """
    Log ``Processed n/total`` lines with rate and ETA, at most every ``interval`` seconds.

    For a streaming outcome (records counted as they are read) the line says ``n documents so
    far``, without a total or an ETA that a growing denominator would make wrong.

    :param log: the logger.
    :param interval: seconds between lines.
    """

    def __init__(self, log: Logger, interval: float) -> None:
        self.log = log
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
        if outcome.streaming:  # records are counted as they are read: no total, so no ETA
            self.log.info(
                "Processed %d documents so far (scored %d, failed %d, skipped %d), %.1f docs/s",
                outcome.processed,
                outcome.scored,
                outcome.failed,
                outcome.skipped,
                rate,
            )
            return
        remaining = max(outcome.total - outcome.processed, 0)
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "unknown"
        self.log.info(
            "Processed %d/%d documents (scored %d, failed %d, skipped %d), %.1f docs/s, ETA %s",
            outcome.processed,
            outcome.total,
            outcome.scored,
            outcome.failed,
            outcome.skipped,
            rate,
            eta,
        )
