"""LoCoMo: locomo10.json (a list of samples), or the snap-research release's per-conversation files (26.json ...),
alone, in a folder or in the release zip.

Every turn becomes a user message "Speaker: text", because the talk is between two people and neither is the
assistant. Every QA becomes a probe after the last session; category 5 (adversarial) questions are abstentions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from deltamem_chat.transcripts.importers.common import (
    Document,
    ImportFormatError,
    answer_text,
    as_list,
    as_object,
    as_text,
    chosen,
    finish,
    keyed,
    load_documents,
    name_text,
    optional_text,
)
from deltamem_chat.transcripts.model import Item, Message, Probe, Transcript, TranscriptMeta

LOCOMO_CATEGORIES = (1, 2, 3, 4, 5)
"""LoCoMo's QA categories: 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial."""

ADVERSARIAL = 5
"""The category whose questions the conversation never answers; they carry a tempting wrong answer."""

_SESSION = re.compile(r"session_([0-9]{1,9})")
_DIA_ID = re.compile(r"D:?([0-9]{1,9}):([0-9]{1,9})")
_EVIDENCE_SEPARATORS = re.compile(r"[\s;,]+")

TurnId = tuple[int, int]
"""A dialogue id D<session>:<turn> as numbers, so "D30:05" and "D30:5" are the same turn."""


@dataclass(frozen=True)
class _Sample:
    """One conversation with its QA, and where it was read from (`where` for errors, `label` for the meta)."""

    id: str
    where: Path
    label: str
    conversation: dict[str, object]
    qa: object


def _file_sample_id(where: Path) -> str:
    """A per-conversation file is named after its sample: 26.json holds conv-26."""
    return where.stem if where.stem.startswith("conv-") else f"conv-{where.stem}"


def _samples_of(document: Document) -> list[_Sample]:
    samples = []
    for index, raw in enumerate(document.records):
        record = as_object(document.where, raw, f"sample {index}")
        # locomo10.json nests the talk under "conversation"; the release's per-conversation files do not.
        conversation = as_object(document.where, record.get("conversation", record), f'sample {index} "conversation"')
        default_id = _file_sample_id(document.where) + (f"-{index}" if len(document.records) > 1 else "")
        sample_id = name_text(document.where, record.get("sample_id", default_id), f'sample {index} "sample_id"')
        samples.append(_Sample(sample_id, document.where, document.label, conversation, record.get("qa", [])))
    return samples


def _samples(path: Path) -> list[_Sample]:
    return [sample for document in load_documents(path) for sample in _samples_of(document)]


def _turn_id(value: str) -> TurnId | None:
    """D<session>:<turn>, zero padding ignored; "D:11:26" still reads as D11:26; anything else is None."""
    match = _DIA_ID.fullmatch(value)
    return (int(match[1]), int(match[2])) if match else None


def evidence_turns(evidence: object) -> list[TurnId]:
    """Every well-formed turn id in LoCoMo's evidence strings ("D8:6; D9:17", "D9:1 D4:4"); the rest is skipped."""
    values = evidence if isinstance(evidence, list) else [evidence]
    tokens = (token for value in values if isinstance(value, str) for token in _EVIDENCE_SEPARATORS.split(value))
    return [turn for token in tokens if (turn := _turn_id(token)) is not None]


def _sessions(sample: _Sample) -> list[tuple[int, str, list[object]]]:
    """(number, key, turns) of the sessions that have turns, by number (the files list them in any order)."""
    found = []
    for key, value in sample.conversation.items():
        if (match := _SESSION.fullmatch(key)) and value:
            found.append((int(match[1]), key, as_list(sample.where, value, f'sample {sample.id} "{key}"')))
    return sorted(found)


def _turn_text(sample: _Sample, turn: dict[str, object], where: str) -> str:
    """The turn's text, with a shared photo's caption as "[shares …]"; empty when the turn says nothing."""
    text = as_text(sample.where, turn.get("text", ""), f'{where} "text"').strip()
    caption = turn.get("blip_caption")
    if isinstance(caption, str) and caption.strip():
        text = f"{text} [shares {caption.strip()}]".strip()
    return text


def _messages(sample: _Sample, speaker_a: str, speaker_b: str) -> tuple[list[Item], dict[TurnId, int]]:
    """The system line and every turn, with the message index of each dialogue id."""
    items: list[Item] = [
        Message(
            "system",
            f"A conversation between {speaker_a} and {speaker_b}; each message is one turn, "
            "prefixed with its speaker's name.",
        )
    ]
    message_of_turn: dict[TurnId, int] = {}
    for number, key, turns in _sessions(sample):
        date_key = f"{key}_date_time"
        time = optional_text(sample.where, sample.conversation.get(date_key), f'sample {sample.id} "{date_key}"')
        for index, raw in enumerate(turns, start=1):
            where = f"sample {sample.id}, {key} turn {index}"
            turn = as_object(sample.where, raw, where)
            speaker = as_text(sample.where, turn.get("speaker"), f'{where} "speaker"')
            text = _turn_text(sample, turn, where)
            if not text:
                continue
            turn_id = _turn_id(turn["dia_id"]) if isinstance(turn.get("dia_id"), str) else None
            if turn_id is not None:
                message_of_turn.setdefault(turn_id, len(items))
            items.append(Message("user", f"{speaker}: {text}", session=number, time=time))
    return items, message_of_turn


def _probe(sample: _Sample, index: int, qa: dict[str, object], message_of_turn: dict[TurnId, int]) -> Probe:
    """One QA as a probe; it depends on the earliest evidence turn, where the fact first comes up.

    A category-5 probe has no answer: the right reply is that the conversation does not say. The few such QAs
    that also have an "answer" are left with none, since LoCoMo's evaluation offers that as the wrong choice.
    """
    where = f"sample {sample.id}, qa {index}"
    category = qa["category"]
    found = [message_of_turn[turn] for turn in evidence_turns(qa.get("evidence")) if turn in message_of_turn]
    adversarial = category == ADVERSARIAL
    if not adversarial and "answer" not in qa:
        raise ImportFormatError(sample.where, f'{where} has no "answer"')
    distractor = qa.get("adversarial_answer")
    if distractor is not None:
        distractor = answer_text(sample.where, distractor, f'{where} "adversarial_answer"') or None
    return Probe(
        question=as_text(sample.where, qa.get("question"), f'{where} "question"'),
        answer="" if adversarial else answer_text(sample.where, qa["answer"], f'{where} "answer"'),
        depends_on=min(found, default=None),
        id=f"{sample.id}-qa{index}",
        category=category,
        abstain=adversarial,
        distractor=distractor,
    )


def _qa_items(sample: _Sample) -> list[tuple[int, dict[str, object]]]:
    """(index, qa) for every QA, checking its category; the index is the QA's place in the sample's list."""
    items = []
    for index, raw in enumerate(as_list(sample.where, sample.qa, f'sample {sample.id} "qa"')):
        qa = as_object(sample.where, raw, f"sample {sample.id}, qa {index}")
        category = qa.get("category")
        if isinstance(category, bool) or not isinstance(category, int) or category not in LOCOMO_CATEGORIES:
            raise ImportFormatError(sample.where, f'sample {sample.id}, qa {index} "category" should be 1-5')
        items.append((index, qa))
    return items


def _transcript(sample: _Sample, categories: Collection[int]) -> Transcript:
    speaker_a, speaker_b = (
        as_text(sample.where, sample.conversation.get(key), f'sample {sample.id} "{key}"')
        for key in ("speaker_a", "speaker_b")
    )
    items, message_of_turn = _messages(sample, speaker_a, speaker_b)
    sessions = len({item.session for item in items if isinstance(item, Message) and item.session is not None})
    items += [_probe(sample, i, qa, message_of_turn) for i, qa in _qa_items(sample) if qa["category"] in categories]
    meta = TranscriptMeta(
        title=f"LoCoMo {sample.id}: {speaker_a} and {speaker_b}",
        source=f"LoCoMo ({sample.label})",
        description=f"{sessions} sessions; QA categories {', '.join(map(str, sorted(categories)))}.",
    )
    return finish(sample.where, meta, items, f"sample {sample.id}")


def read_locomo(
    path: str | os.PathLike[str],
    sample: str | int | None = None,
    categories: Collection[int] = LOCOMO_CATEGORIES,
) -> dict[str, Transcript]:
    """Every sample of a LoCoMo file, zip or folder (or only `sample`, by `sample_id` or index), by sample_id."""
    path = Path(path)
    unknown = sorted(set(categories) - set(LOCOMO_CATEGORIES))
    if unknown:
        raise ImportFormatError(path, f"LoCoMo categories must be among 1-5, not {unknown}")
    samples = _samples(path)
    indices = chosen(path, [s.id for s in samples], sample, "sample", "sample_id")
    return keyed(path, ((samples[i].id, _transcript(samples[i], categories)) for i in indices), "sample", "sample_id")


def import_locomo(
    path: str | os.PathLike[str],
    sample: str | int | None = None,
    categories: Collection[int] = LOCOMO_CATEGORIES,
) -> Transcript:
    """One LoCoMo sample (by `sample_id` or 0-based index; the first by default) with its QA as probes."""
    (transcript,) = read_locomo(path, 0 if sample is None else sample, categories).values()
    return transcript
