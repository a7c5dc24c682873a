"""The in-memory form of a transcript: plain dataclasses, so replay and scoring never touch raw JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from deltamem.context import ContextPolicy

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class TranscriptMeta:
    """The optional first line of a transcript: where it comes from and how it should be replayed."""

    title: str | None = None
    source: str | None = None
    licence: str | None = None
    description: str | None = None
    context: ContextPolicy | None = None


@dataclass(frozen=True)
class Message:
    """One chat turn. `session` and `time` let multi-session histories keep their structure. A message with a
    `document` title is a document given to read (no reply is expected): the lanes read it under its title."""

    role: Role
    content: str
    session: int | str | None = None
    time: str | None = None
    document: str | None = None


#: A benchmark's question category: LoCoMo's 1-5, LongMemEval's question type, MemoryAgentBench's split.
Category = int | str


@dataclass(frozen=True)
class Probe:
    """A recall question asked at its place in the transcript, after every earlier message.

    `depends_on` is the 0-based index (among messages only) of the message that holds the fact,
    so a report can say how far back the fact was. An `abstain` probe asks about something the conversation
    never settles: the right reply says so, and `answer` (possibly empty) only explains why. `distractor` is a
    plausible wrong answer (LoCoMo's adversarial answer); `date` is when the question is asked.
    """

    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    depends_on: int | None = None
    id: str | None = None
    category: Category | None = None
    abstain: bool = False
    distractor: str | None = None
    date: str | None = None


Item = Message | Probe


@dataclass
class Transcript:
    """A whole validated transcript: metadata plus messages and probes in file order."""

    path: Path | None
    meta: TranscriptMeta = field(default_factory=TranscriptMeta)
    items: list[Item] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        """All messages, in order; `Probe.depends_on` indexes this list."""
        return [item for item in self.items if isinstance(item, Message)]

    @property
    def probes(self) -> list[Probe]:
        """All probes, in order."""
        return [item for item in self.items if isinstance(item, Probe)]

    def probe_positions(self) -> list[tuple[int, Probe]]:
        """Each probe with the number of messages that precede it, i.e. the history it is asked after."""
        positions: list[tuple[int, Probe]] = []
        seen = 0
        for item in self.items:
            if isinstance(item, Message):
                seen += 1
            else:
                positions.append((seen, item))
        return positions
