"""Token budget benchmark: how far ``max_input_tokens`` can be passed on long-word text.

Run it from the repository root with the project's virtualenv (``make benchmark``)::

    .venv/bin/python benchmarks/token_budget.py

The client estimates the larger of one token per word and punctuation mark and one per
four characters (``client/engine.py`` ``billing_estimate``); the API bills sub-word tokens,
several per long word, by a rule it does not publish. The emulator counts tokens sub-word too (its own rule,
``emulator/tokens.py``), so it stands in for the live API's billing here. For each kind of
text, the hook scores 200 documents with ``max_input_tokens`` (687, the figure of the
issue that measured 0.2: 2,740 billed over 10 requests with 10 in flight) at 1 and at 10 in
flight, and prints what the emulator billed side by side with the cap:

- ``plain``: English prose (the estimate is about right: the run should stop close to the cap);
- ``german``, ``urls``, ``hashes``: every document of one kind (the estimate is wrong by the
  same factor throughout: the ratio learnt from the first answer corrects it);
- ``plain-then-hashes``: 20 plain English documents, then hashes;
- ``wordy-then-hashes``: 20 documents of 8-10 letter words (the character count overestimates
  them, so the ratio learns about 0.7), then hashes: the estimate turns wrong in mid-run, with
  requests in flight admitted on the prose's ratio (the worst case).

Columns: requests sent, tokens estimated per document, billed per document (the emulator's
count), billed in total, overshoot (billed beyond the cap), and the bound the README states:
the requests in flight when the estimate turns wrong, each billing at most one document's
tokens beyond its reservation. It grades nothing (no pass/fail).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from emulator_process import EmulatorProcess  # benchmarks/ is on sys.path when a benchmark runs as a script

API_KEY = "bench-token-budget-key"
DOCUMENTS = 200
CAP = 687
PLAIN = "The support team answered quickly and the refund arrived on time."
#: Words of 8 to 10 letters: whole tokens for the API, about two each by characters (the ratio learns < 1).
WORDY = "Wonderful delivery, friendly couriers, careful packaging, reliable tracking, generous discounts."
GERMAN = (
    "Donaudampfschifffahrtsgesellschaftskapitän Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz "
    "Kraftfahrzeughaftpflichtversicherung Grundstücksverkehrsgenehmigungszuständigkeitsübertragungsverordnung."
)
URLS = (
    "https://shop.example.com/products/wireless-noise-cancelling-headphones?ref=newsletter2024 "
    "http://tracking.example.org/checkout/confirmation/9f86d081884c7d659a2feaa0c55ad015"
)
HASHES = (
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 "
    "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
)


def kinds() -> dict[str, list[str]]:
    return {
        "plain": [PLAIN] * DOCUMENTS,
        "german": [GERMAN] * DOCUMENTS,
        "urls": [URLS] * DOCUMENTS,
        "hashes": [HASHES] * DOCUMENTS,
        "plain-then-hashes": [PLAIN] * 20 + [HASHES] * (DOCUMENTS - 20),
        "wordy-then-hashes": [WORDY] * 20 + [HASHES] * (DOCUMENTS - 20),
    }


def measure(texts: list[str], in_flight: int, cap: int) -> dict[str, int]:
    from airflow_provider_dgsentiment.client.engine import billing_estimate
    from airflow_provider_dgsentiment.emulator.tokens import count_tokens as billed_tokens
    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

    with DeepgramSentimentHook(max_concurrency=in_flight) as hook:
        outcomes = list(hook.analyze_many(texts, max_concurrency=in_flight, max_input_tokens=cap))
    results = [outcome for _, outcome in outcomes if not isinstance(outcome, Exception)]
    billed = sum(result.input_tokens for result in results)
    return {
        "requests": len(results),
        "estimated_per_doc": billing_estimate(texts[-1]),
        "billed_per_doc": billed_tokens(texts[-1]),
        "billed": billed,
        "overshoot": max(0, billed - cap),
        "bound": in_flight * billed_tokens(texts[-1]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=CAP)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    with EmulatorProcess(api_key=API_KEY, max_concurrency=100, latency=0.02) as emulator:
        os.environ["AIRFLOW_CONN_DEEPGRAM_DEFAULT"] = json.dumps(
            {"conn_type": "deepgram", "host": emulator.url, "password": API_KEY}
        )
        for kind, texts in kinds().items():
            for in_flight in args.in_flight:
                rows.append(
                    {"text": kind, "in_flight": in_flight, "cap": args.cap, **measure(texts, in_flight, args.cap)}
                )
    header = (
        "text",
        "in_flight",
        "cap",
        "requests",
        "estimated_per_doc",
        "billed_per_doc",
        "billed",
        "overshoot",
        "bound",
    )
    print(" ".join(f"{name:>18}" for name in header))
    for row in rows:
        print(" ".join(f"{row[name]!s:>18}" for name in header))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
