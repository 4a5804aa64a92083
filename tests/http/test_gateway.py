"""Gateway routes over a real uvicorn on 127.0.0.1 beside gRPC: the JSON operations, the error
table, API keys, the RAG chat (SSE) and the OpenAI-compatible chat driven by the ``openai`` package."""
from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from tests.http.gateway import RO, RW, client, gateway
from tests.rag import corpus
from tests.rag.fake_llm_server import FakeLLMProcess
from vecdb.errors import ResourceExhausted
from vecdb_client import Client


@pytest.fixture(scope="module")
def llm_server():
    with FakeLLMProcess() as s:
        yield s


@pytest.fixture(scope="module")
def served(tmp_path_factory, llm_server):
    with gateway(tmp_path_factory.mktemp("gw") / "db", llm_server.base_url) as (server, base):
        yield server, base


@pytest.fixture(scope="module")
def docs(served):
    server, _ = served
    if not corpus.supports_text_collections(server.database):
        pytest.skip("collections with an embedding model are not merged yet")
    corpus.fill(server.database, "docs")
    return "docs"


def test_openapi_schema_lists_the_routes(served):
    _, base = served
    spec = client(base, None).get("/openapi.json").json()
    for path in ("/v1/collections", "/v1/collections/{name}/search", "/v1/rag/chat", "/v1/chat/completions"):
        assert path in spec["paths"], path


def test_collection_lifecycle_and_data(served):
    server, base = served
    c = client(base)
    r = c.post("/v1/collections", json={"name": "vec", "dim": 3, "metric": "l2",
                                        "schema": {"colour": "string", "n": "int64"}})
    assert r.status_code == 201 and r.json()["dim"] == 3
    assert "vec" in c.get("/v1/collections").json()["collections"]
    rows = {"ids": [1, 2, 3], "vectors": [[0, 0, 0], [1, 0, 0], [5, 5, 5]],
            "payloads": [{"colour": "red", "n": 9007199254740993}, {"colour": "blue"}, None]}
    assert c.post("/v1/collections/vec/upsert", json=rows).json() == {"upserted": 3}
    assert c.get("/v1/collections/vec/count").json() == {"count": 3}
    assert c.get("/v1/collections/vec/count", params={"filter": "colour = 'red'"}).json() == {"count": 1}
    got = c.post("/v1/collections/vec/get", json={"ids": [2, 1, 77]}).json()["records"]
    assert [g["id"] for g in got] == [2, 1]
    assert got[1]["payload"] == {"colour": "red", "n": 9007199254740993}     # int64 stays exact
    hits = c.post("/v1/collections/vec/search", json={"vector": [0.9, 0, 0], "k": 2}).json()["hits"]
    assert [h["id"] for h in hits] == [2, 1] and hits[0]["payload"] == {"colour": "blue"}
    assert hits[0]["score"] == pytest.approx(0.01, abs=1e-6)
    batch = c.post("/v1/collections/vec/search", json={"vectors": [[0, 0, 0], [5, 5, 4]], "k": 1,
                                                       "filter": "colour != 'red' or colour is null"}).json()
    assert [[h["id"] for h in row] for row in batch["results"]] == [[2], [3]]
    d = c.get("/v1/collections/vec").json()
    assert d["count"] == 3 and d["metric"] == "l2" and d["schema"]["n"] == "int64"
    # the gateway and gRPC serve the same engine
    with Client(server.address, api_key=RW) as g:
        assert g.get_collection("vec").count() == 3
        g.get_collection("vec").upsert([4], np.array([[1, 1, 1]], np.float32))
    assert c.get("/v1/collections/vec/count").json() == {"count": 4}
    assert c.post("/v1/collections/vec/delete", json={"ids": [4, 3]}).json() == {"deleted": 2}
    assert c.post("/v1/collections/vec/delete", json={"filter": "colour = 'blue'"}).json() == {"deleted": 1}
    assert c.get("/v1/collections/vec/count").json() == {"count": 1}
    assert c.delete("/v1/collections/vec").json() == {"dropped": "vec"}
    assert c.get("/v1/collections/vec").status_code == 404


@pytest.mark.parametrize("method,path,body,status,error", [
    ("post", "/v1/collections", {"name": "dup", "dim": 2}, 409, "AlreadyExists"),
    ("get", "/v1/collections/nope", None, 404, "CollectionNotFound"),
    ("post", "/v1/collections/dup/upsert", {"ids": [1], "vectors": [[1, 2, 3]]}, 400, "DimensionMismatch"),
    ("post", "/v1/collections/dup/search", {"vector": [1, 2], "k": 0}, 400, "InvalidArgument"),
    ("post", "/v1/collections/dup/search", {"k": 3}, 400, "InvalidArgument"),
    ("get", "/v1/collections/dup/count?filter=colour%20%3D", None, 400, "FilterError"),
    ("post", "/v1/collections", {"dim": 2}, 400, "InvalidArgument"),            # no name: validation
])
def test_errors_come_from_the_one_table(served, method, path, body, status, error):
    _, base = served
    c = client(base)
    if c.get("/v1/collections/dup").status_code == 404:
        c.post("/v1/collections", json={"name": "dup", "dim": 2})
    r = getattr(c, method)(path, **({"json": body} if body is not None else {}))
    assert r.status_code == status, r.text
    assert r.json()["error"]["type"] == error and r.json()["error"]["message"]


def test_api_keys_as_for_grpc(served):
    _, base = served
    assert client(base, None).get("/v1/collections").status_code == 401
    assert client(base, "wrong").get("/v1/collections").json()["error"]["type"] == "Unauthenticated"
    assert client(base, RO).get("/v1/collections").status_code == 200
    r = client(base, RO).post("/v1/collections", json={"name": "ro", "dim": 2})
    assert r.status_code == 403 and r.json()["error"]["type"] == "PermissionDenied"
    with client(base, None) as c:
        assert c.get("/v1/collections", headers={"x-api-key": RO}).status_code == 200
    assert client(base, None).get("/").status_code == 200          # the page itself holds no data


def test_text_search(served, docs):
    _, base = served
    for mode in ("dense", "sparse", "hybrid"):
        r = client(base).post(f"/v1/collections/{docs}/search", json={"text": "where do herons nest", "k": 3,
                                                                       "mode": mode})
        assert r.status_code == 200, r.text
        assert r.json()["hits"][0]["payload"]["source"] == "birds/heron.md", mode


def test_text_collection_over_http(served):
    _, base = served
    c = client(base)
    r = c.post("/v1/collections", json={"name": "notes", "embedding": "all-MiniLM-L6-v2",
                                        "text_fields": {"title": 2.0, "text": 1.0}, "schema": {"title": "string"}})
    assert r.status_code == 201 and r.json()["dim"] == 384, r.text
    texts = ["Owls hunt at night.", "Kettles boil water.", "Mars has two moons."]
    r = c.post("/v1/collections/notes/upsert", json={"texts": texts, "ids": [1, 2, 3],
                                                     "payloads": [{"title": "owl"}, {"title": "kettle"}, None]})
    assert r.json() == {"upserted": 3, "ids": [1, 2, 3]}
    hits = c.post("/v1/collections/notes/search", json={"text": "kettle", "k": 1, "mode": "sparse"}).json()["hits"]
    assert hits[0]["id"] == 2 and hits[0]["payload"]["text"] == "Kettles boil water."
    batch = c.post("/v1/collections/notes/search", json={"texts": ["night birds", "red planet"], "k": 1}).json()
    assert [row[0]["id"] for row in batch["results"]] == [1, 3]
    r = c.post("/v1/collections/notes/upsert", json={"texts": ["x"], "vectors": [[0.0] * 384]})
    assert r.status_code == 400


def events(response) -> list[tuple[str, dict]]:
    out, event = [], None
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            out.append((event, json.loads(line[5:])))
    return out


def test_rag_chat_streams_tokens_then_a_cited_answer(served, docs):
    _, base = served
    with client(base, RO).stream("POST", "/v1/rag/chat", json={"collection": docs, "k": 3,
                                                               "question": "What is Mars's red colour from?"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        got = events(r)
    kinds = [e for e, _ in got]
    assert kinds[-1] == "answer" and set(kinds[:-1]) == {"token"} and len(kinds) > 2
    final = got[-1][1]
    assert "".join(d["text"] for _, d in got[:-1]) == final["text"]
    assert final["citations"][0]["source"] == "space/mars.md"
    assert final["citations"][0]["id"] in [c["id"] for c in final["context"]]
    plain = client(base).post("/v1/rag/chat", json={"collection": docs, "stream": False, "mode": "dense",
                                                    "messages": [{"role": "user", "content": "owl head turn"}]})
    assert plain.json()["citations"][0]["source"] == "birds/owl.md"


def test_rag_chat_errors(served, docs, tmp_path):
    _, base = served
    r = client(base).post("/v1/rag/chat", json={"collection": "nope", "question": "x"})
    assert r.status_code == 404
    r = client(base).post("/v1/rag/chat", json={"collection": docs, "question": "x", "mode": "fuzzy"})
    assert r.status_code == 400
    with gateway(tmp_path / "db2") as (_, base2):             # no LLM configured
        r = client(base2).post("/v1/rag/chat", json={"collection": docs, "question": "x"})
        assert r.status_code == 503 and "--llm-base-url" in r.json()["error"]["message"]
    with socket.socket() as s:                                  # an LLM that is down: 503, not a 200 stream
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with gateway(tmp_path / "db3", dead) as (server3, base3):
        corpus.fill(server3.database, "docs")
        r = client(base3).post("/v1/rag/chat", json={"collection": "docs", "question": "x"})
        assert r.status_code == 503 and r.json()["error"]["type"] == "Unavailable"
        assert "cannot reach" in r.json()["error"]["message"]


def test_openai_package_drives_chat_completions(served, docs):
    openai = pytest.importorskip("openai")
    _, base = served
    oa = openai.OpenAI(base_url=f"{base}/v1", api_key=RO, max_retries=0)
    done = oa.chat.completions.create(model=docs, messages=[{"role": "user", "content": "How do I descale a kettle?"}])
    assert done.choices[0].message.content.endswith("[1].")
    assert "vinegar" in done.choices[0].message.content
    assert done.model_extra["citations"][0]["source"] == "home/kettle.md"
    pieces = [c.choices[0].delta.content or "" for c in oa.chat.completions.create(
        model=docs, stream=True, messages=[{"role": "user", "content": "How do I descale a kettle?"}])]
    assert "".join(pieces) == done.choices[0].message.content
    filtered = oa.chat.completions.create(model=docs, messages=[{"role": "user", "content": "kettle"}],
                                          extra_body={"k": 1, "mode": "dense", "filter": "source = 'birds/owl.md'"})
    assert [c["source"] for c in filtered.model_extra["citations"]] == ["birds/owl.md"]
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="no-such-collection", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model=docs, messages=[{"role": "user", "content": "x"}])


def test_vecdb_serve_runs_the_gateway_beside_grpc_and_drains_on_sigterm(tmp_path):
    from tests.server.harness import SubprocessServer

    with SubprocessServer(tmp_path / "db", "--http-port", "0", env={"VECDB_API_KEYS": RW}) as s:
        line = s.proc.stdout.readline()
        assert line.startswith("http on 127.0.0.1:"), line
        base = "http://" + line.split()[-1]
        c = client(base)
        assert c.post("/v1/collections", json={"name": "t", "dim": 2}).status_code == 201
        assert c.post("/v1/collections/t/upsert", json={"ids": ["a"], "vectors": [[1, 0]]}).json() == {"upserted": 1}
        with Client(s.address, api_key=RW) as g:
            assert g.get_collection("t").count() == 1
        assert s.terminate() == 0
    with gateway(tmp_path / "db") as (_, base):            # what was acknowledged is there after restart
        assert client(base).get("/v1/collections/t/count").json() == {"count": 1}


def test_concurrency_limit_is_shared_and_answers_429(tmp_path, llm_server):
    import threading

    with gateway(tmp_path / "db", llm_server.base_url, llm_model="slow", max_concurrency=1) as (server, base):
        corpus.fill(server.database, "docs")
        slow = threading.Thread(target=lambda: client(base).post(
            "/v1/rag/chat", json={"collection": "docs", "question": "owls", "stream": False}))
        slow.start()
        deadline = time.monotonic() + 10
        while server.server.gate.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = client(base).get("/v1/collections")
        assert r.status_code == 429 and r.json()["error"]["type"] == "ResourceExhausted"
        with Client(server.address, api_key=RW) as g:               # gRPC counts the same calls
            with pytest.raises(ResourceExhausted):
                g.list_collections()
        slow.join(30)
        assert client(base).get("/v1/collections").status_code == 200


def test_gateway_settings_are_checked(tmp_path):
    from vecdb.errors import InvalidArgument
    from vecdb.server import config

    env = {"VECDB_DATA": str(tmp_path), "VECDB_HTTP_PORT": "8080", "VECDB_LLM_BASE_URL": "http://127.0.0.1:1/v1",
           "VECDB_LLM_MODEL": "gemma"}
    c = config.load(None, env)
    assert (c.http_port, c.llm_base_url, c.llm_model) == (8080, "http://127.0.0.1:1/v1", "gemma")
    with pytest.raises(InvalidArgument, match="--llm-model"):
        config.load(None, {**env, "VECDB_LLM_MODEL": ""})
    with pytest.raises(InvalidArgument, match="http_port"):
        config.load(None, {**env, "VECDB_HTTP_PORT": "70000"})
