"""The server's tests' tools: a tiny model loaded as the CLI would load one, clients in-process and on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from deltamem.context import ContextPolicy
from deltamem.retrieval import RetrievalSettings
from deltamem.runtime.contract import LANE_NAMES, GenerationSettings, LaneDone, SessionIdentity
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel, choose_runtime
from deltamem.testing import byte_chatml_tokenizer, printable_only, random_delta_model
from deltamem_chat.server.app import create_app
from deltamem_chat.server.background import running
from deltamem_chat.server.limits import ServerLimits
from deltamem_chat.server.sessions import SessionStore

ROOT = Path(__file__).resolve().parent.parent
POLICY = ContextPolicy.parse("window:1024")
SETTINGS = GenerationSettings(max_new_tokens=6)
#: A window the facts below leave, and a retrieval budget that has room for them (in the tiny model's byte tokens).
SMALL_WINDOW = ContextPolicy.parse("window:120")
RETRIEVAL = RetrievalSettings(3, 100)
FACTS = ["My cat is called Pixel.", "I live in Lisbon.", "The sky was grey.", "My sister plays cello.",
         "What is my cat called?", "Who plays cello?"]


def tiny_loaded() -> LoadedModel:
    model = random_delta_model(attn="sdpa", seed=3)
    printable_only(model.backbone)
    return LoadedModel(model, byte_chatml_tokenizer(), "tiny-base", "tiny-adapter", choose_runtime("cpu"))


def store(loaded: LoadedModel, folder: Path, lanes: tuple[str, ...] = LANE_NAMES,
          retrieval: RetrievalSettings | None = None, cross_batch: bool = True, **limits: Any) -> SessionStore:
    return SessionStore(loaded, folder, ServerLimits(**limits), POLICY, lanes=lanes, retrieval=retrieval,
                        cross_batch=cross_batch)


@contextmanager
def client(loaded: LoadedModel, folder: Path, api_key: str | None = None, **limits: Any) -> Iterator[TestClient]:
    """A client of an in-process server (its lifespan runs: leaving saves every session)."""
    with TestClient(create_app(store(loaded, folder, **limits), api_key), raise_server_exceptions=False) as test:
        yield test


@contextmanager
def live_server(sessions: SessionStore) -> Iterator[str]:
    """The store's server on a free loopback port; yields its base URL."""
    with running(create_app(sessions)) as url:
        yield url


def local_replies(loaded: LoadedModel, lane: str, users: list[str], settings: GenerationSettings = SETTINGS,
                  session: Path | None = None) -> list[str]:
    """What a local engine answers on `lane` to each user message in turn, after loading `session` if given (the
    server must say the same)."""
    engine = ABEngine(loaded.model, loaded.tokenizer, policy=POLICY)
    if session is not None:
        engine.load(session, SessionIdentity(loaded.base, loaded.adapter))
    replies = []
    for text in users:
        done = [e for e in engine.turn(text, settings, lanes=[lane]) if isinstance(e, LaneDone)]
        replies.append(done[0].text)
    return replies


def chat_body(lane: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": lane, "messages": [{"role": "user", "content": text}], "max_tokens": SETTINGS.max_new_tokens,
            **extra}


def sse_events(lines: Iterator[str]) -> list[Any]:
    """The JSON of each `data:` line of a stream, `[DONE]` as the string."""
    events = []
    for line in lines:
        if line.startswith("data: "):
            payload = line.removeprefix("data: ")
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
