"""``max_input_tokens`` against what the emulator bills: sub-word tokens, several per long word.

The client estimates one token per word and mark; on German compounds, URLs and hashes
the emulator (like the live API) bills several times that. The cap must hold against the
billed count, and where the estimate turns wrong in mid-run, the overshoot stays within
the requests in flight.
"""

from __future__ import annotations

import pytest

from airflow_provider_dgsentiment.emulator import count_tokens as billed_tokens
from airflow_provider_dgsentiment.exceptions import DeepgramTokenBudgetError
from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

CAP = 687
GERMAN = (
    "Donaudampfschifffahrtsgesellschaftskapitän Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz "
    "Kraftfahrzeughaftpflichtversicherung."
)
HASHES = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 60303ae22b998861bce3b28f33eec1be758a213c"
URLS = "https://shop.example.com/products/wireless-noise-cancelling-headphones?ref=newsletter2024"
#: Words of 8 to 10 letters: one token each for the emulator, about two each by characters.
WORDY = "Wonderful delivery, friendly couriers, careful packaging, reliable tracking, generous discounts."


def _billed(emulator_conn, texts, in_flight):
    before = emulator_conn.stats()["input_tokens"]
    with DeepgramSentimentHook() as hook:
        outcomes = list(hook.analyze_many(texts, max_concurrency=in_flight, max_input_tokens=CAP))
    return emulator_conn.stats()["input_tokens"] - before, outcomes


@pytest.mark.parametrize("text", [GERMAN, HASHES, URLS], ids=["german", "hashes", "urls"])
def test_cap_holds_on_long_word_text_with_ten_in_flight(deepgram_conn, text):
    per_document = billed_tokens(text)
    billed, outcomes = _billed(deepgram_conn, [text] * 100, 10)
    # 0.2 admitted ten requests at once on the estimate and billed up to 4x the cap.
    assert billed <= CAP
    assert billed > CAP - per_document  # it stopped only when the next one would not fit
    stops = [outcome for _, outcome in outcomes if isinstance(outcome, DeepgramTokenBudgetError)]
    assert len(stops) == 1 and f"max_input_tokens={CAP} would be passed" in str(stops[0])


def test_overshoot_when_the_estimate_turns_wrong_is_bounded_by_the_requests_in_flight(deepgram_conn):
    in_flight = 10
    # The ratio learnt on the prose (~0.7) underestimates the hashes that follow.
    billed, _ = _billed(deepgram_conn, [WORDY] * 20 + [HASHES] * 100, in_flight)
    assert billed <= CAP + in_flight * billed_tokens(HASHES)
