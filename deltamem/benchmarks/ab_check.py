"""One A/B turn on a random-weight model of a real shape: the runtime's speed and memory, with no download.

    python -m deltamem.benchmarks.ab_check --shape qwen3-4b --device cuda

Builds the backbone with random weights, a random adapter of the released shape (TSW, rank 8, q/o), a byte-level
tokenizer padded to the model's vocabulary, feeds a prompt of about `--prompt-tokens` tokens and decodes
`--new-tokens` tokens, then a follow-up message of about `--message-tokens` and its reply: in both lanes batched,
one after the other, and in the δ-mem lane alone. Prints time to first token and tokens/s per lane, each turn's
time, peak GPU memory (or peak RSS on CPU) and the batched-over-single ratios (`--json` writes them).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from deltamem.config import DeltaMemConfig
from deltamem.context import ContextPolicy
from deltamem.files import atomic_write_text
from deltamem.model import DeltaMemModel
from deltamem.quantization import MODES as QUANTIZATIONS
from deltamem.quantization import quantize_backbone
from deltamem.runtime.engine import ABEngine, GenerationSettings, LaneDone
from deltamem.runtime.loading import LoadError, choose_runtime
from deltamem.shapes import SHAPES, BackboneShape, describe, label, resolve
from deltamem.testing import byte_chatml_tokenizer, random_backbone, randomize_adapter


def build_model(shape: BackboneShape, device: str, dtype: torch.dtype, attn: str, quantize: str = "none"
                ) -> DeltaMemModel:
    """A random model of `shape` with a random released-shape adapter, its backbone quantized as asked."""
    backbone = random_backbone(shape, dtype=dtype, attn=attn, device=device)
    model = DeltaMemModel(backbone, DeltaMemConfig.released())
    randomize_adapter(model, seed=1)
    return quantize_backbone(model, quantize)


def build_engine(shape: str | BackboneShape, device: str, dtype: torch.dtype, attn: str, batched: bool,
                 model: DeltaMemModel | None = None) -> ABEngine:
    """An A/B engine on `model`, or on a new random model of `shape`; a byte-level tokenizer of its vocabulary."""
    shape = resolve(shape) if isinstance(shape, str) else shape
    model = model or build_model(shape, device, dtype, attn)
    tokenizer = byte_chatml_tokenizer(vocab_size=shape.vocab)
    return ABEngine(model, tokenizer, policy=ContextPolicy(), batched=batched)


def run_turn(engine: ABEngine, prompt: str, new_tokens: int, lanes: list[str] | None = None
             ) -> tuple[float, dict[str, LaneDone]]:
    """One turn of exactly `new_tokens` per lane; (wall seconds, each lane's LaneDone)."""
    settings = GenerationSettings(max_new_tokens=new_tokens, stop_at_eos=False)
    synchronize(engine.model.device)
    start = time.perf_counter()
    done = {e.lane: e for e in engine.turn(prompt, settings, lanes=lanes) if isinstance(e, LaneDone)}
    synchronize(engine.model.device)
    return time.perf_counter() - start, done


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


#: The follow-up message: about `--message-tokens` bytes of text (one token per byte).
FOLLOW_UP = "And what else do you remember from what I told you before? "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deltamem.benchmarks.ab_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen3-4b", choices=sorted(SHAPES), help="model shape (random weights)")
    parser.add_argument("--layers", type=int, help="decoder layers (default: the shape's own)")
    parser.add_argument("--vocab", type=int, help="vocabulary size (default: the shape's own)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, float32 on CPU), bfloat16, float32")
    parser.add_argument("--attn", default="auto", help="auto, eager, sdpa or flash_attention_2")
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                        help="weight-only quantization of the backbone (CPU, bfloat16)")
    parser.add_argument("--prompt-tokens", type=int, default=2048, help="approximate prompt length in tokens")
    parser.add_argument("--message-tokens", type=int, default=32, help="approximate follow-up message length")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per lane")
    parser.add_argument("--json", metavar="FILE", help="also write the timings and ratios as JSON to FILE")
    args = parser.parse_args(argv)
    try:
        choice = choose_runtime(args.device, args.dtype, args.attn, quantize=args.quantize)
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shape = resolve(args.shape, args.layers, args.vocab)
    prompt = ("The quick brown fox jumps over the lazy dog. " * (args.prompt_tokens // 45 + 1))[: args.prompt_tokens]
    message = (FOLLOW_UP * (args.message_tokens // len(FOLLOW_UP) + 1))[: args.message_tokens]
    print(f"shape {label(shape, args.shape)}, {choice.describe()}, prompt ≈ {args.prompt_tokens} tokens, follow-up "
          f"≈ {args.message_tokens}, {args.new_tokens} new tokens")
    model = build_model(shape, choice.device, choice.dtype, choice.attn, args.quantize)
    results: dict[str, dict[str, float]] = {}
    for name, batched, lanes in (("batched", True, None), ("sequential", False, None), ("single", True, ["delta"])):
        engine = build_engine(shape, choice.device, choice.dtype, choice.attn, batched, model)
        run_turn(engine, prompt[:200], 4, lanes)  # warm-up
        engine.reset()
        if choice.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        first, done = run_turn(engine, prompt, args.new_tokens, lanes)
        follow, _ = run_turn(engine, message, args.new_tokens, lanes)
        engine.reset()
        results[name] = {"first_turn_s": first, "followup_turn_s": follow}
        for lane, event in done.items():
            stats = event.stats
            print(f"{name:>10} {lane:>6}: ttft {stats.ttft_s:.3f} s, {stats.tokens_per_s or 0:.1f} tokens/s, "
                  f"{stats.tokens} tokens, {stats.written} written")
        print(f"{name:>10} turn: first {first:.2f} s, follow-up {follow:.2f} s wall, peak memory "
              f"{peak_memory_gb(choice.device):.2f} GiB")
        del engine
    ratios = {
        "ab_batched_over_single_turn_time": results["batched"]["first_turn_s"] / results["single"]["first_turn_s"],
        "ab_batched_over_sequential_turn_time": (results["batched"]["first_turn_s"]
                                                 / results["sequential"]["first_turn_s"]),
        "ab_batched_over_single_followup_turn_time": (results["batched"]["followup_turn_s"]
                                                      / results["single"]["followup_turn_s"]),
    }
    for key, value in ratios.items():
        print(f"{key:42s} {value:.3f}")
    if args.json:
        payload = {"shape": describe(shape, args.shape), "runtime": choice.describe(), "quantize": args.quantize,
                   "prompt_tokens": args.prompt_tokens, "message_tokens": args.message_tokens,
                   "new_tokens": args.new_tokens, "turns": results, "summary": ratios}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
