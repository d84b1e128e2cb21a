"""The emulator's sentiment model: VADER sentence scores, segmented the way the API segments.

:func:`score_text` turns a text into the API's ``results.sentiments`` object:

1. Words are the whitespace-separated tokens of the text, numbered from 0.
2. A word ending in ``.``, ``!`` or ``?`` (optionally followed by closing quotes
   or brackets) ends a sentence; the last word always ends one.
3. A sentence of fewer than :data:`MIN_SENTENCE_WORDS` words (a greeting such as
   "Hi.") joins the sentence after it, or the one before it when it is last.
4. Each sentence is scored with VADER's ``compound`` score and labelled by the
   API's rule (:func:`label_for_score`): ``positive`` above
   :data:`SENTIMENT_THRESHOLD`, ``negative`` below its negative, else ``neutral``.
5. Consecutive sentences with the same label merge into one segment scored with
   the mean of their scores; segments cover every word, in order, contiguously.
6. The average is the mean of the segment scores, labelled by the same rule
   (``neutral``, 0.0 for a text without words).

The model is deterministic: the same text always gives the same result. It is
the emulator's own: nothing here comes from the provider's client, so tests of
the client check it against a second implementation of the API.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

#: Sentences shorter than this many words join a neighbour instead of standing alone.
MIN_SENTENCE_WORDS = 3
#: Scores above this are ``positive``, below its negative ``negative``, others ``neutral``.
SENTIMENT_THRESHOLD = 0.333

_WORD_RE = re.compile(r"\S+")
# Sentence-final punctuation, optionally followed by closing quotes or brackets.
_SENTENCE_END_RE = re.compile(r"[.!?][\"'\u2019\u201d\u00bb)\]}]*$")

_analyzer: SentimentIntensityAnalyzer | None = None
_analyzer_lock = threading.Lock()


def _get_analyzer() -> SentimentIntensityAnalyzer:
    """Return the process-wide VADER analyzer, loading its lexicon on first use."""
    global _analyzer
    if _analyzer is None:
        with _analyzer_lock:
            if _analyzer is None:
                try:
                    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise ImportError(
                        "The Deepgram emulator needs vaderSentiment; install 'airflow-provider-dgsentiment[emulator]'."
                    ) from exc
                _analyzer = SentimentIntensityAnalyzer()
    return _analyzer


@dataclass(frozen=True)
class Sentence:
    """
    A run of words scored together.

    :param start_word: index of its first word (inclusive).
    :param end_word: index of its last word (inclusive).
    :param start: character offset of its first word in the text.
    :param end: character offset just after its last word.
    """

    start_word: int
    end_word: int
    start: int
    end: int

    @property
    def word_count(self) -> int:
        return self.end_word - self.start_word + 1


def split_sentences(text: str) -> list[Sentence]:
    """
    Split ``text`` into sentences over its whitespace-separated words.

    Sentences shorter than :data:`MIN_SENTENCE_WORDS` words are joined to the next
    sentence (or, at the end of the text, to the previous one). A text without
    words gives an empty list.
    """
    raw: list[Sentence] = []
    first: re.Match[str] | None = None
    first_index = 0
    previous: re.Match[str] | None = None
    index = -1
    for index, match in enumerate(_WORD_RE.finditer(text)):
        if first is None:
            first, first_index = match, index
        if _SENTENCE_END_RE.search(match.group()):
            raw.append(Sentence(first_index, index, first.start(), match.end()))
            first = None
        previous = match
    if first is not None and previous is not None:
        raw.append(Sentence(first_index, index, first.start(), previous.end()))

    sentences: list[Sentence] = []
    pending: Sentence | None = None  # short sentences waiting to join the next one
    for sentence in raw:
        if pending is not None:
            sentence = Sentence(pending.start_word, sentence.end_word, pending.start, sentence.end)
            pending = None
        if sentence.word_count < MIN_SENTENCE_WORDS:
            pending = sentence
        else:
            sentences.append(sentence)
    if pending is not None:
        if sentences:
            last = sentences[-1]
            sentences[-1] = Sentence(last.start_word, pending.end_word, last.start, pending.end)
        else:
            sentences.append(pending)
    return sentences


def label_for_score(score: float) -> str:
    """Return the API's label for a score in [-1, 1]: it flips at ±:data:`SENTIMENT_THRESHOLD`."""
    if score > SENTIMENT_THRESHOLD:
        return "positive"
    if score < -SENTIMENT_THRESHOLD:
        return "negative"
    return "neutral"


def score_sentence(text: str) -> float:
    """Return VADER's compound score of ``text``, a float in [-1, 1]."""
    return float(_get_analyzer().polarity_scores(text)["compound"])


def score_segments(text: str) -> list[dict[str, Any]]:
    """Return the API's segments for ``text``: contiguous, in order, covering every word."""
    segments: list[dict[str, Any]] = []
    group: list[tuple[Sentence, float]] = []
    group_label = ""

    def close_group() -> None:
        first, last = group[0][0], group[-1][0]
        segments.append(
            {
                "text": text[first.start : last.end],
                "start_word": first.start_word,
                "end_word": last.end_word,
                "sentiment": group_label,
                "sentiment_score": sum(score for _, score in group) / len(group),
            }
        )

    for sentence in split_sentences(text):
        score = score_sentence(text[sentence.start : sentence.end])
        label = label_for_score(score)
        if group and label != group_label:
            close_group()
            group = []
        group.append((sentence, score))
        group_label = label
    if group:
        close_group()
    return segments


def average_of(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the API's average: the mean segment score, labelled by :func:`label_for_score`."""
    if not segments:
        return {"sentiment": "neutral", "sentiment_score": 0.0}
    score = sum(segment["sentiment_score"] for segment in segments) / len(segments)
    return {"sentiment": label_for_score(score), "sentiment_score": score}


def score_text(text: str) -> dict[str, Any]:
    """
    Score ``text`` and return the API's ``results.sentiments`` object.

    :return: ``{"segments": [...], "average": {"sentiment": ..., "sentiment_score": ...}}``
        as plain JSON-safe data.
    """
    segments = score_segments(text)
    return {"segments": segments, "average": average_of(segments)}
