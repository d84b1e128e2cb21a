"""Split texts over the API's token limit at sentence boundaries, and merge the parts' results.

Deepgram refuses a text of more than 150K tokens in one request
(``TOKEN_LIMIT_EXCEEDED``). :func:`chunk_text` cuts such a text into parts of at
most ``max_tokens`` tokens, each ending at a sentence boundary where one exists,
and :func:`merge_results` joins the parts' results back into one result for the
whole text: segments in order, word offsets shifted so they stay contiguous over
the whole text, the average recomputed and the tokens summed.

Word offsets are counted over whitespace-separated words, as the API counts
them; a part always holds whole words, so shifting by the words of the parts
before it keeps every offset exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from airflow_provider_dgsentiment.client.results import Segment, SentimentResult, average_of, count_words

#: The API's per-request limit.
API_TOKEN_LIMIT = 150_000
#: Parts are cut well under the limit: our count is an estimate of Deepgram's tokenizer.
DEFAULT_CHUNK_TOKENS = 100_000

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END_RE = re.compile(r"[.!?][\"')\]]*$")


def count_tokens(text: str) -> int:
    """Estimate the API's token count: one token per word and one per punctuation mark."""
    return len(_TOKEN_RE.findall(text))


def chunk_text(text: str, max_tokens: int = DEFAULT_CHUNK_TOKENS) -> list[str]:
    """
    Split ``text`` into parts of at most ``max_tokens`` tokens, cut after sentence ends.

    A text within the limit comes back as ``[text]`` unchanged. Parts are slices of
    the original text between whole words, so no word is split or lost; a single
    sentence longer than the limit is cut between words.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    # Every token is at least one character: a text this short needs no count.
    if len(text) <= max_tokens or count_tokens(text) <= max_tokens:
        return [text]

    parts: list[str] = []
    part_start = None  # character offset where the current part starts
    part_tokens = 0
    last_sentence_end = None  # (char offset after the word, tokens up to it)
    for match in re.finditer(r"\S+", text):
        word = match.group()
        word_tokens = count_tokens(word)
        if part_start is None:
            part_start = match.start()
        while part_tokens + word_tokens > max_tokens and part_tokens > 0:
            if last_sentence_end is not None:
                cut, cut_tokens = last_sentence_end
            else:
                cut, cut_tokens = match.start(), part_tokens
            parts.append(text[part_start:cut].strip())
            part_start = _next_word_start(text, cut)
            part_tokens -= cut_tokens
            last_sentence_end = None
        part_tokens += word_tokens
        if _SENTENCE_END_RE.search(word):
            last_sentence_end = (match.end(), part_tokens)
    if part_start is not None and text[part_start:].strip():
        parts.append(text[part_start:].strip())
    return parts


def _next_word_start(text: str, offset: int) -> int:
    match = re.compile(r"\S").search(text, offset)
    return match.start() if match else len(text)


def merge_results(parts: Sequence[SentimentResult], part_texts: Sequence[str]) -> SentimentResult:
    """
    Merge the results of consecutive parts of one text into the result for the whole text.

    :param parts: the results, in the order of the parts.
    :param part_texts: the texts of the parts, used to count each part's words.
    """
    if len(parts) != len(part_texts):
        raise ValueError("merge_results needs one text per result")
    if len(parts) == 1:
        return parts[0]
    segments: list[Segment] = []
    offset = 0
    for result, part_text in zip(parts, part_texts):
        for segment in result.segments:
            segments.append(
                Segment(
                    text=segment.text,
                    start_word=segment.start_word + offset,
                    end_word=segment.end_word + offset,
                    sentiment=segment.sentiment,
                    sentiment_score=segment.sentiment_score,
                )
            )
        offset += count_words(part_text)
    first = parts[0]
    return SentimentResult(
        request_id=first.request_id,
        created=first.created,
        language=first.language,
        model_uuid=first.model_uuid,
        input_tokens=sum(p.input_tokens for p in parts),
        output_tokens=sum(p.output_tokens for p in parts),
        segments=tuple(segments),
        average=average_of(segments),
        request_ids=tuple(rid for p in parts for rid in p.request_ids),
    )
