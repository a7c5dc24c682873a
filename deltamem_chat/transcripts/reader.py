"""Read and validate `transcript.jsonl` files.

Every problem becomes a `TranscriptError` naming the file and the 1-based line, so a user can open the
file at that line and fix it. `load_transcript` validates the whole file before anything runs on it;
`iter_transcript_items` streams huge files line by line and raises when it reaches a bad line.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from deltamem.context import ContextPolicy, PolicyError
from deltamem.files import JSONLimitError, parse_json
from deltamem.rendering import ROLES
from deltamem_chat.scoring.normalize import normalize_answer
from deltamem_chat.transcripts.errors import FileError
from deltamem_chat.transcripts.model import (
    Message,
    Probe,
    Role,
    Transcript,
    TranscriptMeta,
)

ITEM_TYPES = ("meta", "message", "probe")
ROLE_ALIASES: dict[str, Role] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
}
"""Accepted role spellings (lower-cased) and the role each one means."""

ROLE_KEYS = ("role", "from", "speaker")
CONTENT_KEYS = ("content", "text", "message", "value")


class TranscriptError(FileError):
    """A transcript cannot be used; `line` is 1-based, or None when the problem is the file as a whole."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        super().__init__(path, message, line)


class LineProblem(Exception):
    """What is wrong with one record; the caller adds the file and line to make a `TranscriptError`."""


def _describe(value: object) -> str:
    """Name a JSON value's type the way a user editing the file thinks of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


QUOTE_LIMIT = 80
"""The longest value an error message quotes in full; a longer one is cut short with "…"."""


def _quote(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"


def limit_problem(error: JSONLimitError) -> str:
    """A `JSONLimitError` as a reader's message: the field (quoted, as the other messages quote keys) and what it
    holds."""
    return f"{_quote(error.where)} holds {error.problem}" if error.where else f"the line holds {error.problem}"


def _pick(record: dict[str, object], keys: tuple[str, ...]) -> tuple[str, object] | None:
    """Return the one key of `keys` present in `record` with its value; two spellings at once is ambiguous."""
    present = [key for key in keys if key in record]
    if len(present) > 1:
        raise LineProblem(f"{_quote(present[0])} and {_quote(present[1])} both given; keep only one")
    return (present[0], record[present[0]]) if present else None


def _optional_str(record: dict[str, object], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise LineProblem(f"{_quote(key)} must be a string (got {_describe(value)})")
    return value


def _required_text(record: dict[str, object], key: str, what: str) -> str:
    if key not in record:
        raise LineProblem(f"missing {_quote(key)} ({what})")
    value = record[key]
    if not isinstance(value, str):
        raise LineProblem(f"{_quote(key)} must be a string (got {_describe(value)})")
    if not value.strip():
        raise LineProblem(f"{_quote(key)} is empty")
    return value


def _answer_text(value: str, key: str) -> str:
    """An expected answer must keep a word after normalisation, or every reply would count as a hit."""
    if not normalize_answer(value):
        raise LineProblem(f"{_quote(key)} {_quote(value)} has no words left once articles and punctuation go")
    return value


def parse_context(value: object) -> ContextPolicy:
    """Accept "full", "window:1024" or {"policy": "window", "tokens": 1024} for the suggested context."""
    if isinstance(value, dict):
        policy, tokens = value.get("policy"), value.get("tokens")
        if policy == "full" and set(value) <= {"policy"}:
            return ContextPolicy()
        if policy == "window" and set(value) == {"policy", "tokens"}:
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
                raise LineProblem(f'"context" window "tokens" must be a positive integer (got {_quote(tokens)})')
            return ContextPolicy(tokens)
    elif isinstance(value, str) and value.strip().startswith(("full", "window")):
        with contextlib.suppress(PolicyError):
            return ContextPolicy.parse(value)
    raise LineProblem(
        f'"context" must be "full", "window:N" or {{"policy": "window", "tokens": N}} (got {_quote(value)})'
    )


class LineValidator:
    """Checks records one at a time, remembering what it needs (message count, probe ids) across lines."""

    def __init__(self) -> None:
        self.messages = 0
        self.records = 0
        self.probe_ids: dict[str, int] = {}

    def parse(self, record: object, line: int) -> TranscriptMeta | Message | Probe:
        """Turn one decoded JSON value into a model object, or raise `LineProblem`."""
        if not isinstance(record, dict):
            raise LineProblem(f"expected a JSON object, got {_describe(record)}")
        kind = record.get("type", "message")
        if kind not in ITEM_TYPES:
            raise LineProblem(f'"type" must be one of {", ".join(ITEM_TYPES)} (got {_quote(kind)})')
        first = self.records == 0
        self.records += 1
        if kind == "meta":
            if not first:
                raise LineProblem('the "meta" line must be the first line of the file (and only one is allowed)')
            return self._meta(record)
        if kind == "probe":
            return self._probe(record, line)
        return self._message(record)

    def finish(self) -> None:
        """Raise if the file as a whole is unusable once every line has passed."""
        if self.messages == 0:
            raise LineProblem("no messages: a transcript needs at least one message line")

    def _meta(self, record: dict[str, object]) -> TranscriptMeta:
        licence = _optional_str(record, "licence")
        license_ = _optional_str(record, "license")
        if licence is not None and license_ is not None and licence != license_:
            raise LineProblem('"licence" and "license" disagree; keep only one')
        context = record.get("context")
        return TranscriptMeta(
            title=_optional_str(record, "title"),
            source=_optional_str(record, "source"),
            licence=licence if licence is not None else license_,
            description=_optional_str(record, "description"),
            context=None if context is None else parse_context(context),
        )

    def _message(self, record: dict[str, object]) -> Message:
        role_field = _pick(record, ROLE_KEYS)
        if role_field is None:
            hint = '; a probe line needs "type": "probe"' if "question" in record else ""
            raise LineProblem(f'missing "role" (one of {", ".join(ROLES)}){hint}')
        role_key, raw_role = role_field
        if not isinstance(raw_role, str):
            raise LineProblem(f"{_quote(role_key)} must be a string (got {_describe(raw_role)})")
        role = ROLE_ALIASES.get(raw_role.strip().lower())
        if role is None:
            raise LineProblem(f"{_quote(role_key)} must be one of {', '.join(ROLES)} (got {_quote(raw_role)})")
        content_field = _pick(record, CONTENT_KEYS)
        if content_field is None:
            raise LineProblem('missing "content" (the message text)')
        content_key, content = content_field
        if not isinstance(content, str):
            raise LineProblem(f"{_quote(content_key)} must be a string (got {_describe(content)})")
        if not content.strip():
            raise LineProblem(f"{_quote(content_key)} is empty")
        session = record.get("session")
        if session is not None and (isinstance(session, bool) or not isinstance(session, int | str)):
            raise LineProblem(f'"session" must be an integer or a string (got {_describe(session)})')
        self.messages += 1
        return Message(role=role, content=content, session=session, time=_optional_str(record, "time"),
                       document=_optional_str(record, "document"))

    def _probe(self, record: dict[str, object], line: int) -> Probe:
        if self.messages == 0:
            raise LineProblem("a probe must come after at least one message")
        question = _required_text(record, "question", "what to ask")
        abstain = record.get("abstain", False)
        if not isinstance(abstain, bool):
            raise LineProblem(f'"abstain" must be true or false (got {_describe(abstain)})')
        if abstain:
            answer = _optional_str(record, "answer") or ""
        else:
            answer = _answer_text(_required_text(record, "answer", "the expected answer"), "answer")
        aliases = record.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise LineProblem(f'"aliases" must be a list of non-empty strings (got {_quote(aliases)})')
        for alias in aliases:
            _answer_text(alias, "aliases")
        depends_on = record.get("depends_on")
        if depends_on is not None:
            if isinstance(depends_on, bool) or not isinstance(depends_on, int):
                raise LineProblem(f'"depends_on" must be a message index (got {_describe(depends_on)})')
            if not 0 <= depends_on < self.messages:
                raise LineProblem(
                    f'"depends_on" must be the 0-based index of an earlier message, 0..{self.messages - 1} '
                    f"here (got {_quote(depends_on)})"
                )
        probe_id = record.get("id")
        if probe_id is not None:
            if isinstance(probe_id, bool) or not isinstance(probe_id, int | str):
                raise LineProblem(f'"id" must be a string or an integer (got {_describe(probe_id)})')
            probe_id = str(probe_id)
            if probe_id in self.probe_ids:
                raise LineProblem(f'probe "id" {_quote(probe_id)} is already used on line {self.probe_ids[probe_id]}')
            self.probe_ids[probe_id] = line
        category = record.get("category")
        if category is not None and (isinstance(category, bool) or not isinstance(category, int | str)):
            raise LineProblem(f'"category" must be an integer or a string (got {_describe(category)})')
        return Probe(question, answer, tuple(aliases), depends_on, probe_id, category=category, abstain=abstain,
                     distractor=_optional_str(record, "distractor"), date=_optional_str(record, "date"))


def iter_transcript_items(path: str | os.PathLike[str]) -> Iterator[TranscriptMeta | Message | Probe]:
    """Yield the meta (if any, always first), then messages and probes, reading one line at a time.

    Lines are read as bytes and decoded one by one so that a bad UTF-8 byte is reported on its own line.
    """
    path = Path(path)
    validator = LineValidator()
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise TranscriptError(path, None, "no such file") from None
    except IsADirectoryError:
        raise TranscriptError(path, None, "is a directory, not a transcript file") from None
    except OSError as error:
        raise TranscriptError(path, None, f"cannot be opened ({error.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise TranscriptError(path, number, f"not UTF-8 text (bad byte at column {error.start + 1})") from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                record = parse_json(text)
            except json.JSONDecodeError as error:
                raise TranscriptError(path, number, f"invalid JSON: {error.msg} (column {error.colno})") from None
            except JSONLimitError as error:
                raise TranscriptError(path, number, limit_problem(error)) from None
            try:
                item = validator.parse(record, number)
            except LineProblem as problem:
                raise TranscriptError(path, number, str(problem)) from None
            yield item
    try:
        validator.finish()
    except LineProblem as problem:
        raise TranscriptError(path, None, str(problem)) from None


def load_transcript(path: str | os.PathLike[str]) -> Transcript:
    """Validate the whole file, then return it: nothing should run on a transcript broken further down."""
    meta = TranscriptMeta()
    items: list[Message | Probe] = []
    for item in iter_transcript_items(path):
        if isinstance(item, TranscriptMeta):
            meta = item
        else:
            items.append(item)
    return Transcript(path=Path(path), meta=meta, items=items)
