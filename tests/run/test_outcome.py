"""Per-document bookkeeping and the XCom shapes of one run (ScoringOutcome)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_dgsentiment.client.results import SentimentResult
from airflow_provider_dgsentiment.exceptions import DeepgramError, make_api_error
from airflow_provider_dgsentiment.run.outcome import MANIFEST_FAILURES, SKIP_ALREADY_SCORED, ScoringOutcome
from airflow_provider_dgsentiment.storage.sources import SKIP_EMPTY
from tests.conftest import sentiment_body


def result(text: str, score: float) -> SentimentResult:
    return SentimentResult.from_response(sentiment_body(text, score))


def filled(keep: str) -> ScoringOutcome:
    outcome = ScoringOutcome(keep=keep, total=4)
    outcome.record_scored(0, "a.txt", result("Great stuff.", 0.8))
    outcome.record_skipped(1, "b.txt", SKIP_EMPTY)
    outcome.record_skipped(2, "c.txt", SKIP_ALREADY_SCORED)
    outcome.record_failed(3, "d.txt", "could not read object: FileNotFoundError", request_id=None)
    return outcome


def test_counts_add_up_per_outcome():
    outcome = filled("manifest")
    assert (outcome.scored, outcome.skipped, outcome.failed, outcome.processed) == (1, 2, 1, 4)
    assert (outcome.empty_count, outcome.already_scored, outcome.empty) == (1, 1, ["b.txt"])
    assert outcome.counts()["sentiment_counts"] == {"positive": 1, "neutral": 0, "negative": 0}
    assert outcome.input_tokens == result("Great stuff.", 0.8).input_tokens


def test_summary_items_follow_the_input_order_with_their_status():
    value = filled("summary").xcom_value()
    assert (value["documents"], value["scored"], value["skipped"], value["failed"]) == (4, 1, 2, 1)
    assert [(item["source"], item["status"]) for item in value["items"]] == [
        ("a.txt", "scored"),
        ("b.txt", "skipped"),
        ("c.txt", "skipped"),
        ("d.txt", "failed"),
    ]
    assert value["items"][0]["sentiment"] == "positive"


def test_full_items_are_in_the_api_shape_plus_source():
    items = filled("full").xcom_value()
    assert items[0]["source"] == "a.txt" and items[0]["results"]["sentiments"]["average"]["sentiment"] == "positive"
    assert items[3] == {"source": "d.txt", "status": "failed", "error": "could not read object: FileNotFoundError"}


def test_manifest_and_none_keep_no_items():
    assert filled("none").xcom_value() is None
    manifest = filled("manifest").xcom_value()
    assert manifest["failures"] == [{"source": "d.txt", "error": "could not read object: FileNotFoundError"}]
    assert "items" not in manifest


def test_the_state_survives_json_for_the_trigger_event():
    outcome = filled("summary")
    outcome.systemic_error = make_api_error(402, {"err_code": "ASR_PAYMENT_REQUIRED", "err_msg": "no credit"})
    again = ScoringOutcome.from_state(json.loads(json.dumps(outcome.to_state())))
    assert again.xcom_value() == outcome.xcom_value()
    assert again.systemic_error.status == 402 and again.systemic_error.err_code == "ASR_PAYMENT_REQUIRED"


def test_a_state_of_another_shape_is_refused_clearly():
    with pytest.raises(DeepgramError, match="The trigger event carries no usable outcome"):
        ScoringOutcome.from_state({"total": 3})


def test_failure_lines_name_the_first_and_count_the_rest():
    outcome = ScoringOutcome(keep="manifest")
    for index in range(25):
        outcome.record_failed(index, f"doc-{index}.txt", "boom")
    lines = outcome.failure_lines().split("\n")
    assert lines[0] == "  doc-0.txt: boom" and lines[19] == "  doc-19.txt: boom"
    assert lines[-1] == "  and 5 more" and len(lines) == 21


def test_the_manifest_keeps_only_the_first_failures():
    outcome = ScoringOutcome(keep="manifest")
    for index in range(MANIFEST_FAILURES + 50):
        outcome.record_failed(index, f"doc-{index}.txt", "boom")
    manifest = outcome.manifest()
    assert manifest["failed"] == MANIFEST_FAILURES + 50 and len(manifest["failures"]) == MANIFEST_FAILURES
