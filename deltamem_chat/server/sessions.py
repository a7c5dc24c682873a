"""Sessions on one model: an engine per session (its lanes, caches and memory), the model's weights shared.

Every engine call runs under one `FairLock`, so the model serves one turn at a time, in arrival order; with the
cross-session decoder (`deltamem.runtime.cross_batch`) a turn lets the lock go while it decodes, its steps joined
with other sessions' in one forward, so each session also has a lock of its own (`using`): one request at a time on
its engine, and a session whose turn is in flight is never evicted. After every
change a session is saved atomically into its folder (the app's session format, `deltamem.runtime.session_io`), so
a kill at any moment loses at most the turn in progress. Past `live_sessions` engines, the least recently used is
dropped from memory (it is already saved) and loaded again on its next request. A folder the server did not write
(a session saved by the chat, copied in) is served the same way.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deltamem.context import ContextPolicy, WriteBudget
from deltamem.files import SaveError
from deltamem.retrieval import RetrievalSettings
from deltamem.runtime.contract import LANE_NAMES, SessionIdentity
from deltamem.runtime.cross_batch import CrossBatch
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel
from deltamem.runtime.session_io import SESSION_JSON, SessionError
from deltamem_chat.server.errors import ApiError
from deltamem_chat.server.fair_lock import FairLock
from deltamem_chat.server.limits import ServerLimits

#: Session ids name folders: letters, digits, `-` and `_` only.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_id(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise ApiError(400, "a session id is 1 to 64 letters, digits, '-' or '_'", param="session")
    return session_id


class SessionStore:
    """The server's sessions: live engines (least recently used first) and the folders of every saved one."""

    def __init__(self, loaded: LoadedModel, folder: Path, limits: ServerLimits, policy: ContextPolicy,
                 budget: WriteBudget | None = None, batched: bool = True, lanes: Sequence[str] = LANE_NAMES,
                 retrieval: RetrievalSettings | None = None, cross_batch: bool = True) -> None:
        self.loaded = loaded
        self.folder = folder
        self.limits = limits
        self.policy = policy
        self.budget = budget or WriteBudget()
        self.batched = batched
        self.lanes = tuple(lanes)
        self.retrieval = retrieval or RetrievalSettings()
        self.identity = SessionIdentity(loaded.base, loaded.adapter)
        self.lock = FairLock()
        self.decoder = CrossBatch(self.lock) if cross_batch else None
        self._using: dict[str, threading.Lock] = {}
        self._using_made = threading.Lock()
        self._live: OrderedDict[str, ABEngine] = OrderedDict()
        folder.mkdir(parents=True, exist_ok=True)
        self._saved = {p.parent.name for p in folder.glob(f"*/{SESSION_JSON}") if SESSION_ID.fullmatch(p.parent.name)}

    # ------------------------------------------------------------------------------------------- engines
    def new_engine(self, policy: ContextPolicy | None = None, budget: WriteBudget | None = None,
                   lanes: Sequence[str] | None = None) -> ABEngine:
        """An engine on the shared model with the served lanes (a session's), or some of them (a stateless
        request's)."""
        return ABEngine(self.loaded.model, self.loaded.tokenizer, policy=policy or self.policy,
                        budget=budget or self.budget, batched=self.batched, lanes=lanes or self.lanes,
                        retrieval=self.retrieval, decoder=self.decoder)

    @contextmanager
    def using(self, session_id: str | None) -> Iterator[None]:
        """Hold the session's own lock for a block (taken before the store's lock, never after it)."""
        if session_id is None:
            yield
            return
        with self._using_made:
            lock = self._using.setdefault(session_id, threading.Lock())
        with lock:
            yield

    def served(self, name: str, field: str = "model") -> str:
        """`name` if it is one of the served lanes, else a refusal naming it and the ones served: OpenAI's 404 for a
        request's model, a 400 for a lane named in another `field`."""
        if name not in self.lanes:
            model = field == "model"
            raise ApiError(404 if model else 400, f"{field} {name!r} is not served here: use one of "
                           f"{', '.join(self.lanes)}", param=field, code="model_not_found" if model else None)
        return name

    @property
    def ids(self) -> list[str]:
        return sorted(self._saved | set(self._live))

    def counts(self) -> tuple[int, int]:
        """Sessions saved and engines live (each `len` is one step, safe beside a worker changing them)."""
        return len(self._saved), len(self._live)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._live or session_id in self._saved

    def create(self, session_id: str | None = None, policy: ContextPolicy | None = None,
               budget: WriteBudget | None = None) -> str:
        """A new empty session (an unguessable id unless one is given), saved at once."""
        session_id = check_id(session_id) if session_id else secrets.token_urlsafe(18)
        if session_id in self:
            raise ApiError(409, f"session {session_id} already exists", param="session")
        if len(self._saved | set(self._live)) >= self.limits.max_sessions:
            raise ApiError(429, f"the server holds its limit of {self.limits.max_sessions:,} sessions: delete one "
                           "first", code="too_many_sessions")
        self._make_room()
        self._live[session_id] = self.new_engine(policy, budget)
        self.save(session_id)
        return session_id

    def engine(self, session_id: str, create: bool = False) -> ABEngine:
        """The session's engine, loaded from its folder if it was evicted (created first if `create`)."""
        check_id(session_id)
        if session_id not in self:
            if not create:
                raise ApiError(404, f"no session {session_id} on this server", param="session",
                               code="unknown_session")
            self.create(session_id)
        if session_id not in self._live:
            self._make_room()
            engine = self.new_engine()
            try:
                extra = engine.load(self.folder / session_id, self.identity)
            except SessionError as exc:
                raise ApiError(409, f"session {session_id} cannot be loaded: {exc}", code="damaged_session") from None
            engine.budget = _budget(extra.get("budget"), self.budget)
            self._live[session_id] = engine
        self._live.move_to_end(session_id)
        return self._live[session_id]

    def forget(self, session_id: str) -> None:
        """Drop the live engine, unsaved changes and all: the next request reads the folder again."""
        self._live.pop(check_id(session_id), None)

    def _make_room(self) -> None:
        """Drop the least recently used engines until one more fits (each was saved after its last change)."""
        while len(self._live) >= self.limits.live_sessions:
            idle = next((sid for sid in self._live if not self._busy(sid)), None)
            if idle is None:
                return                               # every live session has a request in flight: one more fits
            del self._live[idle]

    def _busy(self, session_id: str) -> bool:
        lock = self._using.get(session_id)
        return lock is not None and lock.locked()

    # ------------------------------------------------------------------------------------------- on disk
    def save(self, session_id: str) -> None:
        """Write the session into its folder in one atomic step."""
        engine = self._live[session_id]
        extra: dict[str, Any] = {"budget": {"horizon": engine.budget.horizon,
                                            "stop_at_horizon": engine.budget.stop_at_horizon}}
        try:
            engine.save(self.folder / session_id, self.identity, extra)
        except SaveError as exc:
            raise ApiError(507, f"session {session_id} could not be saved: {exc}", kind="server_error") from None
        self._saved.add(session_id)

    def save_all(self) -> int:
        """Save every live session (at shutdown); returns how many were saved."""
        for session_id in list(self._live):
            self.save(session_id)
        return len(self._live)

    def delete(self, session_id: str) -> None:
        check_id(session_id)
        if session_id not in self:
            raise ApiError(404, f"no session {session_id} on this server", param="session", code="unknown_session")
        self._live.pop(session_id, None)
        self._saved.discard(session_id)
        shutil.rmtree(self.folder / session_id, ignore_errors=True)


def session_view(session_id: str, engine: ABEngine) -> dict[str, Any]:
    """What `GET /v1/sessions/{id}` shows: settings, and each lane's messages and written total."""
    return {"id": session_id, "object": "session", "policy": str(engine.policy), "batched": engine.batched,
            "retrieval": str(engine.retrieval),
            "budget": {"horizon": engine.budget.horizon, "stop_at_horizon": engine.budget.stop_at_horizon},
            "lanes": {name: {"memory": view.memory, "retrieval": view.retrieval, "messages": list(view.messages),
                             "written_total": view.written_total,
                             "budget": engine.budget.status(view.written_total)}
                      for name in engine.lane_names for view in [engine.lane(name)]}}


def _budget(record: object, fallback: WriteBudget) -> WriteBudget:
    """The write budget a session saved, else the server's."""
    if isinstance(record, dict) and isinstance(record.get("horizon"), int) and record["horizon"] > 0:
        return WriteBudget(record["horizon"], bool(record.get("stop_at_horizon", False)))
    return fallback
