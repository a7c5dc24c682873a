"""Write transcripts back to JSONL, atomically, and only if the result would read back cleanly."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from deltamem.context import ContextPolicy
from deltamem.files import atomic_write_text, writable_target
from deltamem_chat.transcripts.model import Message, Probe, Transcript, TranscriptMeta
from deltamem_chat.transcripts.reader import LineProblem, LineValidator, TranscriptError


def _context_record(context: ContextPolicy) -> str | dict[str, object]:
    return "full" if context.is_full else {"policy": "window", "tokens": context.tokens}


def meta_record(meta: TranscriptMeta) -> dict[str, object] | None:
    """The meta line, or None when every field is empty (then the file has no meta line)."""
    fields = {
        "title": meta.title,
        "source": meta.source,
        "licence": meta.licence,
        "description": meta.description,
        "context": None if meta.context is None else _context_record(meta.context),
    }
    present = {key: value for key, value in fields.items() if value is not None}
    return {"type": "meta", **present} if present else None


def item_record(item: Message | Probe) -> dict[str, object]:
    """One message or probe as the JSON object its line holds, leaving out unset optional fields."""
    if isinstance(item, Message):
        record: dict[str, object] = {"role": item.role, "content": item.content}
        if item.session is not None:
            record["session"] = item.session
        if item.time is not None:
            record["time"] = item.time
        if item.document is not None:
            record["document"] = item.document
        return record
    record = {"type": "probe"}
    if item.id is not None:
        record["id"] = item.id
    record["question"] = item.question
    if item.answer or not item.abstain:
        record["answer"] = item.answer
    optional = {"abstain": item.abstain or None, "aliases": list(item.aliases) or None,
                "depends_on": item.depends_on, "category": item.category, "distractor": item.distractor,
                "date": item.date}
    record.update({key: value for key, value in optional.items() if value is not None})
    return record


def transcript_records(transcript: Transcript) -> list[dict[str, object]]:
    """All lines of the file as JSON objects, meta first."""
    meta = meta_record(transcript.meta)
    return ([meta] if meta else []) + [item_record(item) for item in transcript.items]


def _checked_text(transcript: Transcript, out_path: str | os.PathLike[str]) -> str:
    """The file's text, once every line has passed the reader's checks.

    Raises `TranscriptError` (naming `out_path` and the line it would have had) instead of producing a file
    that `load_transcript` would reject.
    """
    records = transcript_records(transcript)
    validator = LineValidator()
    for number, record in enumerate(records, start=1):
        try:
            validator.parse(record, number)
        except LineProblem as problem:
            raise TranscriptError(out_path, number, f"would be invalid: {problem}") from None
    try:
        validator.finish()
    except LineProblem as problem:
        raise TranscriptError(out_path, None, f"would be invalid: {problem}") from None
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_transcripts(targets: Mapping[str | os.PathLike[str], Transcript]) -> None:
    """Validate every transcript first, then write each file atomically, so one bad transcript writes nothing.

    Missing folders are created only once all have passed; a target that is not a regular file (a folder, a device
    such as /dev/full) is refused (`SaveError`) before anything is written.
    """
    texts = {path: _checked_text(transcript, path) for path, transcript in targets.items()}
    for path in texts:
        writable_target(path)
    for path, text in texts.items():
        atomic_write_text(path, text)


def write_transcript(transcript: Transcript, out_path: str | os.PathLike[str]) -> None:
    """Validate every line as the reader would, then write the file atomically (see `write_transcripts`)."""
    write_transcripts({out_path: transcript})
