"""chunk_text and merge_results: parts at sentence ends, merged offsets contiguous."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_dgsentiment.client.chunking import chunk_text, count_tokens, merge_results
from airflow_provider_dgsentiment.client.results import Average, Segment, SentimentResult, label_for_score

REFERENCE_TEXT = (
    "Hi. Thank you for calling from premier phone services. "
    "This call may be recorded for quality and training purposes."
)


def fake_result(text: str, request_id: str, sentences_per_segment: int = 1) -> SentimentResult:
    """A result shaped like the API's for ``text``: one segment per group of words, contiguous."""
    words = text.split()
    segments = []
    size = max(1, len(words) // 3) if sentences_per_segment else len(words)
    for start in range(0, len(words), size):
        end = min(start + size, len(words)) - 1
        score = ((start * 7) % 11 - 5) / 10
        segments.append(Segment(" ".join(words[start : end + 1]), start, end, label_for_score(score), score))
    average = sum(s.sentiment_score for s in segments) / len(segments)
    return SentimentResult(
        request_id=request_id,
        created="2024-01-01T00:00:00.000Z",
        language="en",
        model_uuid="m",
        input_tokens=count_tokens(text),
        output_tokens=count_tokens(text),
        segments=tuple(segments),
        average=Average(label_for_score(average), average),
        request_ids=(request_id,),
    )


def test_count_tokens_matches_reference_example():
    assert count_tokens(REFERENCE_TEXT) == 22


def test_short_text_is_one_part_unchanged():
    assert chunk_text(REFERENCE_TEXT, 1000) == [REFERENCE_TEXT]


def test_parts_end_at_sentence_boundaries():
    text = " ".join(f"This is sentence {i}." for i in range(100))  # 5 tokens each
    parts = chunk_text(text, 52)
    assert len(parts) > 1
    assert all(part.endswith(".") for part in parts)
    assert all(count_tokens(part) <= 52 for part in parts)
    assert " ".join(parts) == text


def test_one_long_sentence_is_cut_between_words():
    text = " ".join(["word"] * 250)
    parts = chunk_text(text, 100)
    assert [len(p.split()) for p in parts] == [100, 100, 50]


def test_merge_shifts_offsets_sums_tokens_and_recomputes_average():
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    parts = chunk_text(text, 60)
    results = [fake_result(part, f"r{i}") for i, part in enumerate(parts)]
    merged = merge_results(results, parts)
    assert merged.segments[0].start_word == 0
    assert merged.segments[-1].end_word == len(text.split()) - 1
    for previous, current in zip(merged.segments, merged.segments[1:]):
        assert current.start_word == previous.end_word + 1
    assert merged.input_tokens == sum(r.input_tokens for r in results)
    mean = sum(s.sentiment_score for s in merged.segments) / len(merged.segments)
    assert merged.average.sentiment_score == mean
    assert merged.average.sentiment == label_for_score(mean)
    assert merged.request_ids == tuple(f"r{i}" for i in range(len(parts)))
    assert merged.to_dict()["metadata"]["request_ids"] == list(merged.request_ids)


words = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), min_size=1, max_size=8)
separators = st.sampled_from([" ", "  ", "\n", "\t", " \n "])
enders = st.sampled_from(["", "", "", ".", "!", "?", '."'])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(words, enders, separators), min_size=1, max_size=120),
    st.integers(min_value=1, max_value=60),
)
def test_any_text_any_split_covers_every_word_once(pieces, max_tokens):
    text = "".join(word + ender + sep for word, ender, sep in pieces)
    if not text.split():
        return
    parts = chunk_text(text, max_tokens)
    # No word is lost, split or duplicated by chunking.
    assert [w for part in parts for w in part.split()] == text.split()
    merged = merge_results([fake_result(p, f"r{i}") for i, p in enumerate(parts)], parts)
    covered = [i for s in merged.segments for i in range(s.start_word, s.end_word + 1)]
    assert covered == list(range(len(text.split())))
