"""A/B sessions on disk: `session.json` (messages, counters, settings, identity) + `memory.safetensors` (states).

No pickle anywhere, both files written atomically, and loading checks that the session was made with the same
base model and adapter before touching the engine. The KV caches are not stored: the next turn rebuilds them
from the saved token ids with writes off, so the memory is exactly the saved one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deltamem.context import ContextPolicy
from deltamem.files import atomic_write, atomic_write_text, read_json
from deltamem.runtime.contract import SessionIdentity
from deltamem.runtime.lanes import LaneSnapshot

if TYPE_CHECKING:
    from deltamem.runtime.engine import ABEngine

SESSION_JSON = "session.json"
MEMORY_FILE = "memory.safetensors"
FORMAT_VERSION = 1


class SessionError(ValueError):
    """A session folder that cannot be loaded into this engine; the message names the file and the field."""


def save_session(engine: ABEngine, folder: str | Path, identity: SessionIdentity,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write the engine's lanes (messages, token ids, memory, counters) and settings into `folder`."""
    folder = Path(folder)
    tensors = {}
    lanes = {}
    for name, lane in engine.lanes.items():
        for layer, state in lane.state.items():
            tensors[f"{name}/{layer}"] = state.detach().cpu().contiguous()
        lanes[name] = {"memory": lane.memory, **lane.snapshot().to_record(),
                       "turns": [t.to_dict() for t in lane.turns]}
    data = {
        "format": "deltamem-chat session",
        "version": FORMAT_VERSION,
        "identity": identity.to_dict(),
        "policy": str(engine.policy),
        "batched": engine.batched,
        "system_prompt": engine.system_prompt,
        "turn_index": engine.turn_index,
        "lanes": lanes,
        "extra": extra or {},
    }
    atomic_write(folder / MEMORY_FILE, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_text(folder / SESSION_JSON, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return folder


def load_session(engine: ABEngine, folder: str | Path, identity: SessionIdentity) -> dict[str, Any]:
    """Replace the engine's lanes with a saved session; returns the session's `extra` data."""
    folder = Path(folder)
    path = folder / SESSION_JSON
    data = read_json(path, SessionError, "no saved session here")
    if not isinstance(data, dict) or data.get("format") != "deltamem-chat session":
        raise SessionError(f"{path}: not a deltamem-chat session file")
    if data.get("version") != FORMAT_VERSION:
        raise SessionError(f"{path}: session format version {data.get('version')} (this app reads {FORMAT_VERSION})")
    saved = data.get("identity", {})
    for key in ("base", "adapter"):
        if saved.get(key) != getattr(identity, key):
            raise SessionError(f"{path}: this session was made with {key} {saved.get(key)!r}, "
                               f"but the app is running {getattr(identity, key)!r}")
    lanes = data.get("lanes")
    if not isinstance(lanes, dict) or set(lanes) != set(engine.lanes):
        raise SessionError(f"{path}: lanes {sorted(lanes or {})} do not match this app's {sorted(engine.lanes)}")
    try:
        tensors = load_file(str(folder / MEMORY_FILE))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise SessionError(f"{folder / MEMORY_FILE}: cannot read the memory states ({exc})") from None
    try:
        policy = ContextPolicy.parse(data["policy"])
        restored = {}
        for name, saved_lane in lanes.items():
            state = {key.split("/", 1)[1]: t for key, t in tensors.items() if key.startswith(f"{name}/")}
            restored[name] = LaneSnapshot.from_record(saved_lane, state)
        turn_index = int(data.get("turn_index", 0))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SessionError(f"{path}: missing or malformed field ({exc})") from None
    engine.reset()
    engine.set_policy(policy)
    engine.turn_index = turn_index
    for name, snapshot in restored.items():
        engine.lanes[name].restore(snapshot)
    return dict(data.get("extra") or {})
