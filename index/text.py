"""The text tokenizer BM25 indexes and queries with: lowercase, unicode word split, optional
built-in English stopwords. Pure and deterministic, so index and query always agree."""
from __future__ import annotations

import re

# letters and digits of any script; underscores split words (WordNet writes "blue_heron")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# a short classic list (articles, pronouns, auxiliaries, prepositions); built in, no downloads
ENGLISH_STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())


def tokenize(text: str | None, stopwords: frozenset[str] | None = None) -> list[str]:
    """Lowercased word tokens of ``text`` (None -> none), minus ``stopwords`` when given."""
    if not text:
        return []
    tokens = _WORD.findall(text.lower())
    if stopwords:
        return [t for t in tokens if t not in stopwords]
    return tokens
