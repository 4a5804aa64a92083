"""BM25 postings and scoring: against bm25s (Lucene BM25) and hand arithmetic, BM25F fields,
visible-row statistics (deletes, segment split invariance) and candidate restriction."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from vecdb.index.sparse import PostingsCache, bm25_search, build_postings
from vecdb.index.text import tokenize

CORPUS = [
    "The grey heron is a long-legged wading bird",
    "A heron hunts fish in shallow water; herons wade",
    "Tax returns are due in April",
    "The bird sang in the morning",
    "water water everywhere nor any drop to drink",
    "",
    "Blue_heron: a large American heron",
]


def scores_of(columns, query, weights=(1.0,), alive=None, allowed=None, k=None):
    p = build_postings(columns)
    k = k or p.n
    [(s, r)] = bm25_search([(p, alive, allowed if allowed is not None else alive)], [tokenize(query)], k, weights)
    out = np.zeros(p.n)
    out[r[0][r[0] >= 0]] = s[0][r[0] >= 0]
    return out, r[0]


def test_tokenizer():
    assert tokenize("Blue_heron: a HERON's café, 2nd-rate") == ["blue", "heron", "a", "heron", "s", "café", "2nd", "rate"]
    assert tokenize(None) == [] and tokenize("") == []
    assert tokenize("the heron of the lake", frozenset({"the", "of"})) == ["heron", "lake"]


def test_matches_bm25s_lucene():
    bm25s = pytest.importorskip("bm25s")
    docs = [tokenize(t) for t in CORPUS]
    ref = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    ref.index(bm25s.tokenization.Tokenized(*_vocab_ids(docs)), show_progress=False)
    for query in ("heron", "water bird", "tax april heron", "heron herons"):
        ours, _ = scores_of([CORPUS], query)
        vocab = _vocab_ids(docs)[1]
        q_ids = [vocab[t] for t in tokenize(query) if t in vocab]
        theirs = ref.get_scores(q_ids)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _vocab_ids(docs):
    vocab = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in d] for d in docs]
    return ids, vocab


def test_hand_computed_single_field():
    corpus = ["a b", "a a c", "c"]
    s, rows = scores_of([corpus], "a")
    n, df, avg, k1, b = 3, 2, 6 / 3, 1.2, 0.75
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    expect = [idf * tf / (tf + k1 * (1 - b + b * dl / avg)) for tf, dl in ((1, 2), (2, 3))]
    np.testing.assert_allclose(s[:2], expect, rtol=1e-6)
    assert s[2] == 0 and rows.tolist() == [1, 0, -1]


def test_bm25f_weights_and_per_field_lengths():
    title = ["heron", "", "heron egret"]
    body = ["a bird", "heron heron heron wading", "birds"]
    s, _ = scores_of([title, body], "heron", weights=(3.0, 1.0))
    n, df, k1, b = 3, 3, 1.2, 0.75
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    avg_t, avg_b = 3 / 3, 7 / 3
    pseudo = [3 * 1 / (1 - b + b * 1 / avg_t), 1 * 3 / (1 - b + b * 4 / avg_b), 3 * 1 / (1 - b + b * 2 / avg_t)]
    np.testing.assert_allclose(s, [idf * p / (k1 + p) for p in pseudo], rtol=1e-5)
    s0, _ = scores_of([title, body], "heron", weights=(0.0, 1.0))
    assert s0[0] == 0 and s0[2] == 0 and s0[1] > 0


def test_deleted_rows_leave_the_statistics():
    alive = np.array([True, True, False, True, True, True, True])
    masked, rows = scores_of([CORPUS], "heron water", alive=alive)
    kept = [t for t, a in zip(CORPUS, alive) if a]
    direct, _ = scores_of([kept], "heron water")
    np.testing.assert_allclose(masked[alive], direct, rtol=1e-6)
    assert 2 not in rows.tolist()


def test_allowed_restricts_candidates_not_statistics():
    allowed = np.array([False, True, True, True, True, True, True])
    s, rows = scores_of([CORPUS], "heron", allowed=allowed)
    full, _ = scores_of([CORPUS], "heron")
    assert 0 not in rows.tolist()
    np.testing.assert_allclose(s[1:], full[1:])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abcd ", max_size=12), min_size=2, max_size=20),
       st.integers(1, 19), st.text(alphabet="abcd ", min_size=1, max_size=6))
def test_split_into_parts_gives_the_same_scores(texts, cut, query):
    cut = min(cut, len(texts) - 1)
    whole = build_postings([texts])
    a, b = build_postings([texts[:cut]]), build_postings([texts[cut:]])
    q = [tokenize(query)]
    [(s1, r1)] = bm25_search([(whole, None, None)], q, len(texts), [1.0])
    (sa, ra), (sb, rb) = bm25_search([(a, None, None), (b, None, None)], q, len(texts), [1.0])
    got = {int(r): float(s) for s, r in zip(sa[0], ra[0]) if r >= 0}
    got.update({int(r) + cut: float(s) for s, r in zip(sb[0], rb[0]) if r >= 0})
    want = {int(r): float(s) for s, r in zip(s1[0], r1[0]) if r >= 0}
    assert got.keys() == want.keys()
    for r in want:
        assert got[r] == pytest.approx(want[r], rel=1e-5)


def test_top_k_order_and_ties():
    corpus = ["x", "x", "y x", "x"]
    _, rows = scores_of([corpus], "x", k=3)
    assert rows.tolist() == [0, 1, 3]          # equal scores: lower row first; longer doc last


def test_cache_keeps_per_owner_and_drops_with_it():
    class Owner:
        pass

    cache, o, built = PostingsCache(), Owner(), []

    def build():
        built.append(1)
        return build_postings([["a b"]])

    p1 = cache.get(o, ("f",), build)
    assert cache.get(o, ("f",), build) is p1 and len(built) == 1
    cache.get(o, ("g",), build)
    assert len(built) == 2 and len(cache) == 2
    del o
    assert len(cache) == 0
