"""What an eval run is: its settings, the transcripts of the benchmark, and the units of work (and their shards)."""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any


class EvalError(ValueError):
    """An eval that cannot run or be merged as asked; the message is one sentence for the user."""


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes an eval's numbers: a resumed run or a merged shard must have the same."""

    transcripts: tuple[str, ...]     # transcript names (file stems), in run order
    conditions: tuple[str, ...]      # context policies, e.g. ("full", "window:1024")
    protocol: str
    official: bool
    base: str
    adapter: str
    lanes: tuple[str, ...]
    batching: str
    dates: bool
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    retrieval: str = "k=3,tokens=auto"   # the retrieval lanes' settings (runs made before them had none)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("transcripts", "conditions", "lanes"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> EvalSettings:
        names = {f.name for f in fields(cls)}
        missing = sorted(f.name for f in fields(cls) if f.name not in data and f.default is MISSING)
        if missing:
            raise EvalError(f"{source}: the run settings lack {', '.join(missing)}")
        values = {key: data[key] for key in names if key in data}
        for key in ("transcripts", "conditions", "lanes"):
            values[key] = tuple(values[key])
        return cls(**values)

    def differences(self, other: EvalSettings) -> list[str]:
        """`key: this → other` for every setting that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{key}: {mine[key]!r} → {theirs[key]!r}" for key in mine if mine[key] != theirs[key]]


@dataclass(frozen=True)
class Unit:
    """One transcript under one context condition: the smallest piece of work that is saved."""

    transcript: str
    path: Path
    condition: str

    @property
    def key(self) -> str:
        return f"{self.transcript} @ {self.condition}"


def find_transcripts(paths: list[Path]) -> list[Path]:
    """The benchmark's transcripts: files as given, folders as their `*.jsonl` files in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(path.glob("*.jsonl"))
            if not inside:
                raise EvalError(f"{path}: the folder holds no .jsonl transcripts")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise EvalError(f"{path}: no such file or folder")
    seen: dict[str, Path] = {}
    for path in found:
        if path.stem in seen:
            raise EvalError(f"{path} and {seen[path.stem]} have the same name: results are keyed by name")
        seen[path.stem] = path
    return found


def plan_units(transcripts: list[Path], conditions: tuple[str, ...]) -> list[Unit]:
    """Every transcript under every condition, transcripts outermost (a conversation's conditions run together)."""
    return [Unit(path.stem, path, condition) for path in transcripts for condition in conditions]


_COUNT = re.compile(r"[0-9]{1,9}")
"""A shard number: ASCII digits only ("²" is a digit to Python, not to `int`), and never thousands of them."""


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`K/N` (1 ≤ K ≤ N) → (K, N); None for the whole run."""
    if text is None:
        return None
    k, _, n = text.partition("/")
    if not (_COUNT.fullmatch(k) and _COUNT.fullmatch(n)) or not 1 <= int(k) <= int(n):
        raise EvalError(f"--shard {text!r}: expected K/N with 1 ≤ K ≤ N, e.g. 2/4")
    return int(k), int(n)


def shard_units(units: list[Unit], shard: tuple[int, int] | None) -> list[Unit]:
    """The units of shard K of N: every N-th, starting at the K-th, so shards get similar mixes of work."""
    if shard is None:
        return units
    k, n = shard
    return units[k - 1::n]
