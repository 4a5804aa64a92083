"""The HTTP gateway: the engine's operations as JSON, the RAG chat (server-sent events and an
OpenAI-compatible ``/v1/chat/completions``) and a search/chat page at ``/``.

It runs beside gRPC in ``vecdb serve`` (``--http-port``) over the same ``Gate``: the same
database, thread pool, API keys (``authorization: Bearer <key>`` or ``x-api-key``), concurrency
limit and error table (each error class's ``http_status``; the body is
``{"error": {"type", "code", "message"}}``).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Iterator, Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from vecdb.errors import InvalidArgument, ResourceExhausted, Unavailable, VecdbError
from vecdb.rag import answer as rag
from vecdb.rag.llm import LLM, estimate_tokens

Mode = Literal["dense", "sparse", "hybrid"]


class CreateCollection(BaseModel):
    name: str
    dim: int | None = None
    metric: str = "cosine"
    schema_: dict[str, str] | None = Field(None, alias="schema")
    id_type: str | None = None
    index: dict[str, Any] | None = None
    embedding: str | None = Field(None, description="embedding model (name or local path) for text search")
    text_field: str | None = None
    text_fields: dict[str, float] | list[str] | None = Field(None, description="BM25 fields (and weights)")


class Upsert(BaseModel):
    ids: list[int | str] | None = None
    vectors: list[list[float]] | None = None
    payloads: list[dict[str, Any] | None] | None = None
    texts: list[str] | None = Field(None, description="embedded by the collection's model instead of vectors")


class Ids(BaseModel):
    ids: list[int | str]


class Delete(BaseModel):
    ids: list[int | str] | None = None
    filter: str | None = None


class Search(BaseModel):
    vector: list[float] | None = None
    vectors: list[list[float]] | None = None
    text: str | None = None
    texts: list[str] | None = None
    k: int = 10
    filter: str | None = None
    mode: Mode | None = Field(None, description="text search: dense, sparse or hybrid")
    output_fields: list[str] | None = None
    params: dict[str, Any] | None = None


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class RagChat(BaseModel):
    collection: str
    messages: list[Message] | None = None
    question: str | None = None
    k: int = 5
    filter: str | None = None
    mode: Mode | None = Field(None, description="default: hybrid where the collection has text fields, else dense")
    stream: bool = True
    max_tokens: int = 512
    temperature: float = 0.0


class ChatCompletion(BaseModel):
    model: str = Field(description="the collection to answer from")
    messages: list[Message]
    stream: bool = False
    max_tokens: int | None = 512
    temperature: float | None = 0.0
    k: int = Field(5, description="vecdb extension: chunks to retrieve")
    mode: Mode | None = Field(None, description="vecdb extension: retrieval mode (default: hybrid where the "
                                                "collection has text fields, else dense)")
    filter: str | None = Field(None, description="vecdb extension: payload filter on the chunks")


def create_app(gate, llm: LLM | None = None, *, max_k: int = 16_384, max_batch_rows: int = 1_000_000) -> FastAPI:
    """The gateway over ``gate`` (a ``vecdb.server.gate.Gate``: database, pool, auth, limits)."""
    app = FastAPI(title="vecdb", version="1", description=__doc__.split("\n\n")[0])

    @asynccontextmanager
    async def admitted(request: Request, method: str):
        metadata = [(k, v) for k, v in request.headers.items() if k in ("authorization", "x-api-key")]
        gate.admit(metadata, method)
        t0, code = time.perf_counter(), "OK"
        try:
            yield
        except VecdbError as e:
            code = e.grpc_code
            raise
        finally:
            gate.in_flight -= 1
            if gate.metrics is not None:
                gate.metrics.observe(f"http:{method}", code, time.perf_counter() - t0)

    async def run(fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(gate.pool, lambda: fn(*args, **kwargs))

    def collection(name: str):
        col = gate.database.get_collection(name)
        gate.touched.add(name)
        return col

    @app.exception_handler(VecdbError)
    async def vecdb_error(request: Request, e: VecdbError):
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        return error_response(InvalidArgument(f"invalid request: {problems}"))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(resources.files("vecdb.http").joinpath("static/index.html").read_text("utf-8"))

    @app.get("/v1/collections")
    async def list_collections(request: Request):
        async with admitted(request, "ListCollections"):
            return {"collections": await run(gate.database.list_collections)}

    @app.post("/v1/collections", status_code=201)
    async def create_collection(body: CreateCollection, request: Request):
        async with admitted(request, "CreateCollection"):
            kwargs = {k: v for k, v in dict(metric=body.metric, schema=body.schema_, id_type=body.id_type,
                                            index=body.index, embedding=body.embedding,
                                            text_field=body.text_field, text_fields=body.text_fields).items()
                      if v is not None}
            if body.dim is not None:
                kwargs["dim"] = body.dim
            return await run(lambda: describe(gate.database.create_collection(body.name, **kwargs)))

    @app.get("/v1/collections/{name}")
    async def describe_collection(name: str, request: Request):
        async with admitted(request, "GetCollection"):
            return await run(lambda: describe(collection(name), with_count=True))

    @app.delete("/v1/collections/{name}")
    async def drop_collection(name: str, request: Request):
        async with admitted(request, "DropCollection"):
            await run(gate.database.drop_collection, name)
            gate.touched.discard(name)
            return {"dropped": name}

    @app.post("/v1/collections/{name}/upsert")
    async def upsert(name: str, body: Upsert, request: Request):
        async with admitted(request, "Upsert"):
            rows = len(body.texts if body.texts is not None else body.vectors or [])
            if rows > max_batch_rows:
                raise ResourceExhausted(f"batch of {rows} rows exceeds the server's limit "
                                        f"max_batch_rows={max_batch_rows}; split it")
            if body.texts is not None:
                if body.vectors is not None:
                    raise InvalidArgument("give texts or vectors, not both")
                ids = await run(lambda: collection(name).add_texts(body.texts, payloads=body.payloads, ids=body.ids))
                return {"upserted": len(ids), "ids": ids}       # ids: given, or hashes of the texts
            n = await run(lambda: collection(name).upsert(body.ids, body.vectors, body.payloads))
            return {"upserted": n}

    @app.post("/v1/collections/{name}/get")
    async def get(name: str, body: Ids, request: Request):
        async with admitted(request, "Get"):
            records = await run(lambda: collection(name).get(body.ids))
            return {"records": [{"id": r.id, "vector": r.vector.tolist(), "payload": r.payload} for r in records]}

    @app.post("/v1/collections/{name}/delete")
    async def delete(name: str, body: Delete, request: Request):
        async with admitted(request, "Delete"):
            return {"deleted": await run(lambda: collection(name).delete(body.ids, filter=body.filter))}

    @app.get("/v1/collections/{name}/count")
    async def count(name: str, request: Request, filter: str | None = None):
        async with admitted(request, "Count"):
            return {"count": await run(lambda: collection(name).count(filter))}

    @app.post("/v1/collections/{name}/search")
    async def search(name: str, body: Search, request: Request):
        async with admitted(request, "Search"):
            given = [f for f in ("vector", "vectors", "text", "texts") if getattr(body, f) is not None]
            if len(given) != 1:
                raise InvalidArgument(f"give exactly one of vector, vectors, text, texts; got {given or 'none'}")
            if not 1 <= body.k <= max_k:
                raise InvalidArgument(f"k must be in [1, {max_k}], got {body.k}")
            query = getattr(body, given[0])
            kwargs = dict(filter=body.filter, output_fields=body.output_fields, params=body.params)
            if body.mode is not None:
                kwargs["mode"] = body.mode
            hits = await run(lambda: collection(name).search(query, body.k, **kwargs))
            batch = given[0] in ("vectors", "texts")
            if not batch and hits and isinstance(hits[0], list):
                hits = hits[0]
            if batch:
                return {"results": [[hit_json(h) for h in row] for row in hits]}
            return {"hits": [hit_json(h) for h in hits]}

    def need_llm() -> LLM:
        if llm is None:
            raise Unavailable("this gateway has no LLM: start vecdb serve with --llm-base-url and --llm-model")
        return llm

    async def start_answer(name: str, messages: list[dict], k, filter, mode, max_tokens, temperature):
        """Retrieval and prompt (errors here become a plain error response), then the stream."""
        model = need_llm()

        def begin():
            stream = rag.chat(messages, collection(name), llm=model, stream=True, k=k, filter=filter, mode=mode,
                              max_tokens=max_tokens, temperature=temperature)
            return itertools.chain([next(stream)], stream)     # an LLM that is down fails the request itself
        return await run(begin)

    @app.post("/v1/rag/chat")
    async def rag_chat(body: RagChat, request: Request):
        """Answer with citations; ``stream`` sends events ``context``, ``token``..., ``answer``."""
        async with admitted(request, "RagChat"):
            messages = [m.model_dump() for m in body.messages or []]
            if body.question is not None:
                messages.append({"role": "user", "content": body.question})
            stream = await start_answer(body.collection, messages, body.k, body.filter, body.mode,
                                        body.max_tokens, body.temperature)
        if not body.stream:
            final = await run(lambda: [x for x in stream][-1])
            return jsonable_encoder(final.to_dict())
        return StreamingResponse(rag_events(stream), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletion, request: Request):
        """OpenAI-compatible chat; ``model`` names the collection; answers carry ``citations``."""
        async with admitted(request, "RagChat"):
            messages = [m.model_dump() for m in body.messages]
            stream = await start_answer(body.model, messages, body.k, body.filter, body.mode, body.max_tokens or 512,
                                        body.temperature or 0.0)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return StreamingResponse(openai_events(stream, cid, created, body.model), media_type="text/event-stream")
        final = await run(lambda: [x for x in stream][-1])
        prompt_tokens = sum(estimate_tokens(c.text) for c in final.context)
        return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": final.text}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": estimate_tokens(final.text),
                          "total_tokens": prompt_tokens + estimate_tokens(final.text)},
                "citations": jsonable_encoder(final.to_dict()["citations"])}

    return app


def error_response(e: VecdbError) -> JSONResponse:
    """The one error table, over HTTP."""
    return JSONResponse(status_code=e.http_status,
                        content={"error": {"type": type(e).__name__, "code": e.grpc_code, "message": str(e)}})


def describe(col, with_count: bool = False) -> dict:
    out = {"name": col.name, "dim": col.dim, "metric": col.metric, "id_type": col.id_type,
           "schema": col.schema, "version": col.version}
    if with_count:
        out["count"] = col.count()
    return out


def hit_json(h) -> dict:
    return {"id": h.id, "score": float(h.score), "payload": jsonable_encoder(h.payload or {})}


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(jsonable_encoder(data))}\n\n"


def rag_events(stream: Iterator) -> Iterator[str]:
    """``context`` (the retrieved chunks), ``token`` per piece, then ``answer``; ``error`` on failure."""
    try:
        for item in stream:
            if isinstance(item, rag.Answer):
                yield sse("answer", item.to_dict())
            else:
                yield sse("token", {"text": item})
    except VecdbError as e:
        yield sse("error", {"type": type(e).__name__, "code": e.grpc_code, "message": str(e)})


def openai_events(stream: Iterator, cid: str, created: int, model: str) -> Iterator[str]:
    def chunk(delta: dict, finish=None, **extra) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(jsonable_encoder(body))}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        for item in stream:
            if isinstance(item, rag.Answer):
                yield chunk({}, "stop", citations=item.to_dict()["citations"])
            else:
                yield chunk({"content": item})
    except VecdbError as e:
        yield f"data: {json.dumps({'error': {'type': type(e).__name__, 'message': str(e)}})}\n\n"
    yield "data: [DONE]\n\n"
