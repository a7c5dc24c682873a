"""Mode `memory`: the peak memory of one turn, frozen lane vs δ-mem lane.

On CUDA, `torch.cuda.max_memory_allocated` over the turn (weights, KV cache and activations), in process: the
caching allocator does not blur it and the counter resets cleanly between lanes.

On CPU there is no such counter. tracemalloc does not see torch's allocations, and in one process the first lane's
freed memory stays in the C allocator's arenas and hides the second lane's peak. So each lane runs in a fresh
process (`python -m deltamem.bench --_child LANE ...`) that builds the same model, runs one turn and reports its
peak resident set size minus its RSS before the model was built, i.e. weights plus whatever the turn needed, the
same quantity as on CUDA. On Linux the high-water mark is reset after the build (/proc/self/clear_refs), so the peak
belongs to the turn alone; elsewhere it falls back to getrusage's ru_maxrss, which can also include the build.

The children run with glibc's mmap threshold fixed at 128 KiB (MALLOC_MMAP_THRESHOLD_), so that every large tensor
is mapped on allocation and returned to the system when freed. With the default sliding threshold, freed tensors
of a few MB stay in the heap and the peak RSS of two identical runs differed by a third: it measured the
allocator's history, not what the lane needs.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from deltamem.benchmarks.common import LANES, Settings, build_model, run_turn, token_ids
from deltamem.benchmarks.report import Record
from deltamem.model import DeltaMemModel
from deltamem.quantization import describe, storage_bytes

GB = 1024**3


class ChildError(RuntimeError):
    """A memory-measuring child process failed; the message carries the end of its error output."""


def memory_records(settings: Settings, prompt_lens: Sequence[int], decode_len: int,
                   quantizations: Sequence[str] = ("none",), models: dict[str, DeltaMemModel] | None = None
                   ) -> list[Record]:
    """Peak memory of one turn (prefill + decode) for each lane of each quantization at each prompt length (CUDA
    runs need `models`, one per quantization), with the bytes the model's weights hold."""
    records = []
    for quantize in quantizations:
        for length in prompt_lens:
            for lane in LANES:
                if settings.device.type == "cuda":
                    if not models or quantize not in models:
                        raise ValueError("measuring CUDA memory needs the models, built on that device")
                    peak, increase, weights = _cuda_peak(models[quantize], settings, lane, length, decode_len)
                else:
                    peak, increase, weights = _child_peak(settings, lane, length, decode_len, quantize)
                records.append(Record("memory", length, decode_len, lane=lane, quantize=quantize, peak_alloc_gb=peak,
                                      peak_increase_gb=increase, weight_gb=weights, repeats=1))
    return records


def model_bytes(model: DeltaMemModel) -> int:
    """What the model's weights hold: the backbone's (quantized or not) and δ-mem's."""
    return describe(model.backbone)["weight_bytes"] + sum(storage_bytes(p) for p in model.layers.parameters())


def _cuda_peak(model: DeltaMemModel, settings: Settings, lane: str, length: int, decode_len: int
               ) -> tuple[float, float, float]:
    prompt, decode = token_ids(settings, length), token_ids(settings, decode_len, salt=1)
    model.reset()
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(settings.device)
    torch.cuda.reset_peak_memory_stats(settings.device)
    run_turn(model, prompt, decode, [LANES[lane]])
    peak = torch.cuda.max_memory_allocated(settings.device)
    return peak / GB, (peak - before) / GB, model_bytes(model) / GB


def _child_peak(settings: Settings, lane: str, length: int, decode_len: int, quantize: str
                ) -> tuple[float, float | None, float]:
    command = [sys.executable, "-m", "deltamem.bench", "--_child", lane, "--shape", settings.shape,
               "--device", str(settings.device), "--dtype", str(settings.dtype).removeprefix("torch."),
               "--attn", settings.attn, "--prompt-lens", str(length), "--decode-len", str(decode_len),
               "--seed", str(settings.seed), "--threads", str(torch.get_num_threads()), "--quantize", quantize,
               "--prefill-chunk", str(settings.prefill_chunk)]
    command += ["--layers", str(settings.layers)] if settings.layers else []
    command += ["--vocab", str(settings.vocab_size)] if settings.vocab_size else []
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise ChildError(f"the {lane} memory measurement at {length} tokens failed: {tail}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["peak_gb"], result["increase_gb"], result["weight_gb"]


def child_main(settings: Settings, lane: str, length: int, decode_len: int, quantize: str = "none") -> int:
    """Entry point of the child process: build, reset the high-water mark, run one turn, print JSON."""
    import transformers.models.qwen3.modeling_qwen3  # noqa: F401  (code is not part of the model's memory)

    if quantize != "none":
        from deltamem.quantization import import_torchao

        import_torchao()                                   # nor is torchao's
    baseline = _rss_bytes()
    model = build_model(settings, quantize)
    gc.collect()
    held = _rss_bytes()
    exact = _reset_peak()
    run_turn(model, token_ids(settings, length), token_ids(settings, decode_len, salt=1), [LANES[lane]])
    peak = _peak_bytes()
    print(json.dumps({"peak_gb": (peak - baseline) / GB,
                      "increase_gb": (peak - held) / GB if exact else None, "weight_gb": model_bytes(model) / GB}))
    return 0


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_bytes() -> int:
    current = _status_kb("VmRSS")
    return current * 1024 if current is not None else _maxrss_bytes()


def _peak_bytes() -> int:
    peak = _status_kb("VmHWM")
    return peak * 1024 if peak is not None else _maxrss_bytes()


def _maxrss_bytes() -> int:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def _reset_peak() -> bool:
    """Set the high-water mark to the current RSS (Linux ≥ 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
