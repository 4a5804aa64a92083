"""Retrieval-augmented answers: retrieve chunks, prompt an LLM to cite them, resolve the citations.

``answer`` returns the text with ``citations`` that resolve to retrieved chunks (a number the
model made up is dropped and listed in ``unresolved``), the ``context`` it was given and
``timings``; ``answer_stream`` yields the text's pieces as they come, then the ``Answer``;
``chat`` answers the last user turn of a message list with the earlier turns as history.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

from vecdb.rag.llm import LLM, check_messages
from vecdb.rag.prompt import build_messages, cited_numbers
from vecdb.errors import InvalidArgument

MODES = ("dense", "sparse", "hybrid")


@dataclass(frozen=True)
class Chunk:
    """A retrieved chunk as the prompt numbered it."""
    number: int
    id: Any
    text: str
    source: str | None
    start: int | None
    end: int | None
    score: float
    payload: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Citation:
    """A passage number the answer cites, resolved to its chunk."""
    number: int
    id: Any
    source: str | None
    start: int | None
    end: int | None
    score: float


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    context: list[Chunk]
    timings: dict[str, float]
    unresolved: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form (payloads left out of the context)."""
        d = asdict(self)
        for c in d["context"]:
            c.pop("payload", None)
        return d


def retrieve(question: str, collection, *, k: int = 5, filter: str | None = None, mode: str | None = None,
             text_field: str | None = None) -> list[Chunk]:
    """The top-``k`` chunks for ``question`` (text search in ``mode``; None: hybrid where the
    collection has text fields, else dense), numbered from 1. A chunk's text is its
    ``text_field``, or all of the collection's text fields joined."""
    fields = [text_field] if text_field else list(getattr(collection, "text_fields", None) or ()) or ["text"]
    if mode is None:
        mode = "hybrid" if getattr(collection, "text_fields", None) else "dense"
    if mode not in MODES:
        raise InvalidArgument(f"mode must be one of {MODES}, got {mode!r}")
    hits = collection.search(question, k, filter=filter, mode=mode)
    if hits and isinstance(hits[0], list):          # a batch of one
        hits = hits[0]
    chunks = []
    for hit in hits:
        payload = dict(hit.payload or {})
        text = "\n".join(str(payload[f]) for f in fields if payload.get(f) is not None)
        chunks.append(Chunk(len(chunks) + 1, hit.id, text, payload.get("source"),
                            payload.get("start"), payload.get("end"), float(hit.score), payload))
    return chunks


def _split_chat(messages: Sequence[dict]) -> tuple[str, list[dict]]:
    msgs = check_messages(messages)
    if msgs[-1]["role"] != "user":
        raise InvalidArgument("the last message must be the user's question (role 'user')")
    history = [m for m in msgs[:-1] if m["role"] != "system"]
    return msgs[-1]["content"], history


class _Run:
    """One answer in the making: retrieval and prompt done, generation pending."""

    def __init__(self, question, collection, llm: LLM, k, filter, mode, messages, text_field, max_tokens):
        t0 = time.perf_counter()
        self.t0 = t0
        history = [m for m in check_messages(messages) if m["role"] != "system"] if messages else []
        self.chunks = retrieve(question, collection, k=k, filter=filter, mode=mode, text_field=text_field)
        t1 = time.perf_counter()
        self.messages, used = build_messages(
            question, [(c.text, c.source) for c in self.chunks], count_tokens=llm.count_tokens,
            context_window=llm.context_window, answer_tokens=max_tokens, history=history)
        self.chunks = self.chunks[:used]
        self.timings = {"retrieve_ms": (t1 - t0) * 1e3, "prompt_ms": (time.perf_counter() - t1) * 1e3}
        self.t_gen = time.perf_counter()

    def finish(self, text: str) -> Answer:
        by_number = {c.number: c for c in self.chunks}
        cited = cited_numbers(text)
        citations = [Citation(n, by_number[n].id, by_number[n].source, by_number[n].start, by_number[n].end,
                              by_number[n].score) for n in cited if n in by_number]
        now = time.perf_counter()
        self.timings["generate_ms"] = (now - self.t_gen) * 1e3
        self.timings["total_ms"] = (now - self.t0) * 1e3
        return Answer(text, citations, self.chunks, self.timings, [n for n in cited if n not in by_number])


def answer(question: str, collection, *, llm: LLM, k: int = 5, filter: str | None = None,
           mode: str | None = None, messages: Sequence[dict] | None = None, text_field: str | None = None,
           max_tokens: int = 512, temperature: float = 0.0) -> Answer:
    """Answer ``question`` from ``collection``'s top-``k`` chunks, citing them; ``messages`` are
    earlier chat turns (multi-turn)."""
    run = _Run(question, collection, llm, k, filter, mode, messages, text_field, max_tokens)
    text = llm.chat(run.messages, max_tokens=max_tokens, temperature=temperature)
    return run.finish(text)


def answer_stream(question: str, collection, *, llm: LLM, k: int = 5, filter: str | None = None,
                  mode: str | None = None, messages: Sequence[dict] | None = None, text_field: str | None = None,
                  max_tokens: int = 512, temperature: float = 0.0) -> Iterator[str | Answer]:
    """Like ``answer``, streaming: yields the text's pieces, then the final ``Answer``."""
    run = _Run(question, collection, llm, k, filter, mode, messages, text_field, max_tokens)
    return _stream(run, llm, max_tokens, temperature)


def _stream(run: _Run, llm: LLM, max_tokens: int, temperature: float) -> Iterator[str | Answer]:
    pieces = []
    for piece in llm.chat(run.messages, stream=True, max_tokens=max_tokens, temperature=temperature):
        if not pieces:
            run.timings["first_token_ms"] = (time.perf_counter() - run.t0) * 1e3
        pieces.append(piece)
        yield piece
    yield run.finish("".join(pieces))


def chat(messages: Sequence[dict], collection, *, llm: LLM, stream: bool = False, **kwargs):
    """Answer the last user message of a chat, the earlier turns as history (``answer`` or
    ``answer_stream`` keyword arguments apply)."""
    question, history = _split_chat(messages)
    fn = answer_stream if stream else answer
    return fn(question, collection, llm=llm, messages=history, **kwargs)
