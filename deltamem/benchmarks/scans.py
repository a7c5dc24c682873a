"""Mode `scan`: the three forms of the recurrence (naive, stepwise, chunked) on one state, timed and compared.

The inputs look like a released adapter's: normalised q and k, β = sigmoid(logit) around the initial bias, λ = 1 − β
(coupled gates, standard update: keep λ, erase β, write β), every token written, an empty start state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from deltamem.benchmarks.common import Settings, median, synchronize
from deltamem.benchmarks.report import Record
from deltamem.scan import chunked_scan, naive_scan, stepwise_scan

FORMS = {"naive": naive_scan, "stepwise": stepwise_scan, "chunked": chunked_scan}

#: Above this length naive_scan (a Python loop over tokens) runs once without warm-up; the report says so.
NAIVE_FULL_REPEATS_UP_TO = 2048

RANK = 8


def scan_inputs(length: int, device: torch.device, seed: int = 0) -> tuple[Tensor, ...]:
    """(q, k, v, keep, erase, write, written, state) for one sequence of `length` tokens, float32."""
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.tanh(torch.randn(1, length, RANK, generator=g)), dim=-1)
    k = F.normalize(torch.tanh(torch.randn(1, length, RANK, generator=g)), dim=-1)
    v = torch.tanh(torch.randn(1, length, RANK, generator=g))
    beta = torch.sigmoid(torch.randn(1, length, RANK, generator=g) - 1.5)
    written = torch.ones(1, length, dtype=torch.bool)
    state = torch.zeros(1, RANK, RANK)
    return tuple(t.to(device) for t in (q, k, v, 1 - beta, beta, beta, written, state))


def scan_records(settings: Settings, lengths: Sequence[int]) -> list[Record]:
    """Time of each form at each length, and its largest difference to stepwise_scan (reads and final state)."""
    records = []
    for length in lengths:
        args = scan_inputs(length, settings.device, settings.seed)
        timed: dict[str, tuple[list[float], tuple[Tensor, Tensor]]] = {}
        for name, form in FORMS.items():
            few = name == "naive" and length > NAIVE_FULL_REPEATS_UP_TO
            warmup, repeats = (0, 1) if few else (settings.warmup, settings.repeats)
            timed[name] = _time(form, args, warmup, repeats, settings.device)
        ref_reads, ref_state = timed["stepwise"][1]
        for name, (samples, (reads, state)) in timed.items():
            diff = max((reads - ref_reads).abs().max().item(), (state - ref_state).abs().max().item())
            records.append(Record("scan", length, 0, variant=name, seconds=median(samples),
                                  tps=length / median(samples), max_abs_diff=diff, repeats=len(samples),
                                  samples=samples))
    return records


@torch.no_grad()
def _time(form: Callable[..., tuple[Tensor, Tensor]], args: tuple[Tensor, ...], warmup: int, repeats: int,
          device: torch.device) -> tuple[list[float], tuple[Tensor, Tensor]]:
    for _ in range(warmup):
        form(*args)
    samples = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = form(*args)
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return samples, out
