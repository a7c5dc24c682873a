"""A/B sessions on disk: `session.json` (messages, counters, settings, identity) and the memory states beside it.

A save is one unit. The memory states go to `memory-<hash>.safetensors`, a new file named by the first 16 hex digits
of its SHA-256; then `session.json`, which names that file and its full hash, replaces the old one in one atomic
rename; then the memory files no session names any more are removed. Killed at any moment, the folder holds either
the old save or the new one, whole, and the next save removes what the killed one left. A load reads and checks
everything (the memory file against the hash `session.json` gives, every field, every state's layer, shape and
values) before it touches the engine, so a load that fails leaves the conversation and memory as they were.

Version 1 sessions (`memory.safetensors`, no hash) are still read; their two files cannot be checked against each
other. No pickle anywhere. The KV caches are not stored: the next turn rebuilds them from the saved messages with
writes off, so the memory is exactly the saved one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor

from deltamem.context import ContextPolicy, PolicyError
from deltamem.files import SaveError, atomic_write_bytes, atomic_write_text, parse_json, read_json, remove_leftovers
from deltamem.rendering import ROLES
from deltamem.runtime.contract import SessionIdentity
from deltamem.runtime.lanes import LaneSnapshot

if TYPE_CHECKING:
    from deltamem.runtime.engine import ABEngine

SESSION_JSON = "session.json"
MEMORY_FILE = "memory.safetensors"
"""Version 1's memory file; version 2 names its memory file after the file's hash."""
FORMAT = "deltamem-chat session"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

_MEMORY_NAME = re.compile(r"memory-([0-9a-f]{16})\.safetensors")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SessionError(ValueError):
    """A session folder that cannot be loaded into this engine; the message names the file and the field."""


# -------------------------------------------------------------------------------------------------- saving
def _memory_files(name: str) -> bool:
    return name == MEMORY_FILE or _MEMORY_NAME.fullmatch(name) is not None


def _named_memory(folder: Path) -> str | None:
    """The memory file the folder's current `session.json` names, if it can be read (None otherwise)."""
    try:
        data = parse_json((folder / SESSION_JSON).read_text(encoding="utf-8"))
        name = data["memory"]["file"] if data.get("version") == FORMAT_VERSION else MEMORY_FILE
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def _remove_other_memory(folder: Path, keep: str) -> None:
    """Remove the memory files (and their temporaries) of earlier or interrupted saves: no session names them."""
    remove_leftovers(folder, _memory_files)
    for path in folder.iterdir():
        if _memory_files(path.name) and path.name != keep:
            path.unlink(missing_ok=True)


def save_session(engine: ABEngine, folder: str | Path, identity: SessionIdentity,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write the engine's lanes (messages, token ids, memory, counters) and settings into `folder`, as one unit.

    Raises `SaveError` when the disk refuses; then the folder holds the previous save exactly as it was.
    """
    folder = Path(folder)
    tensors = {}
    lanes = {}
    for name, lane in engine.lanes.items():
        for layer, state in lane.state.items():
            tensors[f"{name}/{layer}"] = state.detach().cpu().contiguous()
        lanes[name] = {"memory": lane.memory, **lane.snapshot().to_record(),
                       "turns": [t.to_dict() for t in lane.turns]}
    blob = save_tensors(tensors)
    digest = hashlib.sha256(blob).hexdigest()
    memory = f"memory-{digest[:16]}.safetensors"
    data = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "identity": identity.to_dict(),
        "memory": {"file": memory, "sha256": digest},
        "policy": str(engine.policy),
        "batched": engine.batched,
        "system_prompt": engine.system_prompt,
        "turn_index": engine.turn_index,
        "lanes": lanes,
        "extra": extra or {},
    }
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    created = not folder.exists()
    previous = None if created else _named_memory(folder)
    try:
        atomic_write_bytes(folder / memory, blob)
        atomic_write_text(folder / SESSION_JSON, text)
    except SaveError:
        if memory != previous:
            (folder / memory).unlink(missing_ok=True)
        if created:
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    try:
        _remove_other_memory(folder, memory)
    except OSError:
        pass                                 # what is left is removed by the next save
    return folder


# ------------------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class SavedSession:
    """A session read and checked in full, not yet put into an engine."""

    policy: ContextPolicy
    turn_index: int
    lanes: dict[str, LaneSnapshot]
    extra: dict[str, Any]


class _Problem(Exception):
    """What is wrong with one field; the caller names the file."""


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _integer(value: object, field: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(f"{field} must be an integer (got {_describe(value)})")
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f"at least {low}"
        raise _Problem(f"{field} must be {bounds} (got {value})")
    return value


def _messages(value: object, field: str) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list):
        raise _Problem(f"{field} must be an array of messages (got {_describe(value)})")
    messages = []
    for index, message in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(message, dict):
            raise _Problem(f"{where} must be an object with a role and a content (got {_describe(message)})")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            shown = json.dumps(role, ensure_ascii=False)[:40] if "role" in message else "nothing"
            raise _Problem(f'{where} "role" must be one of {", ".join(ROLES)} (got {shown})')
        if not isinstance(content, str):
            raise _Problem(f'{where} "content" must be a string (got {_describe(content)})')
        messages.append({"role": role, "content": content})
    return tuple(messages)


def _lane(record: object, field: str, memory: bool, state: dict[str, Tensor], vocab: int | None) -> LaneSnapshot:
    """One lane's record, every field checked so that the next turn can run on it."""
    if not isinstance(record, dict):
        raise _Problem(f"{field} must be an object (got {_describe(record)})")
    if "memory" in record and record["memory"] is not memory:
        raise _Problem(f'{field} "memory" is {_describe(record["memory"])}, but this lane has its memory '
                       f"{'on' if memory else 'off'}")
    messages = _messages(record.get("messages"), f"{field}.messages")
    processed = record.get("processed")
    if not isinstance(processed, list):
        raise _Problem(f"{field}.processed must be an array of token ids (got {_describe(processed)})")
    for index, token in enumerate(processed):
        _integer(token, f"{field}.processed[{index}]", 0, None if vocab is None else vocab - 1)
    written = _integer(record.get("written_total"), f"{field}.written_total")
    read_upto = _integer(record.get("read_upto"), f"{field}.read_upto", 0, len(messages))
    window_start = record.get("window_start")
    if window_start is not None:
        window_start = _integer(window_start, f"{field}.window_start", 0, max(0, len(messages) - 1))
    if memory and written and not state:
        raise _Problem(f"{field}: {written:,} tokens were written into this lane's memory, but the memory file holds "
                       "no state for it")
    return LaneSnapshot(messages, tuple(processed), state, written, 0, read_upto, window_start)


def _states(engine: ABEngine, tensors: dict[str, Tensor], source: str) -> dict[str, dict[str, Tensor]]:
    """The memory states by lane and layer, each checked against the model: layer, shape, float type, finite."""
    model = engine.model
    config = model.config
    layers = list(model.layer_names)
    shape = (1, config.rank, config.rank) if config.num_state_heads == 1 else (
        1, config.num_state_heads, config.rank, config.rank)
    by_lane: dict[str, dict[str, Tensor]] = {name: {} for name in engine.lanes}
    for key, tensor in tensors.items():
        lane, _, layer = key.partition("/")
        if lane not in engine.lanes:
            raise SessionError(f"{source}: state {key!r} is for a lane this app does not have")
        if not engine.lanes[lane].memory:
            raise SessionError(f"{source}: state {key!r} is for the {lane} lane, whose memory is off")
        if layer not in layers:
            raise SessionError(f"{source}: state {key!r} is for a layer this model does not have")
        if tuple(tensor.shape) != shape:
            raise SessionError(f"{source}: state {key!r} has shape {list(tensor.shape)}, this model's is {list(shape)}")
        if not tensor.is_floating_point():
            raise SessionError(f"{source}: state {key!r} holds {str(tensor.dtype).removeprefix('torch.')} numbers, "
                               "not floating-point ones")
        if not bool(torch.isfinite(tensor).all()):
            raise SessionError(f"{source}: state {key!r} holds NaN or infinite values: the memory is damaged")
        by_lane[lane][layer] = tensor.to(torch.float32)
    for lane, states in by_lane.items():
        if states and len(states) != len(layers):
            missing = next(layer for layer in layers if layer not in states)
            raise SessionError(f"{source}: the {lane} lane's memory has no state for layer {missing!r} "
                               f"({len(layers) - len(states)} of {len(layers)} missing)")
    return by_lane


def _memory_blob(folder: Path, path: Path, data: dict[str, Any], version: int) -> tuple[Path, bytes]:
    """The memory file's bytes, checked against the hash `session.json` gives (version 2)."""
    if version == 1:
        file = folder / MEMORY_FILE
        digest = None
    else:
        memory = data.get("memory")
        name = memory.get("file") if isinstance(memory, dict) else None
        digest = memory.get("sha256") if isinstance(memory, dict) else None
        if not (isinstance(name, str) and isinstance(digest, str) and _MEMORY_NAME.fullmatch(name)
                and _SHA256.fullmatch(digest) and name[7:23] == digest[:16]):
            raise SessionError(f'{path}: "memory" must name the memory file and its SHA-256 hash '
                               '({"file": "memory-<hash>.safetensors", "sha256": "<hash>"})')
        file = folder / name
    try:
        blob = file.read_bytes()
    except FileNotFoundError:
        raise SessionError(f"{file}: missing, so the session is incomplete (its session.json names it)") from None
    except OSError as exc:
        raise SessionError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    if digest is not None and hashlib.sha256(blob).hexdigest() != digest:
        raise SessionError(f"{file}: its content does not match the hash {path.name} gives, so the two files are not "
                           "one save (the memory file was changed or damaged); load another session")
    return file, blob


def read_session(engine: ABEngine, folder: str | Path, identity: SessionIdentity) -> SavedSession:
    """Read and check a saved session for `engine`, changing nothing; `SessionError` names the file and field."""
    folder = Path(folder)
    path = folder / SESSION_JSON
    data = read_json(path, SessionError, "no saved session here")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SessionError(f"{path}: not a deltamem-chat session file")
    version = data.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise SessionError(f"{path}: session format version {json.dumps(version)[:20]} (this app reads versions "
                           f"{' and '.join(map(str, READABLE_VERSIONS))})")
    saved = data.get("identity")
    if not isinstance(saved, dict):
        raise SessionError(f'{path}: "identity" must be an object naming the base model and the adapter')
    for key in ("base", "adapter"):
        if saved.get(key) != getattr(identity, key):
            raise SessionError(f"{path}: this session was made with {key} {saved.get(key)!r}, "
                               f"but the app is running {getattr(identity, key)!r}")
    lanes = data.get("lanes")
    if not isinstance(lanes, dict) or set(lanes) != set(engine.lanes):
        shown = sorted(lanes) if isinstance(lanes, dict) else _describe(lanes)
        raise SessionError(f"{path}: lanes {shown} do not match this app's {sorted(engine.lanes)}")
    try:
        policy = ContextPolicy.parse(data.get("policy")) if isinstance(data.get("policy"), str) else None
    except PolicyError as exc:
        raise SessionError(f'{path}: "policy": {exc}') from None
    if policy is None:
        raise SessionError(f'{path}: "policy" must be "full" or "window:N" (got {_describe(data.get("policy"))})')
    extra = data.get("extra") or {}
    if not isinstance(extra, dict):
        raise SessionError(f'{path}: "extra" must be an object (got {_describe(extra)})')
    try:
        turn_index = _integer(data.get("turn_index", 0), "turn_index")
    except _Problem as problem:
        raise SessionError(f"{path}: {problem}") from None
    file, blob = _memory_blob(folder, path, data, version)
    try:
        tensors = load_tensors(blob)
    except Exception as exc:  # noqa: BLE001 - safetensors fails on damaged bytes in more ways than one
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "damaged"
        raise SessionError(f"{file}: cannot read the memory states ({first})") from None
    states = _states(engine, tensors, str(file))
    vocab = getattr(getattr(engine.model.backbone, "config", None), "vocab_size", None)
    restored = {}
    try:
        for name, record in lanes.items():
            restored[name] = _lane(record, f"lanes.{name}", engine.lanes[name].memory, states[name],
                                   vocab if isinstance(vocab, int) else None)
    except _Problem as problem:
        raise SessionError(f"{path}: {problem}") from None
    return SavedSession(policy, turn_index, restored, dict(extra))


def load_session(engine: ABEngine, folder: str | Path, identity: SessionIdentity) -> dict[str, Any]:
    """Replace the engine's lanes with a saved session; returns the session's `extra` data.

    Everything is read and checked first (`read_session`): a session that cannot be loaded raises `SessionError`
    and leaves the engine's conversation, memory and settings exactly as they were.
    """
    saved = read_session(engine, folder, identity)
    engine.reset()
    engine.set_policy(saved.policy)
    engine.turn_index = saved.turn_index
    for name, snapshot in saved.lanes.items():
        engine.lanes[name].restore(snapshot)
    return saved.extra
