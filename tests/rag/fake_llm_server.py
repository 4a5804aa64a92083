"""A small OpenAI-compatible TEST server (not a model): deterministic answers that cite [1].

Run as a process: ``python tests/rag/fake_llm_server.py [--key KEY]``; prints ``listening on
127.0.0.1:PORT``. ``POST /v1/chat/completions`` answers with the first sentence of context
passage [1] followed by " [1]" (or "I do not know." without context), streamed word by word
as server-sent events when ``stream`` is true. The ``model`` field picks a behaviour, so tests
can provoke every failure over a real socket:

- ``fail-500``: always HTTP 500; ``flaky-N``: HTTP 503 for the first N requests of that model;
- ``bad-request``: HTTP 400; ``slow``: waits 3 s before answering; ``stall``: streams one piece,
  then waits 3 s; ``cite-9``: cites a passage [9] as well (a number no prompt here has).

``GET /stats`` returns the request count per model and the last request body.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_lock = threading.Lock()
_counts: dict[str, int] = {}
_last: dict = {}
_PASSAGE_1 = re.compile(r"^\[1\][^\n]*\n(.+?)(?:\n\n\[\d+\]|\Z)", re.S | re.M)


def reply_for(messages: list[dict], model: str) -> str:
    """The deterministic answer: passage [1]'s first sentence, cited."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    match = _PASSAGE_1.search(system)
    if not match:
        return "I do not know."
    first = re.split(r"(?<=[.!?])\s", match.group(1).strip(), maxsplit=1)[0].rstrip(".")
    text = f"{first} [1]."
    if model == "cite-9":
        text += " See also [9]."
    return text


class Handler(BaseHTTPRequestHandler):
    key: str | None = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):          # quiet
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            with _lock:
                self._json(200, {"requests": dict(_counts), "last": _last})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        if self.key and self.headers.get("authorization") != f"Bearer {self.key}":
            return self._json(401, {"error": {"message": "invalid api key"}})
        model = body.get("model", "")
        with _lock:
            _counts[model] = n = _counts.get(model, 0) + 1
            _last.clear()
            _last.update(body)
        if model == "fail-500":
            return self._json(500, {"error": {"message": "the model crashed"}})
        if model.startswith("flaky-") and n <= int(model.split("-")[1]):
            return self._json(503, {"error": {"message": "overloaded, try again"}})
        if model == "bad-request":
            return self._json(400, {"error": {"message": "max_tokens is too large"}})
        if model == "slow":
            time.sleep(3)
        text = reply_for(body.get("messages", []), model)
        if not body.get("stream"):
            return self._json(200, {"id": "cmpl-test", "object": "chat.completion", "created": 0, "model": model,
                                    "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": text}}],
                                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        pieces = re.findall(r"\S+\s*", text)
        for i, piece in enumerate(pieces):
            event = {"id": "cmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            if model == "stall" and i == 0:
                time.sleep(3)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--key")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    Handler.key = args.key
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())


class FakeLLMProcess:
    """The test server as a child process: ``with FakeLLMProcess() as f: f.base_url``."""

    def __init__(self, key: str | None = None):
        import subprocess
        args = [sys.executable, __file__] + (["--key", key] if key else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"fake LLM server did not start: {line!r}")
        self.address = line.split()[-1]
        self.base_url = f"http://{self.address}/v1"

    def stats(self) -> dict:
        import urllib.request
        with urllib.request.urlopen(f"http://{self.address}/stats", timeout=5) as r:
            return json.loads(r.read())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()

    def __enter__(self) -> "FakeLLMProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
