"""Prompts that cite: retrieved chunks numbered [1], [2]... packed into the model's token budget,
and the citations read back from the answer. Pure functions, no I/O."""
from __future__ import annotations

import re
from typing import Callable, Sequence

from vecdb.errors import InvalidArgument

SYSTEM = ("You answer questions using only the numbered context passages below. After each "
          "statement cite the passage(s) it comes from as [1], [2], ... using their numbers. "
          "If the context does not contain the answer, say you do not know.")

_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
OVERHEAD_TOKENS = 8          # per message: role markers and separators in chat templates


def format_passage(number: int, text: str, source: str | None) -> str:
    """One context passage as the prompt shows it."""
    head = f"[{number}]" + (f" (source: {source})" if source else "")
    return f"{head}\n{text.strip()}"


def build_messages(question: str, passages: Sequence[tuple[str, str | None]], *,
                   count_tokens: Callable[[str], int], context_window: int, answer_tokens: int,
                   history: Sequence[dict] = ()) -> tuple[list[dict], int]:
    """Chat messages for ``question`` citing as many ``passages`` (text, source), best first, as fit.

    The budget is ``context_window - answer_tokens``; the system prompt, the question and the
    latest turns of ``history`` come first (older turns are dropped when they do not fit), then
    whole passages in rank order until the next would overflow. Returns (messages, passages used).
    """
    if not isinstance(question, str) or not question.strip():
        raise InvalidArgument("question must be a non-empty string")
    budget = context_window - answer_tokens
    fixed = count_tokens(SYSTEM) + count_tokens(question) + 3 * OVERHEAD_TOKENS + 16
    if fixed > budget:
        raise InvalidArgument(f"the question takes ~{fixed} tokens; the model's window of {context_window} "
                              f"less {answer_tokens} for the answer leaves {budget}")
    kept: list[dict] = []
    for turn in reversed(list(history)):        # newest turns first
        cost = count_tokens(turn["content"]) + OVERHEAD_TOKENS
        if fixed + cost > budget:
            break
        kept.insert(0, turn)
        fixed += cost
    blocks: list[str] = []
    used = fixed
    for text, source in passages:
        block = format_passage(len(blocks) + 1, text, source)
        cost = count_tokens(block) + 2
        if used + cost > budget:
            break
        blocks.append(block)
        used += cost
    context = "\n\n".join(blocks) if blocks else "(no passages were found)"
    system = f"{SYSTEM}\n\nContext:\n{context}"
    messages = [{"role": "system", "content": system}, *kept, {"role": "user", "content": question}]
    return messages, len(blocks)


def cited_numbers(text: str) -> list[int]:
    """Passage numbers cited in ``text`` as [n] or [n, m], in order of first citation."""
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        for part in match.group(1).split(","):
            seen.setdefault(int(part), None)
    return list(seen)
