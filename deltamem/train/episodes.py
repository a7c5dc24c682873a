"""Training episodes: a chat history to write into memory, then a question whose answer is learned.

An episodes file is JSON Lines, one episode a line:

    {"messages": [{"role": "user", "content": "..."}, ...], "question": "...", "answer": "..."}

Sources hand out the episodes of a training step as a pure function of (seed, step), so a resumed run sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deltamem.files import JSONLimitError, parse_json
from deltamem.rendering import ROLES


class EpisodeError(ValueError):
    """An episodes file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Episode:
    """History messages (all written into memory), then a user question and the answer to learn."""

    messages: tuple[tuple[str, str], ...]
    question: str
    answer: str

    def to_json(self) -> dict[str, object]:
        return {"messages": [{"role": r, "content": c} for r, c in self.messages], "question": self.question,
                "answer": self.answer}


class EpisodeSource(Protocol):
    """Where a training run's episodes come from."""

    def sample(self, step: int, size: int) -> list[Episode]:
        """The `size` episodes of training step `step` (the same every time it is asked)."""
        ...


def step_rng(seed: int, step: int, salt: int = 0) -> random.Random:
    """One reproducible random stream per (seed, step, purpose)."""
    return random.Random(seed * 1_000_003 + step * 7_919 + salt)


def _parse(record: object, where: str) -> Episode:
    if not isinstance(record, dict):
        raise EpisodeError(f"{where}: expected a JSON object")
    messages = record.get("messages")
    if not isinstance(messages, list):
        raise EpisodeError(f'{where}: "messages" must be a list of {{"role", "content"}} objects')
    parsed = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role not in ROLES or not isinstance(content, str) or not content.strip():
            raise EpisodeError(f"{where}: each message needs a role ({', '.join(ROLES)}) and non-empty content")
        parsed.append((role, content))
    for key in ("question", "answer"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise EpisodeError(f'{where}: "{key}" must be a non-empty string')
    return Episode(tuple(parsed), record["question"], record["answer"])


def read_episodes(path: str | Path) -> list[Episode]:
    """Read and check a whole episodes file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EpisodeError(f"{path}: cannot read ({exc})") from None
    episodes = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = parse_json(line)
        except json.JSONDecodeError as exc:
            raise EpisodeError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        except JSONLimitError as exc:
            raise EpisodeError(f"{path}:{number}: {exc}") from None
        episodes.append(_parse(record, f"{path}:{number}"))
    if not episodes:
        raise EpisodeError(f"{path}: no episodes")
    return episodes


def write_episodes(episodes: Sequence[Episode], path: str | Path) -> Path:
    """Write an episodes file atomically."""
    from deltamem.files import atomic_write_text

    text = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in episodes)
    return atomic_write_text(path, text)


@dataclass
class ListSource:
    """A fixed list of episodes, reshuffled every epoch from the seed."""

    episodes: Sequence[Episode]
    seed: int = 0

    def sample(self, step: int, size: int) -> list[Episode]:
        n = len(self.episodes)
        orders: dict[int, list[int]] = {}
        out = []
        for position in range(step * size, (step + 1) * size):
            epoch, index = divmod(position, n)
            if epoch not in orders:
                orders[epoch] = list(range(n))
                random.Random(self.seed * 1_000_003 + epoch).shuffle(orders[epoch])
            out.append(self.episodes[orders[epoch][index]])
        return out


@dataclass
class GeneratedSource:
    """Episodes made on the fly: `make(rng)` draws one episode from a step's random stream."""

    make: Callable[[random.Random], Episode]
    seed: int = 0

    def sample(self, step: int, size: int) -> list[Episode]:
        rng = step_rng(self.seed, step, salt=1)
        return [self.make(rng) for _ in range(size)]


__all__ = ["Episode", "EpisodeError", "EpisodeSource", "GeneratedSource", "ListSource", "read_episodes",
           "step_rng", "write_episodes"]
