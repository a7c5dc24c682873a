"""One A/B turn on a random-weight model of a real shape: the runtime's speed and memory, with no download.

    python -m deltamem.benchmarks.ab_check --shape qwen3-4b --device cuda

Builds the backbone with random weights, a random adapter of the released shape (TSW, rank 8, q/o), a byte-level
tokenizer padded to the model's vocabulary, feeds a prompt of about `--prompt-tokens` tokens and decodes
`--new-tokens` tokens in both lanes, batched and then one after the other. Prints time to first token and tokens/s
per lane, and peak GPU memory (or peak RSS on CPU).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from deltamem.config import DeltaMemConfig
from deltamem.context import ContextPolicy
from deltamem.model import DeltaMemModel
from deltamem.runtime.engine import ABEngine, GenerationSettings, LaneDone
from deltamem.runtime.loading import LoadError, choose_runtime
from deltamem.shapes import SHAPES
from deltamem.testing import byte_chatml_tokenizer, random_backbone, randomize_adapter


def build_engine(shape: str, device: str, dtype: torch.dtype, attn: str, batched: bool) -> ABEngine:
    """A random model of `shape` with a random released-shape adapter, in an A/B engine."""
    backbone = random_backbone(shape, dtype=dtype, attn=attn, device=device)
    model = DeltaMemModel(backbone, DeltaMemConfig.released())
    randomize_adapter(model, seed=1)
    tokenizer = byte_chatml_tokenizer(vocab_size=SHAPES[shape].vocab)
    return ABEngine(model, tokenizer, policy=ContextPolicy(), batched=batched)


def run_turn(engine: ABEngine, prompt: str, new_tokens: int) -> dict[str, LaneDone]:
    settings = GenerationSettings(max_new_tokens=new_tokens, stop_at_eos=False)  # every turn: exactly new_tokens
    done = {e.lane: e for e in engine.turn(prompt, settings) if isinstance(e, LaneDone)}
    engine.reset()
    return done


def peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deltamem.benchmarks.ab_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen3-4b", choices=sorted(SHAPES), help="model shape (random weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, float32 on CPU), bfloat16, float32")
    parser.add_argument("--attn", default="auto", help="auto, eager, sdpa or flash_attention_2")
    parser.add_argument("--prompt-tokens", type=int, default=2048, help="approximate prompt length in tokens")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per lane")
    args = parser.parse_args(argv)
    try:
        choice = choose_runtime(args.device, args.dtype, args.attn)
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prompt = ("The quick brown fox jumps over the lazy dog. " * (args.prompt_tokens // 45 + 1))[: args.prompt_tokens]
    print(f"shape {args.shape}, {choice.describe()}, prompt ≈ {args.prompt_tokens} tokens, "
          f"{args.new_tokens} new tokens")
    for batched in (True, False):
        engine = build_engine(args.shape, choice.device, choice.dtype, choice.attn, batched)
        run_turn(engine, prompt[:200], 4)  # warm-up
        if choice.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        done = run_turn(engine, prompt, args.new_tokens)
        wall = time.perf_counter() - start
        mode = "batched" if batched else "sequential"
        for lane, event in done.items():
            stats = event.stats
            print(f"{mode:>10} {lane:>6}: ttft {stats.ttft_s:.3f} s, {stats.tokens_per_s or 0:.1f} tokens/s, "
                  f"{stats.tokens} tokens, {stats.written} written")
        print(f"{mode:>10} turn: {wall:.2f} s wall, peak memory {peak_memory_gb(choice.device):.2f} GiB")
        del engine
    return 0


if __name__ == "__main__":
    sys.exit(main())
