"""Token-aware chunking (pure): windows of tokens mapped back to character spans of the text.

Chunks are windows of ``size`` tokens stepping ``size - overlap`` tokens, so consecutive
chunks share exactly ``overlap`` tokens. A chunk's span runs from its first token's start (0
for the first chunk) to the start of the first token after the window (the text's end for the
last chunk), so the spans cover the whole text and each
keeps the whitespace that follows it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

from vecdb.errors import InvalidArgument

Offsets = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class Chunk:
    """One chunk: its number within the document, character span and token span."""
    number: int
    start: int
    end: int
    first_token: int
    last_token: int       # exclusive


def check_sizes(size: int, overlap: int) -> None:
    """Raise InvalidArgument unless 1 <= size and 0 <= overlap < size."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgument(f"chunk size must be a positive number of tokens, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
        raise InvalidArgument(f"overlap must be an integer in [0, {size}), got {overlap!r}")


def chunk_spans(offsets: Offsets, text_length: int, size: int, overlap: int) -> list[Chunk]:
    """Chunks of a text whose tokens have character ``offsets`` (start, end), in order.

    A text without tokens (empty or blank) has no chunks.
    """
    check_sizes(size, overlap)
    n = len(offsets)
    if n == 0:
        return []
    step = size - overlap
    chunks = []
    first = 0
    while True:
        last = min(first + size, n)
        start = 0 if first == 0 else offsets[first][0]
        end = text_length if last == n else offsets[last][0]
        chunks.append(Chunk(len(chunks), start, end, first, last))
        if last == n:
            return chunks
        first += step


def tokenizer_offsets(tokenizer) -> Callable[[str], list[tuple[int, int]]]:
    """A function text -> token character offsets, from a fast (Rust) Hugging Face tokenizer.

    Tokens that share characters (the tokenizer split one character) are merged into one unit,
    so spans never overlap. Works on a private copy of the Rust tokenizer: the model's own one changes its truncation
    and padding settings on every encode call, so sharing it across threads races.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InvalidArgument("token-aware chunking needs a fast tokenizer (offset mapping)")
    backend = copy.deepcopy(backend)
    backend.no_truncation()
    backend.no_padding()

    def offsets(text: str) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for s, e in backend.encode(text, add_special_tokens=False).offsets:
            if e <= s:
                continue
            if out and s < out[-1][1]:   # several tokens from one character (e.g. Hangul): one unit
                out[-1] = (out[-1][0], max(out[-1][1], e))
            else:
                out.append((s, e))
        return out
    return offsets


def chunk_text(text: str, offsets: Callable[[str], Offsets], size: int, overlap: int) -> list[Chunk]:
    """Chunks of ``text`` using the tokenizer behind ``offsets``."""
    return chunk_spans(offsets(text), len(text), size, overlap)
