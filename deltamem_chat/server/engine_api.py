"""`/v1/sessions/{id}/engine/…`: the engine contract over HTTP for `deltamem_chat.remote.RemoteEngine`.

The served lanes of a session (or those a run names) answer in one run, as in the chat; a run streams the contract's
events as JSON lines (`deltamem_chat.remote.wire`) and ends with `turn_done`, or with an `error` line. A cancel (its
own request, or the client going away) stops the generation between tokens and the run still ends with each lane's
`lane_done`.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from deltamem.files import atomic_write_bytes
from deltamem.runtime.contract import GenerationSettings
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.long_inputs import PromptTooLong
from deltamem.runtime.session_io import SESSION_JSON, SessionError
from deltamem_chat.remote.wire import encode
from deltamem_chat.server.errors import ApiError, failure
from deltamem_chat.server.requests import Message
from deltamem_chat.server.sessions import SessionStore, session_view
from deltamem_chat.server.threads import locked, streamed

#: The files a session folder may hold (`deltamem.runtime.session_io`'s names).
_FILE = r"^(session\.json|memory(-[0-9a-f]{16})?\.safetensors)$"


class SettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=256, ge=0)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    seed: int = 0


class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Literal["turn", "respond", "read"]
    text: str | None = None
    settings: SettingsBody = SettingsBody()
    lanes: list[str] | None = Field(default=None, min_length=1)


class AddBody(Message):
    lanes: list[str] | None = Field(default=None, min_length=1)


class PointBody(BaseModel):
    checkpoint: int


class FilesBody(BaseModel):
    """A session folder's files, base64, by name."""

    files: dict[str, str] = Field(min_length=1)


def install(app: FastAPI, store: SessionStore) -> None:
    """Add the engine endpoints to the server's app."""
    points: dict[str, tuple[int, int, object]] = {}          # session → (number, engine id, checkpoint)
    cancels: dict[str, threading.Event] = {}
    numbers = iter(range(1, 2**62))

    def served(names: list[str] | None) -> list[str] | None:
        return None if names is None else [store.served(name, "lanes") for name in names]

    def changed(session_id: str, engine: ABEngine) -> dict[str, Any]:
        store.save(session_id)
        return session_view(session_id, engine)

    @app.post("/v1/sessions/{session_id}/engine/run")
    async def run(session_id: str, body: RunBody) -> StreamingResponse:
        limit = store.limits.max_tokens
        if body.settings.max_new_tokens > limit:
            raise ApiError(400, f"max_new_tokens {body.settings.max_new_tokens:,} is above this server's limit of "
                           f"{limit:,}", param="settings.max_new_tokens")
        if (body.op == "turn") != (body.text is not None):
            raise ApiError(400, "text is given with op turn, and only then", param="text")
        settings = GenerationSettings(**body.settings.model_dump())
        lanes = served(body.lanes)
        cancel = threading.Event()

        def work() -> Iterator[Any]:
            engine = store.engine(session_id)
            cancels[session_id] = cancel
            try:
                if body.op == "turn":
                    events = engine.turn(body.text or "", settings, lanes=lanes, cancel=cancel)
                elif body.op == "respond":
                    events = engine.respond(settings, lanes=lanes, cancel=cancel)
                else:
                    events = engine.read(lanes, cancel)
                yield from events
            except PromptTooLong as exc:
                raise ApiError(400, str(exc), code="context_length_exceeded") from None
            finally:
                cancels.pop(session_id, None)
                store.save(session_id)

        items = streamed(store, work, cancel, session_id)
        first = await anext(items)

        async def lines() -> AsyncIterator[str]:
            yield json.dumps(encode(first), ensure_ascii=False) + "\n"
            try:
                async for event in items:
                    yield json.dumps(encode(event), ensure_ascii=False) + "\n"
            except Exception as exc:  # noqa: BLE001 - the status is sent: the stream ends with the error's sentence
                yield json.dumps({"type": "error", **failure(exc).body()}, ensure_ascii=False) + "\n"
            finally:
                await items.aclose()
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post("/v1/sessions/{session_id}/engine/cancel")
    async def cancel_run(session_id: str) -> dict[str, Any]:
        """Stop the session's run in progress (not queued behind the lock: it only sets a flag)."""
        running = cancels.get(session_id)
        if running is not None:
            running.set()
        return {"id": session_id, "cancelled": running is not None}

    @app.post("/v1/sessions/{session_id}/engine/messages")
    async def add(session_id: str, body: AddBody) -> dict[str, Any]:
        lanes = served(body.lanes)

        def apply() -> dict[str, Any]:
            engine = store.engine(session_id)
            message = body.as_dict()
            engine.add_message(message["role"], message["content"], lanes)
            return changed(session_id, engine)
        return await locked(store, apply, session_id)

    @app.post("/v1/sessions/{session_id}/engine/checkpoint")
    async def checkpoint(session_id: str) -> dict[str, Any]:
        def take() -> dict[str, Any]:
            engine = store.engine(session_id)
            number = next(numbers)
            points[session_id] = (number, id(engine), engine.checkpoint())
            return {"checkpoint": number}
        return await locked(store, take, session_id)

    @app.post("/v1/sessions/{session_id}/engine/rollback")
    async def rollback(session_id: str, body: PointBody) -> dict[str, Any]:
        def back() -> dict[str, Any]:
            engine = store.engine(session_id)
            number, owner, point = points.get(session_id, (None, None, None))
            if number != body.checkpoint or owner != id(engine):
                raise ApiError(409, f"checkpoint {body.checkpoint} is not the session's open one (one is open at a "
                               "time, and an evicted session's is gone)", param="checkpoint")
            engine.rollback(point)
            return changed(session_id, engine)
        return await locked(store, back, session_id)

    @app.get("/v1/sessions/{session_id}/files")
    async def files(session_id: str) -> dict[str, Any]:
        """The session folder's files (the app's session format), base64, as saved just now."""
        def read() -> dict[str, Any]:
            store.save(session_id)
            folder = store.folder / session_id
            return {"files": {p.name: base64.b64encode(p.read_bytes()).decode() for p in folder.iterdir()
                              if p.is_file() and not p.name.startswith(".")}}
        return await locked(store, read, session_id)

    @app.put("/v1/sessions/{session_id}/files")
    async def replace(session_id: str, body: FilesBody) -> dict[str, Any]:
        """Load a session folder sent by the client: checked whole (`session_io`) before it replaces the session."""
        bad = [name for name in body.files if not re.match(_FILE, name)]
        if bad or SESSION_JSON not in body.files:
            raise ApiError(400, f"files: {bad[0]!r} is not a session file" if bad else f"files: no {SESSION_JSON}",
                           param="files")
        try:
            blobs = {name: base64.b64decode(text, validate=True) for name, text in body.files.items()}
        except ValueError:
            raise ApiError(400, "files: a file is not valid base64", param="files") from None

        def load() -> dict[str, Any]:
            engine = store.engine(session_id)
            with tempfile.TemporaryDirectory() as scratch:
                for name, blob in blobs.items():
                    atomic_write_bytes(Path(scratch) / name, blob)
                try:
                    extra = engine.load(Path(scratch), store.identity)
                except SessionError as exc:
                    raise ApiError(400, f"the session sent cannot be loaded: {exc}", param="files") from None
            return {**changed(session_id, engine), "extra": extra}
        return await locked(store, load, session_id)

