"""The emulator's token count: a sub-word estimate, not the whitespace word count.

Deepgram bills and limits ``/v1/read`` by its model's tokens (``input_tokens``,
``output_tokens``, and ``TOKEN_LIMIT_EXCEEDED`` above 150K per request), and its
tokenizer is not published. The emulator counts the way sub-word (BPE-style)
vocabularies do, roughly:

1. A run of letters and digits of up to :data:`WHOLE_WORD_CHARS` characters is one
   token (common words are whole entries in such vocabularies).
2. A longer run costs one more token for every :data:`CHARS_PER_EXTRA_TOKEN`
   characters (or part) beyond that: ``"professionalism"`` (15) is 3 tokens.
3. Every other character that is not whitespace (punctuation, symbols, ``_``)
   is one token of its own.

The reference example (``"Hi. Thank you for calling ..."``) counts 22, the number
the API documents. Counts add up over whitespace: a text cut between words counts
the sum of its parts.

This is the emulator's own rule, independent of the provider's client: a client
that estimates one token per word undercounts long-word text here, as it can
against the live API.
"""

from __future__ import annotations

import re

#: The API's per-request limit (``TOKEN_LIMIT_EXCEEDED`` above it).
TOKEN_LIMIT = 150_000
#: Runs of letters and digits up to this long are one token.
WHOLE_WORD_CHARS = 10
#: Beyond :data:`WHOLE_WORD_CHARS`, one more token per this many characters (or part).
CHARS_PER_EXTRA_TOKEN = 4

# A run of letters/digits (``\w`` without ``_``), or any one other non-space character.
_PIECE_RE = re.compile(r"[^\W_]+|[^\w\s]|_")
_LONG_RUN_RE = re.compile(rf"[^\W_]{{{WHOLE_WORD_CHARS + 1},}}")


def count_tokens(text: str) -> int:
    """Return the emulator's token count of ``text`` (see the module docstring for the rule)."""
    tokens = len(_PIECE_RE.findall(text))
    for run in _LONG_RUN_RE.findall(text):
        beyond = len(run) - WHOLE_WORD_CHARS
        tokens += (beyond + CHARS_PER_EXTRA_TOKEN - 1) // CHARS_PER_EXTRA_TOKEN
    return tokens
