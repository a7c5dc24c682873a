"""`RemoteEngine`: the engine contract on a session of `deltamem-chat serve`, so the chat and the replay run against
a server as they run on a model in this process.

Each call is one request to the session's engine endpoints (`/v1/sessions/{id}/engine/…`); a turn streams the
server's events as they come, token by token. A cancel is its own request, so the server stops between tokens and
the stream still ends with each lane's `LaneDone` and the `TurnDone`. The lanes' conversations are read back from
the server after every change, so `lane()` answers without a request. No torch is imported here.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from deltamem.context import ContextPolicy, WriteBudget
from deltamem.files import atomic_write_bytes, atomic_write_text
from deltamem.runtime.contract import Engine, Event, GenerationSettings, LaneView, SessionIdentity, TurnDone
from deltamem_chat.remote.wire import WireError, decode

SESSION_JSON = "session.json"


class RemoteError(ValueError):
    """The server refused a request or could not be reached; the message is its sentence."""


class RemoteEngine:
    """A session on a server, driven through the engine contract."""

    def __init__(self, url: str, api_key: str | None = None, *, session: str | None = None,
                 policy: ContextPolicy | None = None, transport: httpx.BaseTransport | None = None,
                 timeout: float = 600.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)
        if session is None:
            body = {"policy": str(policy)} if policy is not None else {}
            self._view = self._call("POST", "/v1/sessions", json=body)
        else:
            self._view = self._call("GET", f"/v1/sessions/{session}")
            if policy is not None and str(policy) != self._view["policy"]:
                self.set_policy(policy)
        self.session: str = self._view["id"]
        self._budget = self._budget_of(self._view)
        self._point: int | None = None

    # ------------------------------------------------------------------------------------------ requests
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"the server at {self._http.base_url} cannot be reached ({exc})") from None
        if response.status_code >= 400:
            raise RemoteError(_sentence(response))
        return response.json()

    def _session(self, method: str, tail: str, **kwargs: Any) -> dict[str, Any]:
        return self._call(method, f"/v1/sessions/{self.session}{tail}", **kwargs)

    def _refresh(self, view: dict[str, Any] | None = None) -> None:
        self._view = view if view is not None else self._session("GET", "")

    @staticmethod
    def _budget_of(view: dict[str, Any]) -> WriteBudget:
        return WriteBudget(view["budget"]["horizon"], view["budget"]["stop_at_horizon"])

    def identity(self) -> SessionIdentity:
        """The base model and adapter the server runs (what saved sessions record)."""
        model = self._call("GET", "/v1/models")["data"][0]["deltamem"]
        return SessionIdentity(str(model["base"]), str(model["adapter"]))

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------------ the contract
    @property
    def budget(self) -> WriteBudget:
        return self._budget

    @budget.setter
    def budget(self, budget: WriteBudget) -> None:
        self._refresh(self._session("PATCH", "", json={"budget": {"horizon": budget.horizon,
                                                                  "stop_at_horizon": budget.stop_at_horizon}}))
        self._budget = budget

    @property
    def lane_names(self) -> tuple[str, ...]:
        return tuple(self._view["lanes"])

    @property
    def policy(self) -> ContextPolicy:
        return ContextPolicy.parse(self._view["policy"])

    @property
    def batched(self) -> bool:
        return bool(self._view["batched"])

    def lane(self, name: str) -> LaneView:
        lane = self._view["lanes"][name]
        return LaneView(name, lane["memory"], tuple(dict(m) for m in lane["messages"]), lane["written_total"],
                        lane["retrieval"])

    def set_policy(self, policy: ContextPolicy) -> None:
        self._refresh(self._session("PATCH", "", json={"policy": str(policy)}))

    def add_message(self, role: str, content: str, lanes: Sequence[str] | None = None) -> None:
        body = {"role": role, "content": content, "lanes": list(lanes) if lanes else None}
        self._refresh(self._session("POST", "/engine/messages", json=body))

    def turn(self, user_text: str, settings: GenerationSettings | None = None, *, lanes: Sequence[str] | None = None,
             cancel: threading.Event | None = None) -> Iterator[Event]:
        yield from self._run({"op": "turn", "text": user_text}, settings, lanes, cancel)

    def respond(self, settings: GenerationSettings | None = None, *, lanes: Sequence[str] | None = None,
                cancel: threading.Event | None = None) -> Iterator[Event]:
        yield from self._run({"op": "respond"}, settings, lanes, cancel)

    def ingest(self, lanes: Sequence[str] | None = None) -> TurnDone:
        *_, done = self.read(lanes)
        assert isinstance(done, TurnDone)
        return done

    def read(self, lanes: Sequence[str] | None = None, cancel: threading.Event | None = None) -> Iterator[Event]:
        yield from self._run({"op": "read"}, GenerationSettings(max_new_tokens=0), lanes, cancel)

    def checkpoint(self) -> object:
        self._point = int(self._session("POST", "/engine/checkpoint")["checkpoint"])
        return self._point

    def rollback(self, point: Any) -> None:
        self._refresh(self._session("POST", "/engine/rollback", json={"checkpoint": point}))

    def reset(self) -> None:
        self._refresh(self._session("POST", "/reset"))

    def reset_memory(self) -> None:
        self._refresh(self._session("POST", "/reset_memory"))

    def save(self, folder: Path, identity: SessionIdentity, extra: dict[str, Any] | None = None) -> Path:
        """The server's save of the session, written here: the memory file first, then `session.json`, atomically
        (with `extra` in it), as a local save does."""
        files = {name: base64.b64decode(text) for name, text in self._session("GET", "/files")["files"].items()}
        data = json.loads(files.pop(SESSION_JSON))
        if data.get("identity") != identity.to_dict():
            raise RemoteError(f"the server runs {data.get('identity')}, not {identity.to_dict()}")
        data["extra"] = {**data.get("extra", {}), **(extra or {})}
        folder = Path(folder)
        for name, blob in files.items():
            atomic_write_bytes(folder / name, blob)
        atomic_write_text(folder / SESSION_JSON, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        return folder

    def load(self, folder: Path, identity: SessionIdentity) -> dict[str, Any]:
        """Send a saved session to the server, which checks it whole before it replaces this one."""
        folder = Path(folder)
        if not (folder / SESSION_JSON).is_file():
            raise RemoteError(f"{folder}: no saved session there")
        files = {p.name: base64.b64encode(p.read_bytes()).decode() for p in folder.iterdir()
                 if p.is_file() and (p.name == SESSION_JSON or p.suffix == ".safetensors")}
        view = self._session("PUT", "/files", json={"files": files})
        extra = view.pop("extra", {})
        self._refresh(view)
        return extra

    # ------------------------------------------------------------------------------------------ runs
    def _run(self, body: dict[str, Any], settings: GenerationSettings | None, lanes: Sequence[str] | None,
             cancel: threading.Event | None) -> Iterator[Event]:
        """Stream a run's events; a cancel set meanwhile is sent to the server at once."""
        settings = settings or GenerationSettings()
        fields = {k: v for k, v in asdict(settings).items() if k != "stop_at_eos"}
        payload = {**body, "settings": fields, "lanes": list(lanes) if lanes else None}
        finished = threading.Event()
        watcher = None
        if cancel is not None:
            watcher = threading.Thread(target=self._cancel_when, args=(cancel, finished), daemon=True)
            watcher.start()
        try:
            with self._http.stream("POST", f"/v1/sessions/{self.session}/engine/run", json=payload) as response:
                if response.status_code >= 400:
                    response.read()
                    raise RemoteError(_sentence(response))
                for line in response.iter_lines():
                    if not line:
                        continue
                    record = json.loads(line)
                    if record.get("type") == "error":
                        raise RemoteError(record["error"]["message"])
                    yield decode(record)
        except httpx.HTTPError as exc:
            raise RemoteError(f"the server at {self._http.base_url} stopped answering ({exc})") from None
        except (json.JSONDecodeError, WireError) as exc:
            raise RemoteError(str(exc)) from None
        finally:
            finished.set()
            if watcher is not None:
                watcher.join()
            self._refresh()

    def _cancel_when(self, cancel: threading.Event, finished: threading.Event) -> None:
        while not finished.is_set():
            if cancel.wait(0.02):
                try:
                    self._http.post(f"/v1/sessions/{self.session}/engine/cancel")
                except httpx.HTTPError:
                    pass                     # the stream's own failure says what happened
                return


def _sentence(response: httpx.Response) -> str:
    """The server's one sentence from an error body (or the status, when the body is not ours)."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"the server answered {response.status_code} {response.reason_phrase}"


def _as_engine() -> Engine:
    """Where mypy checks the remote engine against the contract (never called)."""
    return RemoteEngine("http://127.0.0.1:8000")
