"""RAG answers end to end: a real collection (text search), the fake LLM test server over HTTP,
citations that resolve to retrieved chunks; prompt packing by tokens; multi-turn chat."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import vecdb
from vecdb.errors import InvalidArgument
from vecdb.rag.answer import Answer, answer, answer_stream, chat
from vecdb.rag.llm import OpenAICompatible, estimate_tokens
from vecdb.rag.prompt import SYSTEM, build_messages, cited_numbers, format_passage
from tests.rag import corpus
from tests.rag.fake_llm_server import FakeLLMProcess


@pytest.fixture(scope="module")
def llm_server():
    with FakeLLMProcess() as s:
        yield s


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    db = vecdb.connect(tmp_path_factory.mktemp("rag") / "db")
    if not corpus.supports_text_collections(db):
        pytest.skip("collections with an embedding model are not merged yet")
    col = corpus.fill(db)
    yield col
    db.close()


def llm(server, model="m", **kw):
    return OpenAICompatible(server.base_url, model, api_key="", **kw)


def test_answer_cites_a_retrieved_chunk_that_resolves(docs, llm_server):
    a = answer("Where do herons nest?", docs, llm=llm(llm_server), k=3, mode="dense")
    assert isinstance(a, Answer)
    assert a.text.endswith("[1].")
    assert len(a.context) == 3 and [c.number for c in a.context] == [1, 2, 3]
    assert [c.number for c in a.citations] == [1]
    top = a.context[0]
    cite = a.citations[0]
    assert (cite.id, cite.source, cite.start, cite.end, cite.score) == (top.id, top.source, top.start, top.end,
                                                                        top.score)
    assert cite.source == "birds/heron.md"
    assert corpus.DOCS[cite.source][cite.start:cite.end] == top.text      # offsets point at the chunk
    assert top.text.startswith(a.text.removesuffix(" [1]."))               # the answer came from [1]
    assert {"retrieve_ms", "prompt_ms", "generate_ms", "total_ms"} <= set(a.timings)
    assert a.unresolved == []


def test_every_mode_and_filter(docs, llm_server):
    for mode in ("dense", "sparse", "hybrid"):
        a = answer("heron nests heronries", docs, llm=llm(llm_server), k=2, mode=mode)
        assert a.citations[0].source == "birds/heron.md", mode
    a = answer("heron", docs, llm=llm(llm_server), k=2, mode="dense", filter="source = 'space/mars.md'")
    assert {c.source for c in a.context} == {"space/mars.md"}


def test_default_mode_is_hybrid_for_a_collection_with_text_fields(docs, llm_server):
    q = "grey heron colonies"
    a = answer(q, docs, llm=llm(llm_server), k=3)
    assert [c.id for c in a.context] == [h.id for h in docs.search(q, 3, mode="hybrid")]
    assert [c.score for c in a.context] == [h.score for h in docs.search(q, 3, mode="hybrid")]


def test_a_made_up_citation_is_not_resolved(docs, llm_server):
    a = answer("What colour is Mars?", docs, llm=llm(llm_server, "cite-9"), k=2, mode="dense")
    assert [c.number for c in a.citations] == [1]
    assert a.unresolved == [9]


def test_stream_yields_pieces_then_the_answer(docs, llm_server):
    items = list(answer_stream("How does a kettle boil water?", docs, llm=llm(llm_server), k=2, mode="dense"))
    final = items[-1]
    assert isinstance(final, Answer) and all(isinstance(p, str) for p in items[:-1])
    assert "".join(items[:-1]) == final.text
    assert final.citations[0].source == "home/kettle.md"
    assert final.timings["first_token_ms"] <= final.timings["total_ms"]


def test_multi_turn_chat_sends_the_history(docs, llm_server):
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "Tell me about owls."},
                {"role": "assistant", "content": "Owls hunt at night [1]."},
                {"role": "user", "content": "How far can an owl turn its head?"}]
    a = chat(messages, docs, llm=llm(llm_server), k=2, mode="dense")
    assert a.citations[0].source == "birds/owl.md"
    sent = llm_server.stats()["last"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"].startswith(SYSTEM) and "be brief" not in sent[0]["content"]
    assert sent[1:] == messages[1:]
    with pytest.raises(InvalidArgument, match="last message"):
        chat(messages[:3], docs, llm=llm(llm_server))


def test_bad_mode_is_refused(docs, llm_server):
    with pytest.raises(InvalidArgument, match="mode"):
        answer("x", docs, llm=llm(llm_server), mode="fuzzy")


# ---- prompt packing (pure) ----------------------------------------------------------------

def test_passages_are_numbered_and_cited_numbers_parsed():
    assert format_passage(2, " text ", "a.md") == "[2] (source: a.md)\ntext"
    assert cited_numbers("A [2]. B [1, 3]. C [2] and [x] [10]") == [2, 1, 3, 10]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh .", min_size=1, max_size=200), max_size=12),
       st.integers(300, 1500), st.lists(st.text(alphabet="xyz ", min_size=1, max_size=80), max_size=6))
def test_prompt_fits_the_budget_and_keeps_passages_in_rank_order(texts, window, turns):
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    passages = [(t, f"s{i}") for i, t in enumerate(texts)]
    messages, used = build_messages("what?", passages, count_tokens=estimate_tokens, context_window=window,
                                    answer_tokens=100, history=history)
    total = sum(estimate_tokens(m["content"]) + 8 for m in messages)
    assert total <= window - 100
    system = messages[0]["content"]
    for i in range(used):                               # the first `used` passages, whole, in order
        assert format_passage(i + 1, texts[i], f"s{i}") in system
    assert f"[{used + 1}] (source:" not in system
    if used < len(texts):                               # a bigger window takes more passages
        more, used2 = build_messages("what?", passages, count_tokens=estimate_tokens, context_window=window * 4,
                                     answer_tokens=100, history=history)
        assert used2 > used
    kept = messages[1:-1]
    assert kept == history[len(history) - len(kept):]   # the newest turns are kept
    assert messages[-1] == {"role": "user", "content": "what?"}


def test_question_too_long_for_the_window():
    with pytest.raises(InvalidArgument, match="window"):
        build_messages("word " * 500, [], count_tokens=estimate_tokens, context_window=256, answer_tokens=64)
