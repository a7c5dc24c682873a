"""LongMemEval: longmemeval_s/m/oracle.json, a list of instances (or one instance, or JSONL of them).

Each instance is a haystack of chat sessions and one question about them. The sessions are replayed in date
order (longmemeval_oracle.json does not list them sorted) and the question comes after the last one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from deltamem_chat.transcripts.importers.common import (
    ImportFormatError,
    answer_text,
    as_list,
    as_object,
    as_text,
    chosen,
    finish,
    keyed,
    load_records,
    name_text,
    optional_text,
)
from deltamem_chat.transcripts.model import Item, Message, Probe, Transcript, TranscriptMeta

KNOWLEDGE_UPDATE = "knowledge-update"
"""The question type whose answer is the newest of several values the user gave over time."""

_DATE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})\s*(?:\(\w+\))?\s*(?:(\d{1,2}):(\d{2}))?")
"""LongMemEval's dates, e.g. "2023/05/20 (Sat) 02:21"."""

Mark = tuple[int, int]
"""(session number, message index) of a turn that may hold the answer."""


def date_key(value: object) -> tuple[int, ...] | None:
    """A sortable form of a LongMemEval date, or None when the date is missing or not in that format."""
    match = _DATE.fullmatch(value.strip()) if isinstance(value, str) else None
    return tuple(int(part or 0) for part in match.groups()) if match else None


def date_order(dates: Sequence[object]) -> list[int]:
    """Session indices in date order; equal dates keep file order, and undated sessions keep their places."""
    keys = [date_key(date) for date in dates]
    dated = iter(sorted((i for i, key in enumerate(keys) if key is not None), key=lambda i: keys[i]))
    return [next(dated) if key is not None else i for i, key in enumerate(keys)]


def _evidence(marks: list[Mark], newest: bool) -> int | None:
    """The first mark, or with `newest` the first mark of the latest session that has one (the current value)."""
    if not marks:
        return None
    session = marks[-1][0] if newest else marks[0][0]
    return next(index for number, index in marks if number == session)


def _session_turns(
    path: Path, turns: list[object], where: str, number: int, time: str | None
) -> list[tuple[Message, bool]]:
    """The session's turns that have text, each with whether it is marked `has_answer`."""
    kept = []
    for index, raw in enumerate(turns, start=1):
        turn = as_object(path, raw, f"{where}, turn {index}")
        role = as_text(path, turn.get("role"), f'{where}, turn {index} "role"')
        if role not in ("user", "assistant"):
            expected = "(expected user or assistant)"
            raise ImportFormatError(path, f'{where}, turn {index} has unknown "role" {role!r} {expected}')
        content = as_text(path, turn.get("content"), f'{where}, turn {index} "content"')
        if content.strip():
            kept.append((Message(role, content, session=number, time=time), turn.get("has_answer") is True))
    return kept


def _messages(path: Path, record: dict[str, object], name: str) -> tuple[list[Item], list[Mark], list[Mark]]:
    """The sessions in date order, with the turns marked `has_answer` and the first turns of answer sessions."""
    sessions = as_list(path, record.get("haystack_sessions"), f'instance {name} "haystack_sessions"')
    dates = as_list(path, record.get("haystack_dates", [None] * len(sessions)), f'instance {name} "haystack_dates"')
    if len(dates) != len(sessions):
        problem = f'"haystack_dates" has {len(dates)} dates for {len(sessions)} sessions'
        raise ImportFormatError(path, f"instance {name} {problem}")
    ids = record.get("haystack_session_ids") if isinstance(record.get("haystack_session_ids"), list) else []
    answer_ids = record.get("answer_session_ids") if isinstance(record.get("answer_session_ids"), list) else []
    items: list[Item] = []
    evidence: list[Mark] = []
    answer_starts: list[Mark] = []
    for number, original in enumerate(date_order(dates), start=1):
        where = f"instance {name}, haystack session {original + 1}"
        time = optional_text(path, dates[original], f"{where} date")
        turns = _session_turns(path, as_list(path, sessions[original], where), where, number, time)
        if turns and original < len(ids) and ids[original] in answer_ids:
            answer_starts.append((number, len(items)))
        for message, has_answer in turns:
            if has_answer:
                evidence.append((number, len(items)))
            items.append(message)
    return items, evidence, answer_starts


def _transcript(path: Path, record: dict[str, object], name: str) -> Transcript:
    items, evidence, answer_starts = _messages(path, record, name)
    if "answer" not in record:
        raise ImportFormatError(path, f'instance {name} has no "answer"')
    question_type = record.get("question_type") if isinstance(record.get("question_type"), str) else None
    date = optional_text(path, record.get("question_date"), f'instance {name} "question_date"')
    newest = question_type == KNOWLEDGE_UPDATE
    depends_on = _evidence(evidence, newest)
    items.append(
        Probe(
            question=as_text(path, record.get("question"), f'instance {name} "question"'),
            answer=answer_text(path, record["answer"], f'instance {name} "answer"'),
            depends_on=depends_on if depends_on is not None else _evidence(answer_starts, newest),
            id=name,
            category=question_type,
            abstain=name.endswith("_abs"),
            date=date,
        )
    )
    details = []
    if question_type:
        details.append(f"question type {question_type}")
    if date:
        details.append(f"asked on {date}")
    meta = TranscriptMeta(
        title=f"LongMemEval {name}",
        source=f"LongMemEval ({path.name})",
        description="; ".join(details) or None,
    )
    return finish(path, meta, items, f"instance {name}")


def _instances(path: Path) -> list[tuple[str, dict[str, object]]]:
    """(question_id, instance) pairs; an instance without an id is named by its index."""
    instances = []
    for index, raw in enumerate(load_records(path)):
        record = as_object(path, raw, f"instance {index}")
        instances.append((name_text(path, record.get("question_id", index), f'instance {index} "question_id"'), record))
    return instances


def read_longmemeval(path: str | os.PathLike[str], instance: str | int | None = None) -> dict[str, Transcript]:
    """Every instance of a LongMemEval file (or only `instance`, by `question_id` or index), keyed by question_id."""
    path = Path(path)
    instances = _instances(path)
    indices = chosen(path, [name for name, _ in instances], instance, "instance", "question_id")
    pairs = ((instances[i][0], _transcript(path, instances[i][1], instances[i][0])) for i in indices)
    return keyed(path, pairs, "instance", "question_id")


def import_longmemeval(path: str | os.PathLike[str], instance: str | int | None = None) -> Transcript:
    """One LongMemEval instance (by `question_id` or 0-based index; the first by default)."""
    (transcript,) = read_longmemeval(path, 0 if instance is None else instance).values()
    return transcript
