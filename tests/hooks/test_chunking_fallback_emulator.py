"""The hook's "Deepgram counted more tokens than estimated" fallback, against the emulator.

The emulator counts tokens its own way (a sub-word estimate, like the live API),
so a text of long words that the client estimates just under its chunk size is
over the 150K limit there: the first request is refused with
``TOKEN_LIMIT_EXCEEDED`` and the hook must split finer and merge.
"""

from __future__ import annotations

from airflow_provider_dgsentiment.emulator import count_tokens
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

MAX_CHUNK_TOKENS = 100_000
# 7 words and 1 full stop: 8 tokens at one per word and mark, 17 sub-word tokens in the emulator.
LONG_WORDS = "The extraordinarily accommodating representatives demonstrated unquestionable professionalism."
SENTENCES = 12_499


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}


def test_text_the_client_underestimates_is_split_finer_and_merged(deepgram_conn):
    text = " ".join([LONG_WORDS] * SENTENCES)
    words = text.split()
    one_per_word_and_mark = len(words) + text.count(".")
    emulator_tokens = count_tokens(text)
    assert MAX_CHUNK_TOKENS - 10 < one_per_word_and_mark < MAX_CHUNK_TOKENS  # one request by the estimate
    assert emulator_tokens == 17 * SENTENCES > 150_000  # ... that the API refuses
    before = deepgram_conn.stats()

    result = DeepgramSentimentHook(max_chunk_tokens=MAX_CHUNK_TOKENS).analyze(text)

    after = deepgram_conn.stats()
    by_status = _delta(after["by_status"], before["by_status"])
    sent = after["requests"] - before["requests"]
    # The whole text once (refused), then every part of a finer split scored.
    assert by_status.get("400") == 1, by_status
    assert by_status.get("200", 0) >= 2, by_status
    assert set(by_status) == {"400", "200"}
    assert sent == 1 + by_status["200"] >= 3
    assert after["rate_limited"] == before["rate_limited"]

    assert result.segments[0].start_word == 0
    assert result.segments[-1].end_word == len(words) - 1
    for previous, current in zip(result.segments, result.segments[1:]):
        assert current.start_word == previous.end_word + 1
    assert [word for segment in result.segments for word in segment.text.split()] == words
    # The parts' counts summed: the emulator's count of the whole text, not the estimate.
    assert result.input_tokens == result.output_tokens == emulator_tokens
    assert after["input_tokens"] - before["input_tokens"] == emulator_tokens
