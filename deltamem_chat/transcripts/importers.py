"""Turn common chat and memory-benchmark files into transcripts.

Each importer reads one file and returns a `Transcript`; `write_transcript` then validates and saves it.
Problems with the input become an `ImportFormatError` that says where in the input the problem is.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from pathlib import Path

from deltamem_chat.transcripts.model import Message, Probe, Role, Transcript, TranscriptMeta

LOCOMO_CATEGORIES = (1, 2, 3, 4)
"""LoCoMo QA categories that have an answer; category 5 is adversarial and only has a wrong one."""

_OPENAI_ROLES: dict[str, Role | None] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": None,
    "function": None,
}
"""OpenAI roles; tool results (None) are skipped because they are not chat text a person would recall."""

_SHAREGPT_ROLES: dict[str, Role] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
}
_DIA_ID = re.compile(r"D\d+:\d+")
_LOCOMO_SESSION = re.compile(r"session_(\d+)")


class ImportFormatError(ValueError):
    """An input file does not have the shape its format promises; `line` is set for JSON syntax errors."""

    def __init__(self, path: str | os.PathLike[str], message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


def _load_records(path: Path) -> list[object]:
    """Read a JSON file or a JSONL file; a JSON array gives its elements, anything else one record."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImportFormatError(path, "no such file") from None
    except UnicodeDecodeError:
        raise ImportFormatError(path, "not UTF-8 text") from None
    except OSError as error:
        raise ImportFormatError(path, f"cannot be read ({error.strerror})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg != "Extra data":
            raise ImportFormatError(path, f"invalid JSON: {error.msg} (column {error.colno})", error.lineno) from None
        return _load_json_lines(path, text)
    return value if isinstance(value, list) else [value]


def _load_json_lines(path: Path, text: str) -> list[object]:
    """Parse one JSON value per non-blank line (JSONL)."""
    records: list[object] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ImportFormatError(path, f"invalid JSON: {error.msg} (column {error.colno})", number) from None
    return records


def _object(path: Path, value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ImportFormatError(path, f"{where} should be a JSON object")
    return value


def _list(path: Path, value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise ImportFormatError(path, f"{where} should be a JSON array")
    return value


def _text(path: Path, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ImportFormatError(path, f"{where} should be a string")
    return value


def _select(path: Path, records: list[object], key: str, wanted: str | int | None, noun: str) -> dict[str, object]:
    """Pick a record by its id (`key`) or, failing that, by a 0-based index; the first one by default."""
    if not records:
        raise ImportFormatError(path, f"holds no {noun}s")
    if wanted is None:
        index = 0
    else:
        for record in records:
            if isinstance(record, dict) and str(record.get(key)) == str(wanted):
                return record
        if not str(wanted).isdigit():
            ids = [str(r.get(key)) for r in records[:5] if isinstance(r, dict)]
            listing = ", ".join(ids) + (", …" if len(records) > 5 else "")
            raise ImportFormatError(path, f"no {noun} has {key} {str(wanted)!r} (the file has: {listing})")
        index = int(wanted)
        if index >= len(records):
            raise ImportFormatError(
                path,
                f"{noun} {index} is out of range (the file has {len(records)}: 0..{len(records) - 1})",
            )
    return _object(path, records[index], f"{noun} {index}")


def _transcript(path: Path, meta: TranscriptMeta, items: list[Message | Probe]) -> Transcript:
    """Refuse an input with no conversation in it, naming the input rather than the file we would write."""
    if not any(isinstance(item, Message) and item.role != "system" for item in items):
        raise ImportFormatError(path, "contains no user or assistant messages with text")
    return Transcript(path=path, meta=meta, items=items)


def _openai_content(path: Path, value: object, where: str) -> str:
    """Plain text of a message: a string, or the text parts of a list of parts (images are dropped)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [part["text"] for part in value if isinstance(part, dict) and isinstance(part.get("text"), str)]
        return "\n".join(texts)
    raise ImportFormatError(path, f'{where} "content" should be a string or a list of content parts')


def import_openai(path: str | os.PathLike[str]) -> Transcript:
    """Import OpenAI-style messages: {"messages": [...]}, a list of messages, or JSONL of either.

    Several conversations (JSONL lines or a list of {"messages": ...}) are joined as sessions 1, 2, ….
    Messages without text (tool calls) and tool results are skipped.
    """
    path = Path(path)
    records = _load_records(path)
    if records and all(isinstance(r, dict) and "messages" in r for r in records):
        conversations = [_list(path, r["messages"], f'conversation {i + 1} "messages"') for i, r in enumerate(records)]
    elif all(isinstance(r, dict) and "messages" not in r for r in records):
        conversations = [records]
    else:
        raise ImportFormatError(path, 'expected messages or {"messages": [...]} objects, not a mix or other values')
    items: list[Message | Probe] = []
    for number, conversation in enumerate(conversations, start=1):
        session = number if len(conversations) > 1 else None
        for index, raw in enumerate(conversation, start=1):
            where = f"conversation {number}, message {index}" if session else f"message {index}"
            message = _object(path, raw, where)
            raw_role = _text(path, message.get("role"), f'{where} "role"')
            if raw_role not in _OPENAI_ROLES:
                raise ImportFormatError(path, f'{where} has unknown "role" {raw_role!r}')
            role = _OPENAI_ROLES[raw_role]
            content = _openai_content(path, message.get("content"), where)
            if role is not None and content.strip():
                items.append(Message(role=role, content=content, session=session))
    meta = TranscriptMeta(title=path.stem, source=f"OpenAI messages ({path.name})")
    return _transcript(path, meta, items)


def import_sharegpt(path: str | os.PathLike[str]) -> Transcript:
    """Import ShareGPT {"conversations": [{"from", "value"}]} objects; several become sessions 1, 2, …."""
    path = Path(path)
    records = _load_records(path)
    items: list[Message | Probe] = []
    for number, raw in enumerate(records, start=1):
        record = _object(path, raw, f"conversation {number}")
        if "conversations" not in record:
            raise ImportFormatError(path, f'conversation {number} has no "conversations" list')
        session = number if len(records) > 1 else None
        for index, raw_turn in enumerate(_list(path, record["conversations"], f"conversation {number}"), start=1):
            where = f"conversation {number}, turn {index}"
            turn = _object(path, raw_turn, where)
            speaker = _text(path, turn.get("from"), f'{where} "from"')
            role = _SHAREGPT_ROLES.get(speaker.lower())
            if role is None:
                raise ImportFormatError(path, f'{where} has unknown "from" {speaker!r} (expected human, gpt or system)')
            value = _text(path, turn.get("value"), f'{where} "value"')
            if value.strip():
                items.append(Message(role=role, content=value, session=session))
    meta = TranscriptMeta(title=path.stem, source=f"ShareGPT ({path.name})")
    return _transcript(path, meta, items)


def import_locomo(
    path: str | os.PathLike[str],
    sample: str | int | None = None,
    categories: Collection[int] = LOCOMO_CATEGORIES,
) -> Transcript:
    """Import one LoCoMo sample (by index or `sample_id`; the first by default) with its QA as probes.

    LoCoMo talks are between two people, so every turn becomes a user message "Speaker: text", with the
    session number and date; a system line names the speakers. QA of the chosen categories become probes
    at the end, each depending on the message of its first evidence turn.
    """
    path = Path(path)
    unknown = sorted(set(categories) - set(LOCOMO_CATEGORIES))
    if unknown:
        raise ImportFormatError(path, f"LoCoMo categories must be among 1-4, not {unknown} (5 has no answer)")
    record = _select(path, _load_records(path), "sample_id", sample, "sample")
    sample_id = str(record.get("sample_id", sample if sample is not None else 0))
    conversation = _object(path, record.get("conversation"), f'sample {sample_id} "conversation"')
    speaker_a = _text(path, conversation.get("speaker_a"), '"speaker_a"')
    speaker_b = _text(path, conversation.get("speaker_b"), '"speaker_b"')
    sessions = sorted(
        (int(match[1]), key)
        for key in conversation
        if (match := _LOCOMO_SESSION.fullmatch(key)) and isinstance(conversation[key], list)
    )
    items: list[Message | Probe] = [
        Message(
            "system",
            f"A conversation between {speaker_a} and {speaker_b}; each message is one turn, "
            "prefixed with its speaker's name.",
        )
    ]
    message_of_dia: dict[str, int] = {}
    for number, key in sessions:
        date = conversation.get(f"{key}_date_time")
        time = _text(path, date, f'"{key}_date_time"') if date is not None else None
        for index, raw_turn in enumerate(_list(path, conversation[key], f'"{key}"'), start=1):
            where = f"{key} turn {index}"
            turn = _object(path, raw_turn, where)
            speaker = _text(path, turn.get("speaker"), f'{where} "speaker"')
            text = _text(path, turn.get("text", ""), f'{where} "text"').strip()
            caption = turn.get("blip_caption")
            if isinstance(caption, str) and caption.strip():
                text = f"{text} [shares {caption.strip()}]".strip()
            if not text:
                continue
            if isinstance(turn.get("dia_id"), str):
                message_of_dia[turn["dia_id"]] = len(items)
            items.append(Message("user", f"{speaker}: {text}", session=number, time=time))
    for index, raw_qa in enumerate(_list(path, record.get("qa", []), '"qa"')):
        where = f"qa {index}"
        qa = _object(path, raw_qa, where)
        if qa.get("category") not in categories:
            continue
        if "answer" not in qa:
            raise ImportFormatError(path, f'{where} has no "answer"')
        evidence = qa.get("evidence")
        first = evidence[0] if isinstance(evidence, list) and evidence and isinstance(evidence[0], str) else ""
        found = _DIA_ID.search(first)
        probe = Probe(
            question=_text(path, qa.get("question"), f'{where} "question"'),
            answer=str(qa["answer"]).strip(),
            depends_on=message_of_dia.get(found[0]) if found else None,
            id=f"{sample_id}-qa{index}",
        )
        items.append(probe)
    meta = TranscriptMeta(
        title=f"LoCoMo {sample_id}: {speaker_a} and {speaker_b}",
        source=f"LoCoMo ({path.name})",
        description=f"{len(sessions)} sessions; QA categories {', '.join(map(str, sorted(categories)))}.",
    )
    return _transcript(path, meta, items)


def import_longmemeval(path: str | os.PathLike[str], instance: str | int | None = None) -> Transcript:
    """Import one LongMemEval instance (by index or `question_id`; the first by default).

    Haystack sessions become messages numbered as sessions 1, 2, … dated from `haystack_dates`; the
    question becomes one probe at the end, depending on the first evidence turn (`has_answer`) or else
    the first turn of the first answer session.
    """
    path = Path(path)
    record = _select(path, _load_records(path), "question_id", instance, "instance")
    question_id = str(record.get("question_id", instance if instance is not None else 0))
    sessions = _list(path, record.get("haystack_sessions"), '"haystack_sessions"')
    dates = _list(path, record.get("haystack_dates", [None] * len(sessions)), '"haystack_dates"')
    if len(dates) != len(sessions):
        raise ImportFormatError(path, f'"haystack_dates" has {len(dates)} dates for {len(sessions)} sessions')
    session_ids = record.get("haystack_session_ids")
    answer_ids = record.get("answer_session_ids")
    items: list[Message | Probe] = []
    evidence: int | None = None
    first_of_answer_session: int | None = None
    for number, (raw_session, date) in enumerate(zip(sessions, dates, strict=True), start=1):
        time = _text(path, date, f"date of session {number}") if date is not None else None
        is_answer_session = (
            isinstance(session_ids, list)
            and isinstance(answer_ids, list)
            and number <= len(session_ids)
            and session_ids[number - 1] in answer_ids
        )
        for index, raw_turn in enumerate(_list(path, raw_session, f"session {number}"), start=1):
            where = f"session {number}, turn {index}"
            turn = _object(path, raw_turn, where)
            role = _text(path, turn.get("role"), f'{where} "role"')
            if role not in ("user", "assistant"):
                raise ImportFormatError(path, f'{where} has unknown "role" {role!r} (expected user or assistant)')
            content = _text(path, turn.get("content"), f'{where} "content"')
            if not content.strip():
                continue
            if turn.get("has_answer") is True and evidence is None:
                evidence = len(items)
            if is_answer_session and first_of_answer_session is None:
                first_of_answer_session = len(items)
            items.append(Message(role, content, session=number, time=time))
    if "answer" not in record:
        raise ImportFormatError(path, f'instance {question_id} has no "answer"')
    items.append(
        Probe(
            question=_text(path, record.get("question"), '"question"'),
            answer=str(record["answer"]).strip(),
            depends_on=evidence if evidence is not None else first_of_answer_session,
            id=question_id,
        )
    )
    details: list[str] = []
    if isinstance(record.get("question_type"), str):
        details.append(f"question type {record['question_type']}")
    if isinstance(record.get("question_date"), str):
        details.append(f"asked on {record['question_date']}")
    meta = TranscriptMeta(
        title=f"LongMemEval {question_id}",
        source=f"LongMemEval ({path.name})",
        description="; ".join(details) or None,
    )
    return _transcript(path, meta, items)
