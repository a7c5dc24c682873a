"""Tool traffic in chat exports, folded into text, because a transcript only has system, user and assistant turns.

An assistant's tool call becomes a line `[tool call] name(arguments)` of that assistant message. A tool result
becomes `[tool result] text` (`[tool result] name: text` when the export names the tool) at the start of the next
assistant message, or its own assistant message when a user or system turn, or the end, comes first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal

from deltamem.files import JSONLimitError, parse_json
from deltamem_chat.transcripts.model import Message, Role

TurnRole = Role | Literal["tool"]
"""A turn's role before folding; "tool" marks a tool result."""

Turn = tuple[TurnRole, str]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _arguments(value: object) -> str:
    """Arguments as the export wrote them: JSON text stays as it is, a decoded object is written back as JSON."""
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else _json(value)


def call_line(call: object) -> str:
    """One tool call, OpenAI-style ({"function": {"name", "arguments"}}) or bare ({"name", "arguments"})."""
    body = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else call
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip():
        return f"[tool call] {call.strip() if isinstance(call, str) else _json(call)}"
    arguments = body.get("arguments", body.get("parameters"))
    return f"[tool call] {name.strip()}({_arguments(arguments)})"


def call_lines(calls: object) -> list[str]:
    """A list of tool calls (or a single one) as `[tool call]` lines, in order."""
    return [call_line(call) for call in (calls if isinstance(calls, list) else [calls])]


def call_lines_from_text(text: str) -> list[str]:
    """A tool call written as JSON text (ShareGPT's function_call turn); text that is not JSON is kept as it is."""
    try:
        decoded = parse_json(text)
    except (json.JSONDecodeError, JSONLimitError):
        return [call_line(text)]
    return call_lines(decoded) if isinstance(decoded, dict | list) else [call_line(text)]


def result_text(text: str, name: str | None = None) -> str:
    """A tool's output as it is folded into the transcript."""
    return f"[tool result] {name}: {text}" if name else f"[tool result] {text}"


def fold(turns: Iterable[Turn], session: int | None) -> list[Message]:
    """Turn (role, text) pairs into messages, folding tool results forward; empty turns are skipped."""
    messages: list[Message] = []
    pending: list[str] = []
    for role, text in turns:
        if not text.strip():
            continue
        if role == "tool":
            pending.append(text)
            continue
        if pending and role == "assistant":
            text = "\n".join([*pending, text])
        elif pending:
            messages.append(Message("assistant", "\n".join(pending), session=session))
        pending = []
        messages.append(Message(role, text, session=session))
    if pending:
        messages.append(Message("assistant", "\n".join(pending), session=session))
    return messages
