"""Modes `prefill`, `decode` and `ab`: the frozen and δ-mem lanes of one model, timed turn by turn.

Both lanes are the same `DeltaMemModel`; the frozen lane is its row with memory off, exactly as the app runs it.
Lanes (and A/B variants) are interleaved within each repeat, in alternating order, so that slow drift of a shared
machine (other processes, thermal limits) lands on all of them alike instead of on whichever ran last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from torch import Tensor

from deltamem.benchmarks.bandwidth import BandwidthProbe, kv_bytes_read, weight_bytes_read
from deltamem.benchmarks.common import LANES, FollowUpTurn, Settings, median, run_turn, token_ids
from deltamem.benchmarks.report import Record
from deltamem.model import DeltaMemModel

#: One timed run: returns (prefill seconds, decode seconds).
Job = Callable[[], tuple[float, float]]


def _interleaved(jobs: dict[str, Job], settings: Settings
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


def lane_records(models: dict[str, DeltaMemModel], settings: Settings, prompt_lens: Sequence[int],
                 decode_len: int, modes: Sequence[str]) -> list[Record]:
    """Prefill time and time per decoded token of both lanes of every model (one per quantization) at each prompt
    length (batch 1); each decode record also carries the bytes a token reads and the read and copy rates measured
    between the repeats (see `deltamem.benchmarks.bandwidth`)."""
    n_decode = decode_len if "decode" in modes else 0
    probe = BandwidthProbe(settings.device) if n_decode else None
    records = []
    for length in prompt_lens:
        prompt, decode = token_ids(settings, length), token_ids(settings, n_decode, salt=1)
        jobs: dict[str, Job] = {f"{quantize}/{lane}": partial(run_turn, model, prompt, decode, [memory])
                                for quantize, model in models.items() for lane, memory in LANES.items()}
        if probe is not None:        # seconds per byte read and copied, in the place of a turn's two times
            jobs["probe"] = lambda: tuple(1 / rate for rate in probe.rates())
        samples = _interleaved(jobs, settings)
        probed = samples.pop("probe", [])
        read_rate, copy_rate = (1 / median([p[i] for p in probed]) if probed else 0.0 for i in (0, 1))
        paired = ({quantize: paired_step_ratio(model, settings, prompt, n_decode * max(settings.repeats, 2))
                   for quantize, model in models.items()} if n_decode else {})
        for name, runs in samples.items():
            quantize, lane = name.split("/")
            if "prefill" in modes:
                prefill = [p for p, _ in runs]
                records.append(Record("prefill", length, 0, lane=lane, quantize=quantize, seconds=median(prefill),
                                      tps=length / median(prefill), repeats=len(runs), samples=prefill))
            if n_decode:
                per_token = [d / n_decode for _, d in runs]
                model = models[quantize]
                read = weight_bytes_read(model, LANES[lane]) + kv_bytes_read(model, length + n_decode // 2)
                records.append(Record("decode", length, n_decode, lane=lane, quantize=quantize,
                                      seconds=median(per_token), tps=1 / median(per_token), repeats=len(runs),
                                      samples=per_token, bytes_read=read, read_gbps=read_rate / 1e9,
                                      copy_gbps=copy_rate / 1e9,
                                      bandwidth_fraction=read / read_rate / median(per_token),
                                      paired_ratio=paired[quantize] if lane == "delta" else None))
    return records


def paired_step_ratio(model: DeltaMemModel, settings: Settings, prompt: Tensor, pairs: int) -> float:
    """δ-mem over frozen for one decoded token: the median, over `pairs` pairs, of one δ-mem step over one frozen
    step run back to back from the same position after `prompt` (each lane its own cache, rewound after each step;
    the order alternates). A shared machine's memory bandwidth drifts by tens of percent within seconds, so whole
    turns timed seconds apart cannot resolve a difference of 2 %; two steps a tenth of a second apart see the
    same machine."""
    token = token_ids(settings, 1, salt=3)
    steps = {lane: FollowUpTurn(model, prompt, token, token[:, :0], [memory]) for lane, memory in LANES.items()}
    for step in steps.values():   # warm-up
        step()
    ratios = []
    for index in range(pairs):
        order = list(steps) if index % 2 == 0 else list(reversed(steps))
        seconds = {lane: steps[lane]()[0] for lane in order}
        ratios.append(seconds["delta"] / seconds["frozen"])
    return median(ratios)


def ab_records(model: DeltaMemModel, settings: Settings, prompt_lens: Sequence[int], decode_len: int,
               message_len: int) -> list[Record]:
    """The A/B turn three ways, same tokens per row: a two-row batch, the two rows in turn, one δ-mem row alone.

    Twice per prompt length: as the first turn of a chat (mode `ab`: the whole prompt, then the reply) and as a
    follow-up turn (mode `ab-followup`: the prompt already in the cache and memory, a `message_len`-token message,
    then the reply), which is what every later turn of the app costs.
    """
    def ids(n: int, rows: int, salt: int = 0) -> Tensor:
        return token_ids(settings, n, rows=rows, salt=salt)

    records = []
    for length in prompt_lens:
        first = _three_ways(lambda rows, memory, n=length: partial(run_turn, model, ids(n, rows),
                                                                   ids(decode_len, rows, salt=1), memory))
        followup = _three_ways(lambda rows, memory, n=length: FollowUpTurn(model, ids(n, rows),
                                                                           ids(message_len, rows, salt=2),
                                                                           ids(decode_len, rows, salt=1), memory))
        for mode, jobs, fed in (("ab", first, length), ("ab-followup", followup, message_len)):
            for variant, runs in _interleaved(jobs, settings).items():
                turns = [p + d for p, d in runs]
                rows = 1 if variant == "single" else 2
                records.append(Record(mode, length, decode_len, variant=variant, seconds=median(turns),
                                      tps=rows * (fed + decode_len) / median(turns), repeats=len(runs),
                                      samples=turns))
    return records


def _three_ways(turn: Callable[[int, list[bool]], Job]) -> dict[str, Job]:
    """The A/B variants from `turn(rows, memory switches)`: both lanes batched, one after the other, δ-mem alone."""
    return {
        "batched": turn(2, [False, True]),
        "sequential": partial(_one_after_the_other, *(turn(1, [memory]) for memory in LANES.values())),
        "single": turn(1, [True]),
    }


def _one_after_the_other(frozen: Job, delta: Job) -> tuple[float, float]:
    """The frozen row's turn, then the δ-mem row's turn, each alone (batch 1)."""
    (p1, d1), (p2, d2) = frozen(), delta()
    return p1 + p2, d1 + d2
