"""The emulator's sentiment model: VADER scores, segmented the way the API segments.

Checked against the reference example and the rules SPEC 7 documents, never
against the provider's client (the emulator is a second implementation of the API).
"""

from __future__ import annotations

import pytest

from airflow_provider_dgsentiment.emulator import scoring
from airflow_provider_dgsentiment.emulator.scoring import score_text, split_sentences

#: The API's labels flip at ±0.333 (SPEC 7).
THRESHOLD = 0.333

REFERENCE_TEXT = (
    "Hi. Thank you for calling from premier phone services. "
    "This call may be recorded for quality and training purposes."
)

VARIED_TEXTS = [
    REFERENCE_TEXT,
    "one",
    "no punctuation at all in this text",
    "Hi. Hello. Hey.",
    "Great!",
    "The food was wonderful and the staff were lovely.\n\nBut the bill was awful, terrible, a scam. Ok.",
    "  leading and trailing whitespace.   Then   multiple\tspaces\u00a0and\u2003unicode ones.  \n",
    '"I love it!" she said. (It was broken.) Really? Yes! Fine.',
    "I hate waiting. I hate the music. I hate the queue. I love the agent though, she was great and kind.",
    "a. b. c. d. e. f. g.",
    "Wait... what?! This is the worst day ever. Thanks.",
    "\u201cAbsolutely fantastic service.\u201d The end",
]


def _segments_cover(text: str, sentiments: dict) -> None:
    words = text.split()
    segments = sentiments["segments"]
    assert segments, "a text with words has at least one segment"
    assert segments[0]["start_word"] == 0
    assert segments[-1]["end_word"] == len(words) - 1
    for previous, current in zip(segments, segments[1:]):
        assert current["start_word"] == previous["end_word"] + 1
        assert current["sentiment"] != previous["sentiment"], "neighbours with one label must merge"
    for segment in segments:
        assert segment["start_word"] <= segment["end_word"]
        assert segment["text"].split() == words[segment["start_word"] : segment["end_word"] + 1]
        assert segment["text"] in text
        assert -1.0 <= segment["sentiment_score"] <= 1.0


def test_reference_example_gives_the_documented_segments():
    sentiments = score_text(REFERENCE_TEXT)

    assert sentiments["segments"] == [
        {
            "text": "Hi. Thank you for calling from premier phone services.",
            "start_word": 0,
            "end_word": 8,
            "sentiment": "positive",
            "sentiment_score": pytest.approx(0.3612),
        },
        {
            "text": "This call may be recorded for quality and training purposes.",
            "start_word": 9,
            "end_word": 18,
            "sentiment": "neutral",
            "sentiment_score": 0.0,
        },
    ]
    assert sentiments["average"] == {"sentiment": "neutral", "sentiment_score": pytest.approx(0.3612 / 2)}


def test_result_has_the_reference_shape_and_types():
    sentiments = score_text(REFERENCE_TEXT)

    assert list(sentiments) == ["segments", "average"]
    for segment in sentiments["segments"]:
        assert list(segment) == ["text", "start_word", "end_word", "sentiment", "sentiment_score"]
        assert type(segment["text"]) is str and type(segment["sentiment"]) is str
        assert type(segment["start_word"]) is int and type(segment["end_word"]) is int
        assert type(segment["sentiment_score"]) is float
    assert list(sentiments["average"]) == ["sentiment", "sentiment_score"]
    assert type(sentiments["average"]["sentiment_score"]) is float


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_segments_are_contiguous_and_cover_every_word(text):
    _segments_cover(text, score_text(text))


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_labels_follow_the_threshold_rule(text):
    sentiments = score_text(text)
    for item in [*sentiments["segments"], sentiments["average"]]:
        score = item["sentiment_score"]
        if score > THRESHOLD:
            assert item["sentiment"] == "positive"
        elif score < -THRESHOLD:
            assert item["sentiment"] == "negative"
        else:
            assert item["sentiment"] == "neutral"
    scores = [segment["sentiment_score"] for segment in sentiments["segments"]]
    assert sentiments["average"]["sentiment_score"] == pytest.approx(sum(scores) / len(scores))


def test_word_offsets_match_str_split_for_unusual_whitespace():
    text = "alpha\u2028beta\x1cgamma\u3000delta\r\nepsilon."
    sentences = split_sentences(text)

    assert len(text.split()) == 5
    assert sentences[-1].end_word == 4
    _segments_cover(text, score_text(text))


@pytest.mark.parametrize(
    ("scores", "labels", "segment_scores"),
    [
        # Exactly at the threshold is neutral; just above/below flips the label.
        ([0.333, 0.3331], ["neutral", "positive"], [0.333, 0.3331]),
        ([-0.333, -0.3331], ["neutral", "negative"], [-0.333, -0.3331]),
        # Same labels merge into one segment scored with the mean.
        ([0.5, 0.9, -0.6], ["positive", "negative"], [0.7, -0.6]),
        ([0.1, -0.2, 0.3], ["neutral"], [pytest.approx(0.2 / 3)]),
        ([-0.9, 0.0, -0.5, -0.7], ["negative", "neutral", "negative"], [-0.9, 0.0, -0.6]),
    ],
)
def test_labels_flip_at_the_threshold_and_same_labels_merge(monkeypatch, scores, labels, segment_scores):
    sentences = [f"Sentence number {i} is here." for i in range(len(scores))]
    by_sentence = dict(zip(sentences, scores))
    monkeypatch.setattr(scoring, "score_sentence", lambda text: by_sentence[text])

    sentiments = score_text(" ".join(sentences))

    assert [s["sentiment"] for s in sentiments["segments"]] == labels
    assert [s["sentiment_score"] for s in sentiments["segments"]] == pytest.approx(segment_scores)
    assert [s["end_word"] - s["start_word"] + 1 for s in sentiments["segments"]] == [
        5 * len(group) for group in _groups(scores)
    ]


def _groups(scores):
    labels = ["positive" if s > THRESHOLD else "negative" if s < -THRESHOLD else "neutral" for s in scores]
    groups: list[list[float]] = []
    for index, score in enumerate(scores):
        if groups and labels[index] == labels[index - 1]:
            groups[-1].append(score)
        else:
            groups.append([score])
    return groups


def test_short_sentences_join_the_next_one():
    text = "Hi. Ok. Thank you for calling us today. We are closed."
    sentences = split_sentences(text)

    assert [(s.start_word, s.end_word) for s in sentences] == [(0, 7), (8, 10)]
    assert text[sentences[0].start : sentences[0].end] == "Hi. Ok. Thank you for calling us today."


def test_a_short_last_sentence_joins_the_previous_one():
    text = "The service was excellent today. Thanks!"
    sentences = split_sentences(text)

    assert [(s.start_word, s.end_word) for s in sentences] == [(0, 5)]


def test_a_text_of_only_short_sentences_is_one_sentence():
    assert [(s.start_word, s.end_word) for s in split_sentences("Hi. Yes.")] == [(0, 1)]
    assert [(s.start_word, s.end_word) for s in split_sentences("Hello")] == [(0, 0)]


def test_closing_quotes_and_brackets_still_end_a_sentence():
    text = 'He said "this is great." (And it was fine.) The end is here'
    sentences = split_sentences(text)

    assert [(s.start_word, s.end_word) for s in sentences] == [(0, 4), (5, 8), (9, 12)]


def test_negative_text_scores_negative():
    text = "This is the worst service I have ever had. I hate it and I am furious. Terrible, awful experience."
    sentiments = score_text(text)

    assert [s["sentiment"] for s in sentiments["segments"]] == ["negative"]
    assert sentiments["average"]["sentiment"] == "negative"
    assert sentiments["average"]["sentiment_score"] < -0.5


def test_mixed_text_flips_between_labels():
    text = "I absolutely love this phone, it is wonderful. The battery died and support was useless and rude."
    sentiments = score_text(text)

    assert [s["sentiment"] for s in sentiments["segments"]] == ["positive", "negative"]
    assert sentiments["segments"][1]["start_word"] == 8


def test_scoring_is_deterministic():
    text = " ".join(VARIED_TEXTS)
    assert score_text(text) == score_text(text)


def test_text_without_words_is_neutral_and_empty():
    assert score_text(" \n\t ") == {"segments": [], "average": {"sentiment": "neutral", "sentiment_score": 0.0}}
