"""Modes `prefill`, `decode` and `ab`: the frozen and δ-mem lanes of one model, timed turn by turn.

Both lanes are the same `DeltaMemModel`; the frozen lane is its row with memory off, exactly as the app runs it.
Lanes (and A/B variants) are interleaved within each repeat, in alternating order, so that slow drift of a shared
machine (other processes, thermal limits) lands on all of them alike instead of on whichever ran last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from torch import Tensor

from deltamem.benchmarks.common import LANES, Settings, median, run_turn, token_ids
from deltamem.benchmarks.report import Record
from deltamem.model import DeltaMemModel


def _interleaved(jobs: dict[str, Callable[[], tuple[float, float]]], settings: Settings
                 ) -> dict[str, list[tuple[float, float]]]:
    """Run every job `warmup` times untimed, then `repeats` times timed, alternating the order per repeat."""
    for _ in range(settings.warmup):
        for job in jobs.values():
            job()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
    names = list(jobs)
    for repeat in range(settings.repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            samples[name].append(jobs[name]())
    return samples


def lane_records(model: DeltaMemModel, settings: Settings, prompt_lens: Sequence[int], decode_len: int,
                 modes: Sequence[str]) -> list[Record]:
    """Prefill time and time per decoded token of both lanes at each prompt length (batch 1)."""
    n_decode = decode_len if "decode" in modes else 0
    records = []
    for length in prompt_lens:
        prompt, decode = token_ids(settings, length), token_ids(settings, n_decode, salt=1)
        jobs = {lane: partial(run_turn, model, prompt, decode, [memory]) for lane, memory in LANES.items()}
        for lane, runs in _interleaved(jobs, settings).items():
            if "prefill" in modes:
                prefill = [p for p, _ in runs]
                records.append(Record("prefill", length, 0, lane=lane, seconds=median(prefill),
                                      tps=length / median(prefill), repeats=len(runs), samples=prefill))
            if n_decode:
                per_token = [d / n_decode for _, d in runs]
                records.append(Record("decode", length, n_decode, lane=lane, seconds=median(per_token),
                                      tps=1 / median(per_token), repeats=len(runs), samples=per_token))
    return records


def ab_records(model: DeltaMemModel, settings: Settings, prompt_lens: Sequence[int], decode_len: int
               ) -> list[Record]:
    """One A/B turn three ways, same tokens per row: a two-row batch, the two rows in turn, one δ-mem row alone.

    This is the hook for the runtime's A/B turn: it uses only the model's per-row switches and a batched KV cache,
    so the runtime's own two-lane turn can later be timed beside it against the same single-lane baseline.
    """
    records = []
    for length in prompt_lens:
        one, two = token_ids(settings, length), token_ids(settings, length, rows=2)
        dec_one, dec_two = token_ids(settings, decode_len, salt=1), token_ids(settings, decode_len, rows=2, salt=1)
        jobs = {
            "batched": partial(run_turn, model, two, dec_two, [False, True]),
            "sequential": partial(_one_after_the_other, model, one, dec_one),
            "single": partial(run_turn, model, one, dec_one, [True]),
        }
        rows = {"batched": 2, "sequential": 2, "single": 1}
        for variant, runs in _interleaved(jobs, settings).items():
            turns = [p + d for p, d in runs]
            records.append(Record("ab", length, decode_len, variant=variant, seconds=median(turns),
                                  tps=rows[variant] * (length + decode_len) / median(turns), repeats=len(runs),
                                  samples=turns))
    return records


def _one_after_the_other(model: DeltaMemModel, prompt: Tensor, decode: Tensor) -> tuple[float, float]:
    """The frozen row's turn, then the δ-mem row's turn, each alone (batch 1)."""
    frozen, delta = (run_turn(model, prompt, decode, [memory]) for memory in LANES.values())
    return frozen[0] + delta[0], frozen[1] + delta[1]
