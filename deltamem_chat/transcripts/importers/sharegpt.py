"""ShareGPT: {"conversations": [{"from", "value"}]} objects, alone, in a list or as JSONL."""

from __future__ import annotations

import os
from pathlib import Path

from deltamem_chat.transcripts.importers.common import (
    ImportFormatError,
    as_list,
    as_object,
    as_text,
    finish,
    load_records,
)
from deltamem_chat.transcripts.importers.tools import (
    Turn,
    TurnRole,
    call_lines,
    call_lines_from_text,
    fold,
    result_text,
)
from deltamem_chat.transcripts.model import Item, Transcript, TranscriptMeta

_ROLES: dict[str, TurnRole] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
    "function_response": "tool",
    "tool_response": "tool",
    "ipython": "tool",
}
"""`from` values (lower-cased) and what they become; "tool" results are folded into assistant text."""

_CALLS = frozenset({"function_call", "tool_call"})
"""`from` values whose turn is an assistant's tool call, written as JSON (LLaMA-Factory's function_call)."""


def _turn(path: Path, turn: dict[str, object], where: str) -> Turn:
    """One turn as a (role, text) pair, with tool calls and results written out as text."""
    speaker = as_text(path, turn.get("from"), f'{where} "from"').lower()
    value = as_text(path, turn.get("value"), f'{where} "value"')
    if speaker in _CALLS:
        return "assistant", "\n".join(call_lines_from_text(value)) if value.strip() else ""
    role = _ROLES.get(speaker)
    if role is None:
        raise ImportFormatError(path, f'{where} has unknown "from" {turn["from"]!r} (expected human, gpt or system)')
    if role == "tool":
        name = turn.get("name") if isinstance(turn.get("name"), str) else None
        return role, result_text(value, name) if value.strip() else ""
    calls = call_lines(turn["tool_calls"]) if turn.get("tool_calls") else []
    return role, "\n".join(part for part in [value, *calls] if part.strip())


def _turns(path: Path, record: object, number: int) -> list[Turn]:
    conversation = as_object(path, record, f"conversation {number}")
    if "conversations" not in conversation:
        raise ImportFormatError(path, f'conversation {number} has no "conversations" list')
    turns = as_list(path, conversation["conversations"], f"conversation {number}")
    wheres = (f"conversation {number}, turn {index}" for index in range(1, len(turns) + 1))
    return [_turn(path, as_object(path, turn, where), where) for turn, where in zip(turns, wheres)]


def import_sharegpt(path: str | os.PathLike[str]) -> Transcript:
    """Import ShareGPT conversations; several become sessions 1, 2, …, and tool turns are kept as text."""
    path = Path(path)
    records = load_records(path)
    items: list[Item] = []
    for number, record in enumerate(records, start=1):
        session = number if len(records) > 1 else None
        items.extend(fold(_turns(path, record, number), session))
    meta = TranscriptMeta(title=path.stem, source=f"ShareGPT ({path.name})")
    return finish(path, meta, items)
