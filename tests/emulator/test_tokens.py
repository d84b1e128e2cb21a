"""The emulator's own token count: a sub-word estimate, not the whitespace word count."""

from __future__ import annotations

import pytest

from airflow_provider_dgsentiment.emulator import count_tokens
from airflow_provider_dgsentiment.emulator.tokens import TOKEN_LIMIT

REFERENCE_TEXT = (
    "Hi. Thank you for calling from premier phone services. "
    "This call may be recorded for quality and training purposes."
)
LONG_WORDS = "The extraordinarily accommodating representatives demonstrated unquestionable professionalism."


def test_reference_example_counts_the_documented_22_tokens():
    assert count_tokens(REFERENCE_TEXT) == 22


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        (" \n\t\u3000 ", 0),
        ("a", 1),
        ("abcdefghij", 1),  # up to 10 letters: one token
        ("abcdefghijk", 2),  # 11: one more for the 1 letter beyond 10
        ("abcdefghijklmn", 2),  # 14: 4 beyond, still one more
        ("abcdefghijklmno", 3),  # 15: 5 beyond, two more
        ("professionalism", 3),
        ("12345678901234", 2),  # digits count like letters
        ("x" * 1000, 1 + 248),  # 990 beyond: 248 more (247.5 rounded up)
        ("naïve", 1),
        ("Straße", 1),
        ("snake_case", 3),  # "_" is a token of its own and splits the run
        ("don't", 3),
        ("...", 3),
        ("Hi!", 2),
        ("(it)", 3),
        ("👍", 1),
        ("e-mail", 3),
    ],
)
def test_token_rule(text, tokens):
    assert count_tokens(text) == tokens


def test_long_word_text_counts_more_than_one_token_per_word_and_mark():
    words_and_marks = len(LONG_WORDS.split()) + LONG_WORDS.count(".")

    assert words_and_marks == 8
    # The 1, extraordinarily 3, accommodating 2, representatives 3, demonstrated 2,
    # unquestionable 2, professionalism 3, "." 1.
    assert count_tokens(LONG_WORDS) == 17


@pytest.mark.parametrize(
    "text",
    [
        REFERENCE_TEXT,
        LONG_WORDS * 3,
        "alpha\u2028beta\x1cgamma\u3000delta\r\nepsilon. snake_case_names, e-mails... (x" + "y" * 40 + ")",
    ],
)
def test_counts_add_up_over_whitespace(text):
    assert count_tokens(text) == sum(count_tokens(word) for word in text.split())


def test_the_limit_is_150k():
    assert TOKEN_LIMIT == 150_000
