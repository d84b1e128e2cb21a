"""Properties of the result model and of chunked scoring through the real emulator (hypothesis).

The chunk/merge property on synthetic results is in ``tests/test_chunking.py``; here the
parts really go over HTTP to the emulator, which segments them its own way.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_dgsentiment.client.results import SENTIMENT_LABELS, Average, Segment, SentimentResult
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

EXAMPLES = 50

identifiers = st.one_of(st.none(), st.uuids().map(str), st.text(min_size=1, max_size=20))
scores = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
token_counts = st.integers(min_value=0, max_value=2**40)


@st.composite
def segment_lists(draw) -> tuple[Segment, ...]:
    """Contiguous segments over 1..40 words, each with its own text, label and score."""
    count = draw(st.integers(min_value=0, max_value=6))
    segments, start = [], 0
    for _ in range(count):
        length = draw(st.integers(min_value=1, max_value=8))
        segments.append(
            Segment(
                text=draw(st.text(max_size=40)),
                start_word=start,
                end_word=start + length - 1,
                sentiment=draw(st.sampled_from(SENTIMENT_LABELS)),
                sentiment_score=draw(scores),
            )
        )
        start += length
    return tuple(segments)


@st.composite
def results(draw, *, merged: bool) -> SentimentResult:
    """A result as the hook builds it: one request id, or (``merged``) several from a chunked text."""
    request_id = draw(st.uuids().map(str)) if merged else draw(identifiers)
    if merged:
        request_ids = (request_id, *draw(st.lists(st.uuids().map(str), min_size=1, max_size=4)))
    else:
        request_ids = (request_id,) if request_id else ()
    return SentimentResult(
        request_id=request_id,
        created=draw(st.one_of(st.none(), st.datetimes().map(lambda d: d.isoformat() + "Z"))),
        language=draw(st.one_of(st.none(), st.just("en"), st.text(min_size=1, max_size=5))),
        model_uuid=draw(identifiers),
        input_tokens=draw(token_counts),
        output_tokens=draw(token_counts),
        segments=draw(segment_lists()),
        average=Average(sentiment=draw(st.sampled_from(SENTIMENT_LABELS)), sentiment_score=draw(scores)),
        request_ids=request_ids,
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(results(merged=False))
def test_single_request_result_round_trips_through_to_dict_and_json(result):
    data = result.to_dict()
    encoded = json.dumps(data, allow_nan=False)  # plain JSON, no NaN/Infinity
    assert SentimentResult.from_response(data) == result
    assert SentimentResult.from_response(json.loads(encoded)) == result


def test_merged_result_round_trips_through_to_dict():
    """A text scored in two parts: its result names both requests, and so must the result read back."""
    segments = (Segment("Great start.", 0, 1, "positive", 0.6), Segment("Bad end.", 2, 3, "negative", -0.5))
    result = SentimentResult(
        request_id="req-part-1",
        created="2024-06-01T00:00:00.000Z",
        language="en",
        model_uuid="m",
        input_tokens=6,
        output_tokens=6,
        segments=segments,
        average=Average("neutral", 0.05),
        request_ids=("req-part-1", "req-part-2"),
    )
    data = result.to_dict()
    assert data["metadata"]["request_ids"] == ["req-part-1", "req-part-2"]
    assert SentimentResult.from_response(data).request_ids == ("req-part-1", "req-part-2")


# ---------------------------------------------------------------------- chunked scoring via the emulator

# Words without whitespace (the API counts whitespace-separated words); no surrogates.
words = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=10)
separators = st.sampled_from([" ", "  ", "\n", "\t", " \n\n ", "\r\n", "\u3000", "\xa0", "\u2028", "\x1f", "\x85"])
enders = st.sampled_from(["", "", "", ".", "!", "?", '."', "?)"])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(words, enders, separators), min_size=1, max_size=25),
    st.sampled_from(["", " ", "\n"]),
    st.integers(min_value=1, max_value=12),
)
def test_chunked_text_scored_by_the_emulator_covers_every_word_once(deepgram_conn, pieces, lead, max_chunk_tokens):
    text = lead + "".join(word + ender + separator for word, ender, separator in pieces)
    with DeepgramSentimentHook(max_chunk_tokens=max_chunk_tokens) as hook:
        result = hook.analyze(text)
    words_of_text = text.split()
    covered = [index for segment in result.segments for index in range(segment.start_word, segment.end_word + 1)]
    assert covered == list(range(len(words_of_text)))  # contiguous, in order, each word exactly once
    assert [word for segment in result.segments for word in segment.text.split()] == words_of_text
    assert result.word_count == len(words_of_text)
    assert len(result.request_ids) >= 1 and all(result.request_ids)
    assert result.input_tokens > 0
