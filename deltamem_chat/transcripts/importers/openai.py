"""OpenAI chat messages: {"messages": [...]}, a list of messages, or JSONL of either."""

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
from deltamem_chat.transcripts.importers.tools import Turn, TurnRole, call_lines, fold, result_text
from deltamem_chat.transcripts.model import Item, Transcript, TranscriptMeta

_ROLES: dict[str, TurnRole] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}
"""OpenAI roles (and Llama's ipython) and what they become; "tool" results are folded into assistant text."""


def _content(path: Path, value: object, where: str) -> str:
    """Plain text of a message: a string, or the text parts of a list of parts (images are dropped)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [part["text"] for part in value if isinstance(part, dict) and isinstance(part.get("text"), str)]
        return "\n".join(texts)
    raise ImportFormatError(path, f'{where} "content" should be a string or a list of content parts')


def _tool_names(message: dict[str, object]) -> dict[str, str]:
    """Tool names by call id, so a later tool result can say which tool it comes from."""
    calls = message.get("tool_calls")
    names: dict[str, str] = {}
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(call.get("id"), str) and isinstance(function.get("name"), str):
            names[call["id"]] = function["name"]
    return names


def _turn(path: Path, message: dict[str, object], where: str, names: dict[str, str]) -> Turn:
    """One message as a (role, text) pair, with tool calls and tool results written out as text."""
    raw_role = as_text(path, message.get("role"), f'{where} "role"')
    if raw_role not in _ROLES:
        raise ImportFormatError(path, f'{where} has unknown "role" {raw_role!r}')
    role = _ROLES[raw_role]
    content = _content(path, message.get("content"), where)
    if role == "tool":
        name = message.get("name")
        name = name if isinstance(name, str) else names.get(str(message.get("tool_call_id")))
        return role, result_text(content, name) if content.strip() else ""
    calls = [line for key in ("tool_calls", "function_call") if message.get(key) for line in call_lines(message[key])]
    return role, "\n".join(part for part in [content, *calls] if part.strip())


def _turns(path: Path, conversation: list[object], number: int | None) -> list[Turn]:
    names: dict[str, str] = {}
    turns: list[Turn] = []
    for index, raw in enumerate(conversation, start=1):
        where = f"conversation {number}, message {index}" if number else f"message {index}"
        message = as_object(path, raw, where)
        names.update(_tool_names(message))
        turns.append(_turn(path, message, where, names))
    return turns


def import_openai(path: str | os.PathLike[str]) -> Transcript:
    """Import OpenAI-style messages: {"messages": [...]}, a list of messages, or JSONL of either.

    Several conversations (JSONL lines or a list of {"messages": ...}) are joined as sessions 1, 2, ….
    Tool calls and tool results are kept as text (see `importers.tools`).
    """
    path = Path(path)
    records = load_records(path)
    if records and all(isinstance(r, dict) and "messages" in r for r in records):
        conversations = [as_list(path, r["messages"], f'conversation {i} "messages"') for i, r in enumerate(records, 1)]
    elif all(isinstance(r, dict) and "messages" not in r for r in records):
        conversations = [records]
    else:
        raise ImportFormatError(path, 'expected messages or {"messages": [...]} objects, not a mix or other values')
    items: list[Item] = []
    for number, conversation in enumerate(conversations, start=1):
        session = number if len(conversations) > 1 else None
        items.extend(fold(_turns(path, conversation, session), session))
    meta = TranscriptMeta(title=path.stem, source=f"OpenAI messages ({path.name})")
    return finish(path, meta, items)
