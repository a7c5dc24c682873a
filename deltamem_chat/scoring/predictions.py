"""Predictions files for `deltamem-chat score`: read and check every line, score them, write them back with scores.

Each line is a JSON object: `question`, `answer`, `prediction`, and as the protocol needs `category`, `id`,
`adversarial_answer` (or `distractor`), `abstain`, `answers` and `aliases` (docs/transcripts.md has the table).
The whole file is checked before anything is scored, so a bad line never leaves a half-written output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltamem.files import JSONLimitError, atomic_write_text, parse_json
from deltamem_chat.scoring.interface import ScoringProtocol
from deltamem_chat.scoring.summary import ProbeOutcome, ScoreSummary, summarise
from deltamem_chat.transcripts.model import Category, Probe

#: The lane name a predictions file's single system gets in the summary.
PREDICTION_LANE = "prediction"


class PredictionError(ValueError):
    """A predictions file that cannot be scored; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Prediction:
    """One checked line: the object as read, the probe it asks, and the prediction to score."""

    line: int
    record: dict[str, Any]
    probe: Probe
    text: str


class _Problem(Exception):
    """A problem with one line, before the file and line number are added."""


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _text(record: dict[str, Any], key: str, *, numbers: bool = False, empty: bool = False) -> str | None:
    """The field as text (numbers written as Python's str() does when `numbers`), None when absent."""
    if key not in record:
        return None
    value = record[key]
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        kind = "a string or a number" if numbers else "a string"
        raise _Problem(f'"{key}" must be {kind} (got {_describe(value)})')
    if not empty and not value.strip():
        raise _Problem(f'"{key}" is empty')
    return value


def _texts(record: dict[str, Any], key: str) -> list[str]:
    """A list field of answers as texts; one level of nested lists is flattened, as MemoryAgentBench does."""
    if key not in record:
        return []
    value = record[key]
    if not isinstance(value, list) or not value:
        raise _Problem(f'"{key}" must be a non-empty list of strings (got {_describe(value)})')
    items = [inner for item in value for inner in (item if isinstance(item, list) else [item])]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)) or not str(item).strip():
            raise _Problem(f'"{key}" must be a non-empty list of strings (one item is {_describe(item)})')
    return [str(item) for item in items]


def _category(record: dict[str, Any], protocol: ScoringProtocol) -> Category | None:
    """The line's category; a protocol with named categories (LoCoMo) needs one of them on every line."""
    value = record.get("category")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str))):
        raise _Problem(f'"category" must be an integer or a string (got {_describe(value)})')
    if protocol.category_names and value not in protocol.category_names:
        choices = ", ".join(str(category) for category in protocol.category_names)
        if value is None:
            raise _Problem(f'missing "category" (--protocol {protocol.name} needs one of {choices})')
        raise _Problem(f'"category" must be one of {choices} for --protocol {protocol.name} (got {json.dumps(value)})')
    return value


def _probe(record: dict[str, Any], protocol: ScoringProtocol) -> tuple[Probe, str]:
    question = _text(record, "question")
    if question is None:
        raise _Problem('missing "question"')
    prediction = _text(record, "prediction", empty=True)
    if prediction is None:
        raise _Problem('missing "prediction"')
    category = _category(record, protocol)
    abstain = record.get("abstain", category == 5)
    if not isinstance(abstain, bool):
        raise _Problem(f'"abstain" must be true or false (got {_describe(abstain)})')
    golds = [text for text in (_text(record, "answer", numbers=True, empty=abstain),) if text is not None]
    golds += _texts(record, "answers") + _texts(record, "aliases")
    if not golds and not abstain:
        raise _Problem('missing "answer"')
    distractor = _text(record, "adversarial_answer", numbers=True)
    if distractor is None:
        distractor = _text(record, "distractor", numbers=True)
    identifier = record.get("id")
    if identifier is not None and (isinstance(identifier, bool) or not isinstance(identifier, (str, int))):
        raise _Problem(f'"id" must be a string or an integer (got {_describe(identifier)})')
    probe = Probe(
        question=question,
        answer=golds[0] if golds else "",
        aliases=tuple(golds[1:]),
        id=None if identifier is None else str(identifier),
        category=category,
        abstain=abstain,
        distractor=distractor,
    )
    return probe, prediction


def read_predictions(path: Path, protocol: ScoringProtocol) -> list[Prediction]:
    """Every prediction in `path`, checked for `protocol`; PredictionError names the first bad line and field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise PredictionError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise PredictionError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise PredictionError(f"{path}: cannot read ({error.strerror})") from None
    predictions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            try:
                record = parse_json(line)
            except json.JSONDecodeError as error:
                raise _Problem(f"not valid JSON ({error.msg})") from None
            except JSONLimitError as error:
                raise _Problem(str(error)) from None
            if not isinstance(record, dict):
                raise _Problem(f"must be a JSON object (got {_describe(record)})")
            probe, text = _probe(record, protocol)
        except _Problem as problem:
            raise PredictionError(f"{path}:{number}: {problem}") from None
        predictions.append(Prediction(line=number, record=record, probe=probe, text=text))
    if not predictions:
        raise PredictionError(f"{path}: no predictions (every line is empty)")
    return predictions


def score_predictions(
    predictions: Sequence[Prediction], protocol: ScoringProtocol, *, canonical: bool = False
) -> tuple[list[dict[str, Any]], ScoreSummary]:
    """Each input object with its `score` (plus `metrics` when the protocol has several, and `canonical` when asked),
    and the summary over all of them (one lane, `PREDICTION_LANE`).

    Predictions are scored as given, unless `canonical`: then each is first cut by `protocol.canonical`.
    """
    rows, outcomes = [], []
    for index, prediction in enumerate(predictions):
        text = protocol.canonical(prediction.text, prediction.probe) if canonical else prediction.text
        score = protocol.score(text, prediction.probe)
        row = {**prediction.record, "score": score.score}
        if len(protocol.metric_names) > 1:
            row["metrics"] = dict(score.metrics)
        if canonical:
            row["canonical"] = text
        rows.append(row)
        outcomes.append(ProbeOutcome(
            probe_index=index, question=prediction.probe.question, expected=prediction.probe.answer,
            answers={PREDICTION_LANE: text}, scores={PREDICTION_LANE: score},
            category=prediction.probe.category, protocol=protocol.name,
        ))
    return rows, summarise(outcomes)


def write_scored(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write the scored lines as JSONL, atomically (the old file, if any, stays whole on failure)."""
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
