"""MemoryAgentBench: the ai-hyz/MemoryAgentBench parquet files, one long context and its questions per row.

Rows have `context` (one string), `questions`, `answers` (a list of acceptable answers per question) and
`metadata` (`source`, and per question `qa_pair_ids`, `question_dates`, `question_ids` where the source has them).
The context is replayed as user messages, one per chunk (see `chunking`), after the system message the official
runs use; every question becomes a probe after the last chunk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from deltamem_chat.scoring.normalize import normalize_answer
from deltamem_chat.transcripts.importers.chunking import CHUNK_TOKENS, chunk_text
from deltamem_chat.transcripts.importers.common import (
    ImportFormatError,
    answer_text,
    as_list,
    as_object,
    as_text,
    chosen,
    finish,
)
from deltamem_chat.transcripts.model import Item, Message, Probe, Transcript, TranscriptMeta

SYSTEM_MESSAGE = "You are a helpful assistant that can read the context and memorize it for future retrieval."
"""The system message of every official MemoryAgentBench template."""

_SHARD = re.compile(r"-\d+-of-\d+$")


def split_of(path: Path) -> str:
    """The split a file holds, from its name: Accurate_Retrieval-00000-of-00001.parquet holds Accurate_Retrieval."""
    return _SHARD.sub("", path.stem)


def _table(path: Path) -> Any:
    """The parquet file as a pyarrow table; pyarrow is imported only here, as it is an optional extra."""
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        hint = "pip install 'deltamem-chat[benchmarks]'"
        raise ImportFormatError(path, f"reading parquet needs pyarrow ({hint})") from None
    if not path.is_file():
        raise ImportFormatError(path, "no such file")
    try:
        return parquet.read_table(path)
    except (OSError, ValueError) as error:
        raise ImportFormatError(path, f"not a readable parquet file ({error})") from None


def _per_question(metadata: dict[str, object], key: str, index: int) -> str | None:
    """The `index`-th entry of a per-question metadata list, when the source has that list."""
    values = metadata.get(key)
    value = values[index] if isinstance(values, list) and index < len(values) else None
    return value if isinstance(value, str) else None


def _aliases(path: Path, value: object, where: str) -> list[str]:
    """The acceptable answers, in order, without repeats or answers that have no words (they would match anything)."""
    answers = [answer_text(path, item, where) for item in (value if isinstance(value, list) else [value])]
    kept = list(dict.fromkeys(answer for answer in answers if normalize_answer(answer)))
    if not kept:
        raise ImportFormatError(path, f"{where} has no answer with words in it")
    return kept


def _probe_ids(metadata: dict[str, object], name: str, count: int) -> list[str]:
    """The rows' own qa_pair_ids when there is a distinct one per question, else <row>-q<index>."""
    ids = [_per_question(metadata, "qa_pair_ids", index) for index in range(count)]
    if all(ids) and len(set(ids)) == count:
        return [str(qa_id) for qa_id in ids]
    return [f"{name}-q{index}" for index in range(count)]


def _probes(path: Path, row: dict[str, object], name: str, split: str) -> list[Probe]:
    questions = as_list(path, row.get("questions"), f'row {name} "questions"')
    answers = as_list(path, row.get("answers"), f'row {name} "answers"')
    if len(answers) != len(questions):
        raise ImportFormatError(path, f"row {name} has {len(questions)} questions but {len(answers)} answers")
    metadata = as_object(path, row.get("metadata") or {}, f'row {name} "metadata"')
    ids = _probe_ids(metadata, name, len(questions))
    probes = []
    for index, (question, answer) in enumerate(zip(questions, answers)):
        first, *rest = _aliases(path, answer, f"row {name}, question {index}")
        probes.append(
            Probe(
                question=as_text(path, question, f"row {name}, question {index}"),
                answer=first,
                aliases=tuple(rest),
                id=ids[index],
                category=split,
                abstain=(_per_question(metadata, "question_ids", index) or "").endswith("_abs"),
                date=_per_question(metadata, "question_dates", index),
            )
        )
    return probes


def _transcript(path: Path, row: dict[str, object], name: str, split: str, chunk_tokens: int) -> Transcript:
    chunks = chunk_text(as_text(path, row.get("context"), f'row {name} "context"'), chunk_tokens)
    items: list[Item] = [Message("system", SYSTEM_MESSAGE), *(Message("user", chunk) for chunk in chunks)]
    items += _probes(path, row, name, split)
    metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    source = metadata.get("source") if isinstance(metadata.get("source"), str) else None
    meta = TranscriptMeta(
        title=f"MemoryAgentBench {name}" + (f" ({source})" if source else ""),
        source=f"MemoryAgentBench ({path.name})",
        description=f"{split}, source {source or 'not given'}: the context in {len(chunks)} chunks of at most "
        f"{chunk_tokens} tokens (estimated).",
    )
    return finish(path, meta, items, f"row {name}")


def read_memoryagentbench(
    path: str | os.PathLike[str],
    row: str | int | None = None,
    split: str | None = None,
    chunk_tokens: int = CHUNK_TOKENS,
) -> dict[str, Transcript]:
    """Every row of a parquet file (or only `row`, by index or name), keyed by <split>-<row index>.

    `split` (the probes' category) defaults to the one the file name gives.
    """
    path = Path(path)
    table = _table(path)
    split = split or split_of(path)
    names = [f"{split}-{index}" for index in range(table.num_rows)]
    transcripts = {}
    for index in chosen(path, names, row, "row", "name"):
        record = as_object(path, table.slice(index, 1).to_pylist()[0], f"row {names[index]}")
        transcripts[names[index]] = _transcript(path, record, names[index], split, chunk_tokens)
    return transcripts


def import_memoryagentbench(
    path: str | os.PathLike[str],
    row: str | int | None = None,
    split: str | None = None,
    chunk_tokens: int = CHUNK_TOKENS,
) -> Transcript:
    """One row of a parquet file, by index or name (e.g. "Conflict_Resolution-1"); the first by default."""
    (transcript,) = read_memoryagentbench(path, 0 if row is None else row, split, chunk_tokens).values()
    return transcript
