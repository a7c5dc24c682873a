"""Bench records, the summary ratios, and the Markdown and JSON reports.

Records use the field names of the official TPS benchmark (`mode`, `prompt_len`, `decode_len`, `tps`,
`peak_alloc_gb`) plus `lane` / `variant` and `seconds`, so the two can be read side by side. Every ratio in the
summary comes from records of the same run: timings from different runs on a shared machine are not comparable.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from deltamem.files import atomic_write_text

#: Summary ratio → (comparison, bound): the targets of the float32 CPU proxy (the CPU bench shape at 4096).
TARGETS: dict[str, tuple[str, float]] = {
    "delta_over_frozen_prefill_time": ("<=", 1.15),
    "delta_over_frozen_decode_time": ("<=", 1.10),
    "delta_over_frozen_decode_step_paired": ("<=", 1.10),
    "delta_over_frozen_peak_memory": ("<=", 1.05),
    "ab_batched_over_single_turn_time": ("<=", 1.3),
    "naive_over_chunked_scan_time": (">=", 10.0),
}

#: In bfloat16 or float16 δ-mem is held to less: the memory path must cost next to nothing at the real width.
HALF_TARGETS: dict[str, tuple[str, float]] = {
    "delta_over_frozen_prefill_time": ("<=", 1.05),
    "delta_over_frozen_decode_time": ("<=", 1.02),
    "delta_over_frozen_decode_step_paired": ("<=", 1.02),
}

#: Shapes that stand in for a model (the others are real models' shapes, whatever their layers and vocabulary).
PROXY_SHAPES = ("tiny", "cpu-bench")

#: The scan length the naive-over-chunked ratio is stated at (the largest measured length if it is absent).
SCAN_SUMMARY_LEN = 4096


def targets_for(settings: dict[str, Any], machine_info: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """The targets that apply to this run: the float32 proxy's, tighter ones in half precision, and at a real shape
    the A/B follow-up turn, plus on a CPU the bandwidth reached and what quantization must give."""
    out = dict(TARGETS)
    if machine_info.get("dtype") in ("bfloat16", "float16"):
        out.update(HALF_TARGETS)
    if settings.get("shape") in PROXY_SHAPES:
        return out
    out["ab_batched_over_single_followup_turn_time"] = ("<=", 1.3)
    if machine_info.get("device") != "cpu":
        return out
    quantizations = settings.get("quantize") or ["none"]
    for quantize in quantizations:
        suffix = _suffix(quantize, quantizations)
        out[f"bandwidth_fraction_decode{suffix}"] = (">=", 0.7)
        out[f"peak_memory_over_weights{suffix}"] = ("<=", 1.10)
    if quantizations[0] == "none" and "int8" in quantizations:
        out["decode_speed_int8_over_none"] = (">=", 1.7)
    return out


def _suffix(quantize: str, quantizations: list[str]) -> str:
    """Summary names of the first quantization carry no suffix (they are the run's own), the others `_int8`…"""
    return "" if quantize == quantizations[0] else f"_{quantize}"


@dataclass
class Record:
    """One measured quantity. What `seconds` and `tps` count depends on the mode (see `MEANING`)."""

    mode: str
    prompt_len: int
    decode_len: int
    lane: str | None = None
    variant: str | None = None
    seconds: float | None = None
    tps: float | None = None
    peak_alloc_gb: float | None = None
    peak_increase_gb: float | None = None
    max_abs_diff: float | None = None
    repeats: int = 0
    samples: list[float] = field(default_factory=list)
    quantize: str = "none"
    bytes_read: int | None = None            # decode: bytes of weights and KV cache one token reads
    read_gbps: float | None = None           # decode: the read rate measured between its repeats
    copy_gbps: float | None = None           # decode: the copy rate measured between its repeats
    bandwidth_fraction: float | None = None  # decode: (bytes_read / read rate) / seconds
    paired_ratio: float | None = None        # decode, δ-mem lane: median δ-mem / frozen over paired steps
    weight_gb: float | None = None           # memory: what the model's weights hold


#: Written into the JSON so that a reader of the file alone knows what the numbers are.
MEANING = {
    "prefill": "seconds: median prefill time of prompt_len tokens (batch 1); tps: prompt_len / seconds",
    "decode": "seconds: median time per decoded token (batch 1, KV cache after a prefill of prompt_len); "
              "tps: 1 / seconds; bytes_read: bytes of weights (all but the input embedding's, unless tied to the "
              "head) and KV cache one token reads; read_gbps: GB/s of a sum over a 256 MiB tensor, the fastest of "
              "three per repeat, median over the repeats; copy_gbps: the same for a copy between two such tensors "
              "(bytes of the source); bandwidth_fraction: bytes_read / read rate / seconds, the share of the memory "
              "bandwidth decode reached; paired_ratio (δ-mem lane): the median over pairs of one "
              "δ-mem step over one frozen step run back to back from the same position",
    "memory": "peak_alloc_gb: CUDA max_memory_allocated over one turn (weights included); on CPU the peak RSS of a "
              "fresh process over one turn minus its RSS before the model was built. peak_increase_gb: the part "
              "above the memory held right before the turn. weight_gb: the bytes the model's weights hold "
              "(quantized ones as stored)",
    "ab": "seconds: median time of one first turn (prefill of prompt_len + decode_len tokens, from an empty cache) "
          "for every row of the variant; tps: rows x (prompt_len + decode_len) / seconds",
    "ab-followup": "seconds: median time of one follow-up turn (prompt_len tokens already in the cache and memory; "
                   "prefill of a message, then decode_len tokens) for every row of the variant; tps: rows x (message "
                   "+ decode_len) / seconds",
    "scan": "prompt_len: scan length (N=1, r=8, float32); seconds: median time of one scan; tps: tokens / seconds; "
            "max_abs_diff: largest |difference| to stepwise_scan over reads and final state",
}


def _find(records: list[Record], mode: str, name: str, length: int, quantize: str | None = None) -> Record | None:
    """The record of a mode, lane or variant and length (of one quantization, or of any when None)."""
    for record in records:
        if (record.mode == mode and name in (record.lane, record.variant) and record.prompt_len == length
                and quantize in (None, record.quantize)):
            return record
    return None


def _ratio(records: list[Record], mode: str, top: str, bottom: str, length: int | None,
           value: str = "seconds", quantize: str | None = None) -> float | None:
    if length is None:
        return None
    a, b = _find(records, mode, top, length, quantize), _find(records, mode, bottom, length, quantize)
    if a is None or b is None or not getattr(a, value) or not getattr(b, value):
        return None
    return getattr(a, value) / getattr(b, value)


def _largest(records: list[Record], mode: str) -> int | None:
    lengths = [r.prompt_len for r in records if r.mode == mode]
    return max(lengths) if lengths else None


def _quantizations(records: list[Record]) -> list[str]:
    """The quantizations of the lane records, in the order measured (the first is the run's own)."""
    return list(dict.fromkeys(r.quantize for r in records if r.mode in ("prefill", "decode", "memory"))) or ["none"]


def summary(records: list[Record], quantizations: list[str] | None = None) -> dict[str, float | None]:
    """The headline ratios at the largest prompt length (the scan at 4,096 tokens when measured), of the first
    quantization; then, for every other one, its bandwidth fraction, memory over weights and its speed over the
    first's (tokens/s of the δ-mem lane in decode; time in prefill)."""
    quantizations = quantizations or _quantizations(records)
    base = quantizations[0]
    scan_lengths = {r.prompt_len for r in records if r.mode == "scan"}
    scan_len = SCAN_SUMMARY_LEN if SCAN_SUMMARY_LEN in scan_lengths else _largest(records, "scan")
    prefill_len, decode_len, memory_len = (_largest(records, mode) for mode in ("prefill", "decode", "memory"))
    out = {
        "delta_over_frozen_prefill_time": _ratio(records, "prefill", "delta", "frozen", prefill_len, quantize=base),
        "delta_over_frozen_decode_time": _ratio(records, "decode", "delta", "frozen", decode_len, quantize=base),
        "delta_over_frozen_decode_step_paired": _paired(records, decode_len, base),
        "delta_over_frozen_peak_memory": _ratio(records, "memory", "delta", "frozen", memory_len, "peak_alloc_gb",
                                                base),
        "ab_batched_over_single_turn_time": _ratio(records, "ab", "batched", "single", _largest(records, "ab")),
        "ab_batched_over_single_followup_turn_time": _ratio(records, "ab-followup", "batched", "single",
                                                            _largest(records, "ab-followup")),
        "naive_over_chunked_scan_time": _ratio(records, "scan", "naive", "chunked", scan_len),
    }
    for quantize in quantizations:
        suffix = _suffix(quantize, quantizations)
        decode = _find(records, "decode", "delta", decode_len, quantize) if decode_len else None
        out[f"bandwidth_fraction_decode{suffix}"] = decode.bandwidth_fraction if decode else None
        memory = _find(records, "memory", "delta", memory_len, quantize) if memory_len else None
        out[f"peak_memory_over_weights{suffix}"] = (memory.peak_alloc_gb / memory.weight_gb
                                                    if memory and memory.weight_gb else None)
        if quantize == base:
            continue
        out[f"decode_speed_{quantize}_over_{base}"] = _across(records, "decode", decode_len, base, quantize)
        out[f"prefill_time_{quantize}_over_{base}"] = _across(records, "prefill", prefill_len, quantize, base)
    return out


def _paired(records: list[Record], length: int | None, quantize: str) -> float | None:
    decode = _find(records, "decode", "delta", length, quantize) if length else None
    return decode.paired_ratio if decode else None


def _across(records: list[Record], mode: str, length: int | None, top: str, bottom: str) -> float | None:
    """seconds of the δ-mem lane of quantization `top` over `bottom`."""
    if length is None:
        return None
    a, b = _find(records, mode, "delta", length, top), _find(records, mode, "delta", length, bottom)
    return a.seconds / b.seconds if a and b and a.seconds and b.seconds else None


def verdict(name: str, value: float | None, targets: dict[str, tuple[str, float]] | None = None) -> str:
    targets = TARGETS if targets is None else targets
    if value is None:
        return "not measured"
    if name not in targets:
        return "no target"
    comparison, bound = targets[name]
    met = value <= bound if comparison == "<=" else value >= bound
    return "met" if met else "NOT met"


def _bound(name: str, targets: dict[str, tuple[str, float]] | None = None) -> str:
    targets = TARGETS if targets is None else targets
    if name not in targets:
        return "none"
    comparison, bound = targets[name]
    return f"{comparison} {bound:g}"


def machine(device: torch.device, dtype: torch.dtype, attn: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    import transformers

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name() or platform.processor() or platform.machine()
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": name,
        "cpu_bf16_instructions": _cpu_bf16(),
        "dtype": str(dtype).removeprefix("torch."),
        "attn": attn,
    }


def _cpu_bf16() -> list[str] | None:
    """The CPU's native bf16 instruction sets (x86 Linux; None where unknown): they decide what a bf16 row costs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(flag for flag in line.split(":", 1)[1].split() if "bf16" in flag)
    except OSError:
        pass
    return None


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def to_json(records: list[Record], settings: dict[str, Any], machine_info: dict[str, Any]) -> dict[str, Any]:
    ratios = summary(records, settings.get("quantize"))
    targets = targets_for(settings, machine_info)
    return {
        "machine": machine_info,
        "settings": settings,
        "meaning": MEANING,
        "records": [asdict(r) for r in records],
        "summary": ratios,
        "targets": {name: {"bound": _bound(name, targets), "verdict": verdict(name, value, targets)}
                    for name, value in ratios.items()},
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------- Markdown
def _fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _sci(value: float | None) -> str:
    return "–" if value is None else f"{value:.1e}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _lengths(records: list[Record], mode: str) -> list[int]:
    return sorted({r.prompt_len for r in records if r.mode == mode})


def markdown(records: list[Record], settings: dict[str, Any], machine_info: dict[str, Any]) -> str:
    """The whole report as Markdown: one table per measured mode, then the summary against the targets."""
    out = [f"# δ-mem bench: {settings.get('shape_label', settings['shape'])} on {machine_info['device_name']} "
           f"({machine_info['device']}, {machine_info['dtype']}, {machine_info['attn']})", "",
           f"torch {machine_info['torch_version']}, transformers {machine_info['transformers_version']}, "
           f"{machine_info['cpu_count']} CPUs, {machine_info['torch_threads']} torch threads; medians of "
           f"{settings['repeats']} runs after {settings['warmup']} warm-up; 1-minute load average "
           f"{_load(settings, 'start')} at the start, {_load(settings, 'end')} at the end.", ""]
    out += _contention_note(settings, machine_info)
    out += _shape_note(settings)
    quantizations = settings.get("quantize") or _quantizations(records)
    out += _lane_section(records, "prefill", "Prefill", "s", 1.0, 3, quantizations)
    out += _lane_section(records, "decode", "Decode (per token, after the prompt)", "ms", 1000.0, 2, quantizations)
    out += _kernel_note(machine_info)
    out += _bandwidth_section(records, quantizations)
    out += _memory_section(records, quantizations)
    out += _ab_section(records)
    out += _scan_section(records, settings["repeats"])
    out += ["## Summary", ""]
    targets = targets_for(settings, machine_info)
    out += _table(["ratio", "value", "target", "verdict"],
                  [[name, _fmt(value), _bound(name, targets), verdict(name, value, targets)]
                   for name, value in summary(records, quantizations).items()])
    return "\n".join(out)


def _shape_note(settings: dict[str, Any]) -> list[str]:
    details = settings.get("shape_details")
    if not details:
        return []
    text = (f"Shape: {details['layers']} layers, hidden {details['hidden']}, {details['heads']} heads "
            f"({details['kv_heads']} KV) of {details['head_dim']}, FFN {details['ffn']}, vocabulary {details['vocab']}"
            f"{', tied embeddings' if details.get('tie_embeddings') else ''}")
    if "layers_of" in details or "vocab_of" in details:
        text += f" (the real {details['name']} has " + ", ".join(
            part for part in (f"{details['layers_of']} layers" if "layers_of" in details else "",
                              f"vocabulary {details['vocab_of']}" if "vocab_of" in details else "") if part) + ")"
    quantize = [q for q in settings.get("quantize") or [] if q != "none"]
    if quantize:
        text += f"; weights also quantized {', '.join(quantize)} (torchao, weight-only)"
    chunk = settings.get("prefill_chunk")
    if chunk:
        text += f"; prompts prefilled in spans of at most {chunk:,} tokens"
    return [text + ".", ""]


def _contention_note(settings: dict[str, Any], machine_info: dict[str, Any]) -> list[str]:
    """A warning when other work held CPUs that the bench's threads needed: then the numbers mislead."""
    load = settings.get("load_average_1m", {}).get("start")
    cpus, threads = machine_info["cpu_count"], machine_info["torch_threads"]
    if machine_info["device"] != "cpu" or load is None or load + threads <= cpus + 0.5:
        return []
    note = (f"**Warning:** other work kept about {load:.1f} of the {cpus} CPUs busy when the bench started, so the "
            "times are inflated, and not evenly.")
    if threads > 1:
        note += (f" With {threads} torch threads every parallel kernel can wait milliseconds for a descheduled "
                 "thread, which hurts the many small kernels of δ-mem most: rerun on a quiet machine or with "
                 "--threads 1.")
    return [note, ""]


def _load(settings: dict[str, Any], when: str) -> str:
    value = settings.get("load_average_1m", {}).get(when)
    return "unknown" if value is None else f"{value:.2f}"


def _lane_section(records: list[Record], mode: str, title: str, unit: str, scale: float, digits: int,
                  quantizations: list[str]) -> list[str]:
    rows = []
    several = len(quantizations) > 1
    for quantize in quantizations:
        for length in _lengths(records, mode):
            frozen = _find(records, mode, "frozen", length, quantize)
            delta = _find(records, mode, "delta", length, quantize)
            if frozen is None and delta is None:
                continue
            rows.append([str(length), *([quantize] if several else []), _fmt(frozen and frozen.seconds, scale, digits),
                         _fmt(frozen and frozen.tps, 1, 1), _fmt(delta and delta.seconds, scale, digits),
                         _fmt(delta and delta.tps, 1, 1),
                         _fmt(_ratio(records, mode, "delta", "frozen", length, quantize=quantize)),
                         *([_fmt(delta and delta.paired_ratio)] if mode == "decode" else [])])
    if not rows:
        return []
    header = ["prompt", *(["weights"] if several else []), f"frozen {unit}", "frozen tok/s", f"δ-mem {unit}",
              "δ-mem tok/s", "δ-mem / frozen", *(["paired steps"] if mode == "decode" else [])]
    note = (["paired steps: the median of δ-mem / frozen over pairs of single decode steps run back to back from "
             "the same position, which the machine's drift cannot split apart as it can whole turns.", ""]
            if mode == "decode" else [])
    return [f"## {title}", ""] + _table(header, rows) + note


def _kernel_note(machine_info: dict[str, Any]) -> list[str]:
    """Which kernel the lone lanes' decode steps ran on, and what the two took for one row (`runtime.kernels`)."""
    lines = []
    for m in machine_info.get("one_row_kernel") or []:
        rows, cols = m["matrix"]
        lines.append(f"One row times the model's largest decoder matrix ({rows:,} × {cols:,}, {m['dtype']}): oneDNN "
                     f"{m['onednn_ms']:.2f} ms, ATen's own kernel {m['aten_ms']:.2f} ms; single-row decode steps "
                     f"ran on {'ATen' if m['chosen'] == 'aten' else 'oneDNN'}'s.")
    return lines + [""] if lines else []


def _bandwidth_section(records: list[Record], quantizations: list[str]) -> list[str]:
    rows = []
    for quantize in quantizations:
        for length in _lengths(records, "decode"):
            frozen = _find(records, "decode", "frozen", length, quantize)
            delta = _find(records, "decode", "delta", length, quantize)
            if delta is None or delta.bytes_read is None or not delta.read_gbps:
                continue
            limit = delta.bytes_read / (delta.read_gbps * 1e9)
            rows.append([str(length), quantize, _fmt(delta.bytes_read / 1e6, 1, 1), _fmt(delta.read_gbps, 1, 2),
                         _fmt(delta.copy_gbps, 1, 2), _fmt(limit, 1000, 2), _fmt(frozen and frozen.bandwidth_fraction),
                         _fmt(delta.bandwidth_fraction)])
    if not rows:
        return []
    return ["## Decode against the memory bandwidth", "",
            "A decoded token reads every weight (of the input embedding one row) and the KV cache once: at the "
            "read rate measured between the repeats (a sum over a large buffer), that takes the limit below; the "
            "fractions are limit over measured time. The copy rate (bytes of the source) is shown beside it: a copy "
            "also writes, so it understates what memory can read.", ""] + _table(
                ["prompt", "weights", "δ-mem MB read", "read GB/s", "copy GB/s", "limit ms", "frozen reached",
                 "δ-mem reached"], rows)


def _memory_section(records: list[Record], quantizations: list[str]) -> list[str]:
    rows = []
    several = len(quantizations) > 1
    for quantize in quantizations:
        for length in _lengths(records, "memory"):
            frozen = _find(records, "memory", "frozen", length, quantize)
            delta = _find(records, "memory", "delta", length, quantize)
            if frozen is None and delta is None:
                continue
            weights = (delta or frozen).weight_gb
            rows.append([str(length), *([quantize] if several else []), _fmt(weights),
                         _fmt(frozen and frozen.peak_alloc_gb), _fmt(delta and delta.peak_alloc_gb),
                         _fmt(_ratio(records, "memory", "delta", "frozen", length, "peak_alloc_gb", quantize)),
                         _fmt(delta.peak_alloc_gb / weights if delta and weights else None),
                         _fmt(frozen and frozen.peak_increase_gb, 1024, 1),
                         _fmt(delta and delta.peak_increase_gb, 1024, 1)])
    if not rows:
        return []
    header = ["prompt", *(["weights"] if several else []), "weights GB", "frozen GB", "δ-mem GB", "δ-mem / frozen",
              "δ-mem / weights", "frozen turn MB", "δ-mem turn MB"]
    return ["## Peak memory (one turn)", "", MEANING["memory"] + ".", ""] + _table(header, rows)


def _ab_section(records: list[Record]) -> list[str]:
    rows = []
    for mode, turn in (("ab", "first"), ("ab-followup", "follow-up")):
        for length in _lengths(records, mode):
            found = [_find(records, mode, v, length) for v in ("batched", "sequential", "single")]
            decode_len = next(r.decode_len for r in found if r is not None)
            rows.append([turn, str(length), str(decode_len), *(_fmt(r and r.seconds) for r in found),
                         _fmt(_ratio(records, mode, "batched", "single", length))])
    if not rows:
        return []
    return ["## A/B turn (prefill + decode)", "",
            "batched: one two-row batch (row 0 memory off, row 1 on); sequential: the two rows one after the other; "
            "single: one δ-mem row. A first turn prefills the whole prompt from an empty cache; a follow-up turn "
            "finds the prompt in the cache and memory and prefills only a new message.", ""] + _table(
        ["turn", "prompt", "decode", "batched s", "sequential s", "single s", "batched / single"], rows)


def _scan_section(records: list[Record], repeats: int) -> list[str]:
    rows, once = [], []
    for length in _lengths(records, "scan"):
        naive, stepwise, chunked = (_find(records, "scan", v, length) for v in ("naive", "stepwise", "chunked"))
        if naive is not None and naive.repeats < repeats:
            once.append(str(length))
        rows.append([str(length), *(_fmt(r and r.seconds, 1000, 2) for r in (naive, stepwise, chunked)),
                     _fmt(_ratio(records, "scan", "naive", "chunked", length), 1, 1),
                     _sci(naive and naive.max_abs_diff), _sci(chunked and chunked.max_abs_diff)])
    if not rows:
        return []
    out = ["## Scan forms (N=1, r=8, float32)", ""] + _table(
        ["tokens", "naive ms", "stepwise ms", "chunked ms", "naive / chunked", "naive max abs diff",
         "chunked max abs diff"], rows)
    note = "Differences are to stepwise_scan."
    if once:
        note = (f"naive_scan ran once, without warm-up, at {', '.join(once)} tokens (its Python loop over tokens is "
                f"slow and steady); the other forms used every repeat. {note}")
    return out + [note, ""]
