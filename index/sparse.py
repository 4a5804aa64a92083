"""BM25 over one or more text fields, one postings index per part, scored with global statistics.

Scoring is BM25F (Robertson & Zaragoza): each field's term frequency is length-normalised
against that field's own average length, weighted, and summed *before* the one saturation
``tf / (k1 + tf)``. A weighted sum of per-field BM25 scores would saturate every field
separately, so a term in both a short title and the body would count almost twice; BM25F
counts it once, more when the title weighs more, which is what a title (or lemma) field is for.
With one field of weight 1 the score is Lucene's BM25 (``idf * tf / (tf + k1 * norm)``,
``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``).

Statistics (N, document frequencies, average field lengths) are those of the rows *visible*
to the search, summed over every part, so a part's scores do not depend on how rows are split
into segments and deleted rows count nowhere. A filter restricts the candidates only, not the
statistics. A sealed segment's postings are built once from its text columns and kept while
the segment lives (its rows never change); the memtable's are built per view.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vecdb.index.text import ENGLISH_STOPWORDS, tokenize

K1 = 1.2
B = 0.75


@dataclass(frozen=True)
class Postings:
    """The postings of one part: term -> docs (CSR), per-field term counts and field lengths."""

    vocab: dict[str, int]
    indptr: np.ndarray          # (V + 1,) int64
    docs: np.ndarray            # (nnz,) int32, ascending within a term
    tf: np.ndarray              # (nnz, F) float32: the term's count in each field of the doc
    lengths: np.ndarray         # (F, n) float32: tokens per field per doc

    @property
    def n(self) -> int:
        return self.lengths.shape[1]

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.docs.nbytes + self.tf.nbytes + self.lengths.nbytes

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(docs, tf) of ``term``; empty when the part never saw it."""
        t = self.vocab.get(term)
        if t is None:
            return self.docs[:0], self.tf[:0]
        lo, hi = self.indptr[t], self.indptr[t + 1]
        return self.docs[lo:hi], self.tf[lo:hi]


def build_postings(columns: Sequence[Sequence[str | None]], stopwords: bool = False) -> Postings:
    """Postings of documents whose fields are ``columns`` (one equally long list per field)."""
    stop = ENGLISH_STOPWORDS if stopwords else None
    n_fields = len(columns)
    n = len(columns[0]) if columns else 0
    vocab: dict[str, int] = {}
    lengths = np.zeros((n_fields, n), np.float32)
    term_ids: list[int] = []
    doc_ids: list[int] = []
    field_ids: list[int] = []
    for f, column in enumerate(columns):
        for d, text in enumerate(column):
            tokens = tokenize(text, stop)
            if not tokens:
                continue
            lengths[f, d] = len(tokens)
            term_ids.extend([vocab.setdefault(t, len(vocab)) for t in tokens])
            doc_ids.extend([d] * len(tokens))
            field_ids.extend([f] * len(tokens))
    v = len(vocab)
    if not term_ids:
        return Postings(vocab, np.zeros(v + 1, np.int64), np.zeros(0, np.int32),
                        np.zeros((0, n_fields), np.float32), lengths)
    key = np.asarray(term_ids, np.int64) * max(n, 1) + np.asarray(doc_ids, np.int64)
    uniq, inverse = np.unique(key, return_inverse=True)      # sorted by term, then doc
    tf = np.zeros((len(uniq), n_fields), np.float32)
    np.add.at(tf, (inverse, np.asarray(field_ids, np.int64)), 1.0)
    terms = uniq // max(n, 1)
    indptr = np.searchsorted(terms, np.arange(v + 1), side="left").astype(np.int64)
    return Postings(vocab, indptr, (uniq % max(n, 1)).astype(np.int32), tf, lengths)


class PostingsCache:
    """Postings kept per live object (a sealed segment, a view's memtable part), dropped with it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[weakref.ref, Postings]] = {}

    def get(self, owner: object, key: tuple, build) -> Postings:
        """The postings of ``owner`` under ``key``, from ``build()`` the first time."""
        k = (id(owner), *key)
        with self._lock:
            hit = self._entries.get(k)
            if hit is not None and hit[0]() is owner:
                return hit[1]
        postings = build()               # outside the lock: building may take seconds
        with self._lock:
            ref = weakref.ref(owner, lambda _r, k=k: self._drop(k))
            self._entries[k] = (ref, postings)
        return postings

    def _drop(self, k: tuple) -> None:
        with self._lock:
            hit = self._entries.get(k)
            if hit is not None and hit[0]() is None:
                del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Stats:
    """Corpus statistics of the visible rows across all parts, for one query's terms."""

    n_docs: int
    avg_lengths: np.ndarray      # (F,) float64
    idf: dict[str, float]


def corpus_stats(parts: Sequence[tuple[Postings, np.ndarray | None]]) -> tuple[int, np.ndarray]:
    """(visible rows, average length per field) over ``parts`` ((postings, alive mask or None) each)."""
    n_docs = 0
    total = np.zeros(parts[0][0].lengths.shape[0] if parts else 0, np.float64)
    for postings, alive in parts:
        if alive is None:
            n_docs += postings.n
            total += postings.lengths.sum(axis=1, dtype=np.float64)
        else:
            n_docs += int(np.count_nonzero(alive))
            total += postings.lengths @ alive.astype(np.float32)
    return n_docs, total / max(n_docs, 1)


def term_stats(parts: Sequence[tuple[Postings, np.ndarray | None]], terms: set[str], n_docs: int,
               avg_lengths: np.ndarray) -> Stats:
    """The statistics of one query: idf of each of its ``terms`` from visible-row document counts."""
    df = dict.fromkeys(terms, 0)
    for postings, alive in parts:
        for t in terms:
            docs, _ = postings.postings(t)
            df[t] += len(docs) if alive is None else int(np.count_nonzero(alive[docs]))
    idf = {t: float(np.log1p((n_docs - d + 0.5) / (d + 0.5))) for t, d in df.items() if d}
    return Stats(n_docs, avg_lengths, idf)


def score_part(postings: Postings, query: Sequence[str], stats: Stats, weights: np.ndarray,
               allowed: np.ndarray | None, k: int, k1: float = K1, b: float = B
               ) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` (scores, rows) of one part for a tokenised query, best first, padded with
    (-inf, -1); only ``allowed`` rows (None: all), only rows matching some term."""
    scores = np.zeros(postings.n, np.float32)
    touched = []
    counts: dict[str, int] = {}
    for t in query:
        counts[t] = counts.get(t, 0) + 1
    avg = np.maximum(stats.avg_lengths, 1e-9).astype(np.float32)
    for t, qtf in counts.items():
        idf = stats.idf.get(t)
        if idf is None:
            continue
        docs, tf = postings.postings(t)
        if not len(docs):
            continue
        norm = (1.0 - b) + b * postings.lengths[:, docs].T / avg        # (nnz, F)
        pseudo = (tf / norm) @ weights                                   # BM25F pseudo-frequency
        scores[docs] += np.float32(idf * qtf) * pseudo / (k1 + pseudo)
        touched.append(docs)
    out_s = np.full(k, -np.inf, np.float32)
    out_r = np.full(k, -1, np.int64)
    if not touched:
        return out_s, out_r
    cand = np.unique(np.concatenate(touched)) if len(touched) > 1 else touched[0]
    if allowed is not None:
        cand = cand[allowed[cand]]
    cs = scores[cand]
    if len(cand) > k:
        cut = np.partition(cs, len(cs) - k)[len(cs) - k]
        keep = cs >= cut
        cand, cs = cand[keep], cs[keep]
    order = np.lexsort((cand, -cs))[:k]          # best first; ties to the lower row
    out_s[:len(order)] = cs[order]
    out_r[:len(order)] = cand[order]
    return out_s, out_r


def bm25_search(parts: Sequence[tuple[Postings, np.ndarray | None, np.ndarray | None]],
                queries: Sequence[Sequence[str]], k: int, weights: Sequence[float],
                k1: float = K1, b: float = B) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per part, (scores, rows) each (q, k), for tokenised ``queries``; ``parts`` holds
    (postings, alive, allowed) per part, statistics summed over all of them."""
    w = np.asarray(weights, np.float32)
    out = [(np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
           for _ in parts]
    visible = [(p, alive) for p, alive, _ in parts]
    n_docs, avg = corpus_stats(visible)
    for qi, query in enumerate(queries):
        stats = term_stats(visible, set(query), n_docs, avg)
        for pi, (p, _, allowed) in enumerate(parts):
            s, r = score_part(p, query, stats, w, allowed, k, k1, b)
            out[pi][0][qi], out[pi][1][qi] = s, r
    return out
