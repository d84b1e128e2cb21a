"""SentimentResult: from_response / to_dict round trip and shape errors."""

from __future__ import annotations

import json

import pytest

from airflow_provider_dgsentiment.client.results import SentimentResult, average_of, label_for_score
from airflow_provider_dgsentiment.exceptions import DeepgramResponseError

REFERENCE_RESPONSE = {
    "metadata": {
        "request_id": "7dcd719f-344b-4c72-a194-6bd1019d855c",
        "created": "2023-12-01T15:54:39.681Z",
        "language": "en",
        "sentiment_info": {
            "model_uuid": "80ab3179-d113-4254-bd6b-4a2f96498695",
            "input_tokens": 22,
            "output_tokens": 22,
        },
    },
    "results": {
        "sentiments": {
            "segments": [
                {
                    "text": "Hi. Thank you for calling from premier phone services.",
                    "start_word": 0,
                    "end_word": 8,
                    "sentiment": "positive",
                    "sentiment_score": 0.7380304336547852,
                },
                {
                    "text": "This call may be recorded for quality and training purposes.",
                    "start_word": 9,
                    "end_word": 18,
                    "sentiment": "neutral",
                    "sentiment_score": 0.057771213352680206,
                },
            ],
            "average": {"sentiment": "positive", "sentiment_score": 0.39790084145285864},
        }
    },
}


def test_reference_response_round_trips():
    result = SentimentResult.from_response(REFERENCE_RESPONSE)
    assert result.request_id == "7dcd719f-344b-4c72-a194-6bd1019d855c"
    assert result.input_tokens == 22 and result.model_uuid.startswith("80ab3179")
    assert [s.sentiment for s in result.segments] == ["positive", "neutral"]
    assert result.word_count == 19
    assert result.to_dict() == REFERENCE_RESPONSE
    assert json.loads(json.dumps(result.to_dict())) == REFERENCE_RESPONSE


def test_summary_is_compact():
    summary = SentimentResult.from_response(REFERENCE_RESPONSE).to_summary()
    assert summary == {
        "sentiment": "positive",
        "sentiment_score": 0.39790084145285864,
        "segment_count": 2,
        "input_tokens": 22,
        "request_id": "7dcd719f-344b-4c72-a194-6bd1019d855c",
    }


def test_header_request_id_used_when_body_has_none():
    body = json.loads(json.dumps(REFERENCE_RESPONSE))
    del body["metadata"]["request_id"]
    assert SentimentResult.from_response(body, request_id="hdr").request_id == "hdr"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.pop("results"), "results should be an object, got NoneType"),
        (lambda b: b["results"]["sentiments"].pop("average"), "average should be an object"),
        (
            lambda b: b["results"]["sentiments"]["segments"][1].update(sentiment_score="high"),
            r"segments\[1\].sentiment_score should be a number, got str",
        ),
        (
            lambda b: b["results"]["sentiments"]["segments"][0].update(end_word=True),
            r"segments\[0\].end_word should be an integer",
        ),
    ],
)
def test_wrong_shape_names_the_field(mutate, message):
    body = json.loads(json.dumps(REFERENCE_RESPONSE))
    mutate(body)
    with pytest.raises(DeepgramResponseError, match=message) as raised:
        SentimentResult.from_response(body)
    assert raised.value.request_id == "7dcd719f-344b-4c72-a194-6bd1019d855c"


def _segments(*spans):
    return [
        {"text": "w", "start_word": start, "end_word": end, "sentiment": "neutral", "sentiment_score": 0.0}
        for start, end in spans
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda b: b["results"]["sentiments"]["segments"][1].update(sentiment_score=float("nan")),
            r"results.sentiments.segments\[1\].sentiment_score is nan, not a finite number",
        ),
        (
            lambda b: b["results"]["sentiments"]["segments"][0].update(sentiment_score=float("inf")),
            r"results.sentiments.segments\[0\].sentiment_score is inf, not a finite number",
        ),
        (
            lambda b: b["results"]["sentiments"]["average"].update(sentiment_score=float("-inf")),
            r"results.sentiments.average.sentiment_score is -inf, not a finite number",
        ),
        (
            lambda b: b["results"]["sentiments"]["segments"][0].update(sentiment_score=None),
            r"segments\[0\].sentiment_score should be a number, got NoneType",
        ),
        (
            lambda b: b["results"]["sentiments"]["segments"][1].update(sentiment="happy"),
            r"results.sentiments.segments\[1\].sentiment is 'happy', not one of positive, neutral, negative",
        ),
        (
            lambda b: b["results"]["sentiments"]["segments"][0].update(sentiment=["positive"]),
            r"segments\[0\].sentiment should be a string, got list",
        ),
        (
            lambda b: b["results"]["sentiments"]["average"].update(sentiment="POSITIVE"),
            r"results.sentiments.average.sentiment is 'POSITIVE', not one of",
        ),
        (
            lambda b: b["results"]["sentiments"].update(segments=_segments((-1, 3))),
            r"segments\[0\] has a negative word offset \(-1..3\)",
        ),
        (
            lambda b: b["results"]["sentiments"].update(segments=_segments((0, 3), (4, 2))),
            r"segments\[1\].end_word 2 is before its start_word 4",
        ),
        (
            lambda b: b["results"]["sentiments"].update(segments=_segments((1, 3))),
            r"segments\[0\].start_word is 1, not 0",
        ),
        (
            lambda b: b["results"]["sentiments"].update(segments=_segments((0, 3), (5, 7))),
            r"segments\[1\].start_word is 5, but the previous segment ended at word 3 \(word offsets must be contiguous\)",
        ),
        (
            lambda b: b["results"]["sentiments"].update(segments=_segments((0, 3), (3, 7))),
            r"segments\[1\].start_word is 3, but the previous segment ended at word 3",
        ),
        (lambda b: b["results"]["sentiments"].pop("average"), r"results.sentiments.average should be an object"),
    ],
)
def test_invalid_values_name_the_field(mutate, message):
    body = json.loads(json.dumps(REFERENCE_RESPONSE))
    mutate(body)
    with pytest.raises(DeepgramResponseError, match=message) as raised:
        SentimentResult.from_response(body)
    error = raised.value
    assert error.request_id == "7dcd719f-344b-4c72-a194-6bd1019d855c"
    # A bad answer fails its document alone: not retried, not systemic.
    assert not error.retryable and not error.systemic


def test_nan_from_json_text_is_refused():
    """Python's json accepts NaN and Infinity literals; the model refuses them."""
    text = json.dumps(REFERENCE_RESPONSE).replace("0.057771213352680206", "NaN")
    with pytest.raises(DeepgramResponseError, match=r"segments\[1\].sentiment_score is nan"):
        SentimentResult.from_response(json.loads(text))


def test_empty_segment_list_is_accepted():
    body = json.loads(json.dumps(REFERENCE_RESPONSE))
    body["results"]["sentiments"]["segments"] = []
    assert SentimentResult.from_response(body).segments == ()


@pytest.mark.parametrize(
    ("score", "label"),
    [
        (0.34, "positive"),
        (0.333, "neutral"),
        (0.0, "neutral"),
        (-0.333, "neutral"),
        (-0.34, "negative"),
        (1.0, "positive"),
    ],
)
def test_label_threshold(score, label):
    assert label_for_score(score) == label


def test_average_of_no_segments_is_neutral_zero():
    assert average_of([]).to_dict() == {"sentiment": "neutral", "sentiment_score": 0.0}
