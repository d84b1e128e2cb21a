"""The result model: one :class:`SentimentResult` per scored text.

``SentimentResult.from_response`` reads the API's JSON (and refuses a body of the
wrong shape with a :class:`DeepgramResponseError` that says which field is wrong);
``to_dict`` gives it back as plain JSON-safe data in the API's own shape, so
downstream tasks need no provider imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NoReturn

#: Scores above this are positive, below its negative are negative, the rest neutral.
SENTIMENT_THRESHOLD = 0.333
SENTIMENT_LABELS = ("positive", "neutral", "negative")
_LABELS = frozenset(SENTIMENT_LABELS)


def label_for_score(score: float) -> str:
    """Return the API's label for a score in [-1, 1]."""
    if score > SENTIMENT_THRESHOLD:
        return "positive"
    if score < -SENTIMENT_THRESHOLD:
        return "negative"
    return "neutral"


@dataclass(frozen=True)
class Segment:
    """
    A span of the text with one sentiment.

    :param text: the words of the span.
    :param start_word: index of its first whitespace-separated word (0-based, inclusive).
    :param end_word: index of its last word (inclusive).
    :param sentiment: ``positive``, ``neutral`` or ``negative``.
    :param sentiment_score: a float in [-1, 1].
    """

    text: str
    start_word: int
    end_word: int
    sentiment: str
    sentiment_score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start_word": self.start_word,
            "end_word": self.end_word,
            "sentiment": self.sentiment,
            "sentiment_score": self.sentiment_score,
        }


@dataclass(frozen=True)
class Average:
    """
    The sentiment of the whole text.

    :param sentiment: ``positive``, ``neutral`` or ``negative``.
    :param sentiment_score: a float in [-1, 1].
    """

    sentiment: str
    sentiment_score: float

    def to_dict(self) -> dict[str, Any]:
        return {"sentiment": self.sentiment, "sentiment_score": self.sentiment_score}


@dataclass(frozen=True)
class SentimentResult:
    """
    Deepgram's answer for one text.

    :param request_id: Deepgram's request id (for a chunked text, the first part's).
    :param created: the ISO-8601 time Deepgram created the result.
    :param language: the language code the text was scored in.
    :param model_uuid: the sentiment model's id.
    :param input_tokens: tokens Deepgram counted in the input.
    :param output_tokens: tokens Deepgram counted in the output.
    :param segments: the spans of the text, in order, covering every word.
    :param average: the sentiment of the whole text.
    :param request_ids: all request ids, when the text was scored in several parts.
    """

    request_id: str | None
    created: str | None
    language: str | None
    model_uuid: str | None
    input_tokens: int
    output_tokens: int
    segments: tuple[Segment, ...]
    average: Average
    request_ids: tuple[str, ...] = field(default=())

    @classmethod
    def from_response(cls, data: Any, *, request_id: str | None = None) -> SentimentResult:
        """
        Build a result from the API's JSON response.

        :param data: the decoded JSON body.
        :param request_id: the ``dg-request-id`` header, used when the body has none.
        :raises DeepgramResponseError: when the body is not the documented shape: a field
            missing or of the wrong type, a score that is not a finite number, a label other
            than positive/neutral/negative, word offsets that are negative, reversed or not
            contiguous from 0. The message names the field.
        """
        reader = _ShapeReader(request_id)
        reader.mapping(data, "")
        metadata = reader.mapping(data.get("metadata"), "metadata")
        body_request_id = metadata.get("request_id")
        request_id = str(body_request_id) if body_request_id is not None else request_id
        reader.request_id = request_id
        info = metadata.get("sentiment_info") or {}
        reader.mapping(info, "metadata.sentiment_info")
        results = reader.mapping(data.get("results"), "results")
        sentiments = reader.mapping(results.get("sentiments"), "results.sentiments")
        raw_segments = sentiments.get("segments")
        if not isinstance(raw_segments, list):
            reader.fail("results.sentiments.segments", "a list", raw_segments)
        segments = []
        next_word = 0
        for index, raw in enumerate(raw_segments):
            path = f"results.sentiments.segments[{index}]"
            seg = reader.mapping(raw, path)
            start_word = reader.integer(seg, "start_word", path)
            end_word = reader.integer(seg, "end_word", path)
            if start_word != next_word or end_word < start_word:
                reader.bad_offsets(path, index, start_word, end_word, next_word)
            next_word = end_word + 1
            segments.append(
                Segment(
                    text=reader.string(seg, "text", path),
                    start_word=start_word,
                    end_word=end_word,
                    sentiment=reader.label(seg, path),
                    sentiment_score=reader.score(seg, path),
                )
            )
        average_raw = reader.mapping(sentiments.get("average"), "results.sentiments.average")
        average = Average(
            sentiment=reader.label(average_raw, "results.sentiments.average"),
            sentiment_score=reader.score(average_raw, "results.sentiments.average"),
        )
        return cls(
            request_id=request_id,
            created=_optional_str(metadata.get("created")),
            language=_optional_str(metadata.get("language")),
            model_uuid=_optional_str(info.get("model_uuid")),
            input_tokens=_optional_int(info.get("input_tokens")),
            output_tokens=_optional_int(info.get("output_tokens")),
            segments=tuple(segments),
            average=average,
            request_ids=tuple(str(rid) for rid in metadata.get("request_ids") or ())
            or ((request_id,) if request_id else ()),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-safe data in the API's response shape."""
        metadata: dict[str, Any] = {
            "request_id": self.request_id,
            "created": self.created,
            "language": self.language,
            "sentiment_info": {
                "model_uuid": self.model_uuid,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
            },
        }
        if len(self.request_ids) > 1:
            metadata["request_ids"] = list(self.request_ids)
        return {
            "metadata": metadata,
            "results": {
                "sentiments": {
                    "segments": [segment.to_dict() for segment in self.segments],
                    "average": self.average.to_dict(),
                }
            },
        }

    def to_summary(self) -> dict[str, Any]:
        """Return a compact per-document summary (no segment texts)."""
        return {
            "sentiment": self.average.sentiment,
            "sentiment_score": self.average.sentiment_score,
            "segment_count": len(self.segments),
            "input_tokens": self.input_tokens,
            "request_id": self.request_id,
        }

    @property
    def word_count(self) -> int:
        """Number of words the segments cover (``end_word`` of the last segment + 1)."""
        return self.segments[-1].end_word + 1 if self.segments else 0

    def check_covers(self, words: int) -> None:
        """
        Refuse an answer whose segments do not cover exactly the ``words`` words that were sent.

        The API's segments span the whole input text, word 0 to its last word
        (:func:`count_words`). An answer with no segments for a text with words, segments
        that stop before its end, or offsets past its last word (another text's answer) is
        not this text's score. Contiguity from word 0 is checked by :meth:`from_response`.

        :param words: the words of the text this answer is for.
        :raises DeepgramResponseError: saying which words are missing or extra.
        """
        covered = self.word_count
        if covered == words:
            return
        reader = _ShapeReader(self.request_id)
        if not self.segments:
            reader.refuse(f"the answer has no segments for a text of {words} words (segments must cover every word)")
        last = covered - 1
        if covered > words:
            reader.refuse(
                f"the segments reach word {last}, past the text's last word {words - 1} "
                f"(the text has {words} words; is this another text's answer?)"
            )
        reader.refuse(
            f"the segments end at word {last}, but the text has {words} words: words {covered}..{words - 1} "
            "are not covered"
        )


def count_words(text: str) -> int:
    """Count the words of ``text`` as the API numbers them in word offsets: whitespace-separated tokens."""
    return len(text.split())


def average_of(segments: tuple[Segment, ...] | list[Segment]) -> Average:
    """Return the average the API reports: the mean segment score, labelled by the same rule."""
    if not segments:
        return Average(sentiment="neutral", sentiment_score=0.0)
    score = sum(segment.sentiment_score for segment in segments) / len(segments)
    return Average(sentiment=label_for_score(score), sentiment_score=score)


class _ShapeReader:
    """Read fields of a response and fail with the field's path and the request id."""

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id

    def fail(self, path: str, expected: str, value: Any) -> NoReturn:
        self.refuse(f"{path or 'response body'} should be {expected}, got {type(value).__name__}")

    def refuse(self, message: str) -> NoReturn:
        # Imported here so the result model (used by the emulator) does not import Airflow.
        from airflow_provider_dgsentiment.exceptions import DeepgramResponseError

        raise DeepgramResponseError(message, request_id=self.request_id)

    def label(self, obj: dict[str, Any], path: str) -> str:
        value = obj.get("sentiment")
        if not isinstance(value, str) or value not in _LABELS:
            if not isinstance(value, str):
                self.fail(f"{path}.sentiment", "a string", value)
            self.refuse(f"{path}.sentiment is {value[:40]!r}, not one of {', '.join(SENTIMENT_LABELS)}")
        return value

    def score(self, obj: dict[str, Any], path: str) -> float:
        value = obj.get("sentiment_score")
        if type(value) is not float or not math.isfinite(value):
            value = self.number(obj, "sentiment_score", path)
            if not math.isfinite(value):
                self.refuse(f"{path}.sentiment_score is {value}, not a finite number")
        return value

    def bad_offsets(self, path: str, index: int, start_word: int, end_word: int, expected_start: int) -> None:
        if start_word < 0 or end_word < 0:
            self.refuse(f"{path} has a negative word offset ({start_word}..{end_word})")
        if end_word < start_word:
            self.refuse(f"{path}.end_word {end_word} is before its start_word {start_word}")
        if index == 0:
            self.refuse(f"{path}.start_word is {start_word}, not 0 (word offsets must start at 0)")
        self.refuse(
            f"{path}.start_word is {start_word}, but the previous segment ended at word {expected_start - 1} "
            "(word offsets must be contiguous)"
        )

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, "an object", value)
        return value

    def string(self, obj: dict[str, Any], key: str, path: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str):
            self.fail(f"{path}.{key}", "a string", value)
        return value

    def integer(self, obj: dict[str, Any], key: str, path: str) -> int:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{path}.{key}", "an integer", value)
        return value

    def number(self, obj: dict[str, Any], key: str, path: str) -> float:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"{path}.{key}", "a number", value)
        return float(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
