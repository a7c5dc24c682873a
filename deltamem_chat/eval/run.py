"""Running an eval's units on a loaded model, one fresh engine per unit, each result saved as soon as it is done."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deltamem.context import ContextPolicy
from deltamem.retrieval import RetrievalSettings
from deltamem.runtime.contract import GenerationSettings, has_retrieval
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel
from deltamem_chat.eval.plan import EvalSettings, Unit
from deltamem_chat.replay import ReplayRunner
from deltamem_chat.replay.runner import LaneStep
from deltamem_chat.scoring import ProbeOutcome, ScoringProtocol
from deltamem_chat.transcripts import Probe, Transcript, load_transcript


def generation(settings: EvalSettings) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                              top_p=settings.top_p, top_k=settings.top_k, seed=settings.seed)


def run_unit(loaded: LoadedModel, unit: Unit, transcript: Transcript, settings: EvalSettings,
             protocol: ScoringProtocol, advance: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Replay one transcript under one condition in a fresh engine; the unit's result as plain data."""
    start = time.perf_counter()
    engine = ABEngine(loaded.model, loaded.tokenizer, policy=ContextPolicy.parse(unit.condition),
                      batched=settings.batching == "batched", lanes=settings.lanes,
                      retrieval=RetrievalSettings.parse(settings.retrieval))
    runner = ReplayRunner(engine, transcript, settings=generation(settings), lanes=list(settings.lanes),
                          dates=settings.dates, protocol=protocol)
    runner.run(advance)
    probes = []
    for record in runner.records:
        if record.outcome is None:
            continue
        probe = transcript.items[record.index]
        assert isinstance(probe, Probe)
        probes.append({**probe_result(probe, record.text, record.outcome),
                       **_retrieval(probe, record.lanes)})
    return {"unit": unit.key, "transcript": unit.transcript, "condition": unit.condition, "probes": probes,
            "written": {lane: engine.lane(lane).written_total for lane in settings.lanes},
            "seconds": round(time.perf_counter() - start, 3)}


def _retrieval(probe: Probe, lanes: dict[str, LaneStep]) -> dict[str, Any]:
    """The retrieval lanes' part of a probe's record: the evidence message and whether each lane retrieved it."""
    found = {lane: {"evidence": step.evidence, "retrieved": [r["message"] for r in step.retrieved]}
             for lane, step in lanes.items() if has_retrieval(lane)}
    return {"depends_on": probe.depends_on, "retrieval": found} if found else {}


def probe_result(probe: Probe, asked: str, outcome: ProbeOutcome) -> dict[str, Any]:
    """One probe's record in the results: what was asked and expected, and each lane's answer and scores."""
    return {
        "id": probe.id, "question": probe.question, "asked": asked, "category": probe.category,
        "expected": probe.answer, "abstain": probe.abstain,
        "answers": {lane: {"answer": outcome.answers[lane], "hit": score.hit, "f1": round(score.f1, 4),
                           "score": score.score, "metrics": score.metrics}
                    for lane, score in outcome.scores.items()},
    }


def run_units(loaded: LoadedModel, units: list[Unit], settings: EvalSettings, protocol: ScoringProtocol,
              save: Callable[[dict[str, Any]], None], console: Console) -> int:
    """Run `units` in order, saving each result; a progress bar over their items with an ETA. Returns units run."""
    transcripts = {unit.transcript: load_transcript(unit.path) for unit in units}
    total = sum(len(transcripts[unit.transcript].items) for unit in units)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("eval", total=total)
        for done, unit in enumerate(units):
            progress.update(task, description=f"{done + 1}/{len(units)} {unit.key}")
            save(run_unit(loaded, unit, transcripts[unit.transcript], settings, protocol,
                          advance=lambda: progress.advance(task)))
    return len(units)
