"""The FastAPI application: OpenAI's `/v1/models` and `/v1/chat/completions`, and `/v1/sessions` for memory.

A request names its session by the `X-Session-Id` header or OpenAI's `user` field (an unknown one is created with
the server's policy); without either it is stateless: a fresh engine reads the messages sent and is dropped. Engine
work runs on worker threads, one turn at a time (`SessionStore.lock`; decode steps of several sessions may share a
forward, `deltamem.runtime.cross_batch`) and one request at a time per session; a stream whose client goes away
cancels its generation between tokens.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from deltamem.context import ContextPolicy, PolicyError, WriteBudget
from deltamem.runtime.contract import (
    GenerationSettings,
    LaneDone,
    ReadProgress,
    TokenEvent,
    TurnDone,
    has_memory,
    has_retrieval,
)
from deltamem.runtime.engine import ABEngine
from deltamem_chat.server import engine_api, errors
from deltamem_chat.server.completions import (
    EXTENSION,
    chunk,
    completion,
    finish_reason,
    new_messages,
    run_turn,
    usage,
)
from deltamem_chat.server.errors import ApiError, failure
from deltamem_chat.server.requests import ChatRequest, DocumentBody, NewSession
from deltamem_chat.server.security import Guard
from deltamem_chat.server.sessions import SESSION_ID, SessionStore, session_view
from deltamem_chat.server.threads import locked as run_locked
from deltamem_chat.server.threads import streamed
from deltamem_chat.transcripts.reading import document_text

T = TypeVar("T")


def session_for(header: str | None, user: str | None) -> str | None:
    """The session a request names: the header, else `user` (made folder-safe by hashing when it is not)."""
    if header is not None:
        return header
    if user is None or SESSION_ID.fullmatch(user):
        return user
    return "user-" + hashlib.sha256(user.encode()).hexdigest()[:32]


def _settings(request: ChatRequest, store: SessionStore) -> GenerationSettings:
    limit = store.limits.max_tokens
    wanted = request.max_completion_tokens or request.max_tokens or min(store.limits.default_max_tokens, limit)
    if wanted > limit:
        raise ApiError(400, f"max_tokens {wanted:,} is above this server's limit of {limit:,}", param="max_tokens")
    return GenerationSettings(max_new_tokens=wanted, temperature=request.temperature, top_p=request.top_p,
                              seed=request.seed)


def _policy(text: str | None) -> ContextPolicy | None:
    try:
        return None if text is None else ContextPolicy.parse(text)
    except PolicyError as exc:
        raise ApiError(400, f"policy: {exc}", param="policy") from None


def create_app(store: SessionStore, api_key: str | None = None) -> FastAPI:
    """The server on `store`'s model; `api_key` (if given) is required of every request."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await locked(store.save_all)          # Ctrl-C and SIGTERM end here, after the requests in flight

    app = FastAPI(title="deltamem-chat", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    errors.install(app)
    app.state.store = store

    def locked(work: Callable[[], T], session: str | None = None) -> Awaitable[T]:
        return run_locked(store, work, session)

    # --------------------------------------------------------------------------------------- models
    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model(name) for name in store.lanes]}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        return _model(store.served(name))

    def _model(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "deltamem-chat",
                EXTENSION: {"memory": has_memory(name), "retrieval": has_retrieval(name), "base": store.loaded.base,
                            "adapter": store.loaded.adapter}}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        saved, live = store.counts()          # without the lock: a health check never waits behind a turn
        return {"status": "ok", "sessions": saved, "live": live, "waiting": store.lock.waiting}

    # ---------------------------------------------------------------------------------- completions
    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest, x_session_id: str | None = Header(default=None)) -> Response:
        lane = store.served(body.model)
        settings = _settings(body, store)
        session = session_for(x_session_id, body.user)
        sent = [m.as_dict() for m in body.messages]
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        cancel = threading.Event()

        def turn() -> Iterator[Any]:
            engine = store.engine(session, create=True) if session else store.new_engine(lanes=(lane,))
            new = new_messages(engine.lane(lane).messages, sent) if session else sent
            done: LaneDone | None = None
            for event in run_turn(engine, lane, new, settings, cancel):
                if isinstance(event, TokenEvent) and event.text:
                    yield event.text
                elif isinstance(event, LaneDone):
                    done = event
                elif isinstance(event, TurnDone) and done is not None:
                    if session:
                        store.save(session)
                    yield done.text, finish_reason(done, settings), usage(engine, lane, done, event)

        items = streamed(store, turn, cancel, session)
        first = await anext(items)
        if not body.stream:
            async for item in items:
                first = item
            text, reason, used = first
            return JSONResponse(completion(request_id, lane, text, reason, used, session),
                                headers={"X-Session-Id": session or ""})
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(_sse(request_id, lane, first, items, include_usage, cancel),
                                 media_type="text/event-stream", headers={"X-Session-Id": session or ""})

    # ------------------------------------------------------------------------------------- sessions
    @app.post("/v1/sessions", status_code=201)
    async def create_session(body: NewSession | None = None,
                             x_session_id: str | None = Header(default=None)) -> dict[str, Any]:
        body = body or NewSession()
        policy = _policy(body.policy)
        budget = WriteBudget(body.budget.horizon, body.budget.stop_at_horizon) if body.budget else None

        def create() -> dict[str, Any]:
            session_id = store.create(x_session_id, policy, budget)
            return session_view(session_id, store.engine(session_id))
        return await locked(create, x_session_id)

    @app.get("/v1/sessions")
    async def list_sessions() -> dict[str, Any]:
        return {"object": "list", "data": await locked(lambda: store.ids)}

    @app.get("/v1/sessions/{session_id}")
    async def get_session(session_id: str) -> dict[str, Any]:
        return await locked(lambda: session_view(session_id, store.engine(session_id)), session_id)

    def _changed(session_id: str, change: Callable[[ABEngine], None]) -> Callable[[], dict[str, Any]]:
        def apply() -> dict[str, Any]:
            engine = store.engine(session_id)
            change(engine)
            store.save(session_id)
            return session_view(session_id, engine)
        return apply

    @app.post("/v1/sessions/{session_id}/reset_memory")
    async def reset_memory(session_id: str) -> dict[str, Any]:
        return await locked(_changed(session_id, lambda engine: engine.reset_memory()), session_id)

    @app.post("/v1/sessions/{session_id}/reset")
    async def reset(session_id: str) -> dict[str, Any]:
        return await locked(_changed(session_id, lambda engine: engine.reset()), session_id)

    @app.post("/v1/sessions/{session_id}/save")
    async def save(session_id: str) -> dict[str, Any]:
        return await locked(_changed(session_id, lambda engine: None), session_id)

    @app.post("/v1/sessions/{session_id}/load")
    async def load(session_id: str) -> dict[str, Any]:
        """Read the session again from its folder (a folder replaced on disk, by a copy of a chat's session)."""
        def reload() -> dict[str, Any]:
            store.forget(session_id)
            return session_view(session_id, store.engine(session_id))
        return await locked(reload, session_id)

    @app.delete("/v1/sessions/{session_id}")
    async def delete(session_id: str) -> dict[str, Any]:
        await locked(lambda: store.delete(session_id), session_id)
        return {"id": session_id, "object": "session.deleted", "deleted": True}

    @app.post("/v1/sessions/{session_id}/documents")
    async def document(session_id: str, body: DocumentBody, request: Request) -> dict[str, Any]:
        """Write a document into the session's memory without a reply (long ones in chunks, as the chat does)."""
        lanes = [store.served(name, "lanes") for name in body.lanes or store.lanes]
        cancel = threading.Event()

        def read() -> Iterator[Any]:
            engine = store.engine(session_id)
            engine.add_message("user", document_text(body.title, body.text), lanes)
            for event in engine.read(lanes, cancel):
                if isinstance(event, ReadProgress):
                    yield event
                elif isinstance(event, TurnDone):
                    store.save(session_id)
                    yield {"id": session_id, "object": "session.document", "title": body.title,
                           "lanes": {name: {**event.stats[name].to_dict(), "written_total": event.written_total[name]}
                                     for name in lanes if name in event.stats}}

        result: Any = None
        async for item in streamed(store, read, cancel, session_id):
            result = item
            if await request.is_disconnected():
                cancel.set()
        return result

    @app.patch("/v1/sessions/{session_id}")
    async def change(session_id: str, body: NewSession) -> dict[str, Any]:
        """A new context policy or write budget for the session (the next turn rebuilds what no longer matches)."""
        policy = _policy(body.policy)

        def apply(engine: ABEngine) -> None:
            if policy is not None:
                engine.set_policy(policy)
            if body.budget is not None:
                engine.budget = WriteBudget(body.budget.horizon, body.budget.stop_at_horizon)
        return await locked(_changed(session_id, apply), session_id)

    engine_api.install(app, store)
    app.add_middleware(Guard, api_key=api_key, max_body=store.limits.max_body_bytes)
    return app


async def _sse(request_id: str, lane: str, first: Any, items: AsyncIterator[Any], include_usage: bool,
               cancel: threading.Event) -> AsyncIterator[str]:
    """Server-sent events: the role, a chunk per piece of text, the finish reason, the usage if asked, `[DONE]`."""
    def event(body: dict[str, Any]) -> str:
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        yield event(chunk(request_id, lane, {"role": "assistant", "content": ""}))
        item = first
        while True:
            if isinstance(item, str):
                yield event(chunk(request_id, lane, {"content": item}))
            else:
                _, reason, used = item
                yield event(chunk(request_id, lane, {}, reason))
                if include_usage:
                    yield event(chunk(request_id, lane, {}, used=used))
            try:
                item = await anext(items)
            except StopAsyncIteration:
                break
        yield "data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - the status is sent: the stream ends with the error's one sentence
        yield event(failure(exc).body())
    finally:
        cancel.set()
        await items.aclose()
