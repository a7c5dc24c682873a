#!/usr/bin/env bash
# GPU check of what δ-mem costs on a real shape: Qwen3-4B with random weights (nothing is downloaded), bfloat16.
#   1. the bench at 512 and 4,096-token prompts (64 decoded tokens): δ-mem / frozen in prefill and per decoded
#      token (targets <= 1.05 and <= 1.02), peak memory, the A/B turn batched vs single lane, and the decode's
#      fraction of the memory bandwidth (weights and KV cache read per token against a measured read rate);
#   2. one A/B conversation through the app's runtime (chat template, both lanes; batched, sequential and the δ-mem
#      lane alone): a first turn of 4,096 tokens and a follow-up turn, with the batched-over-single ratio of the
#      follow-up (target <= 1.3).
# A few minutes on an H200 (repeats are kept small); results go to $OUT (default: gpu_check_out/), and the last
# lines printed are the figures for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-gpu_check_out}

if ! "$PY" -c "import torch, transformers, safetensors" 2>/dev/null; then
    "$PY" -m pip install --quiet "torch==2.13.0" transformers safetensors
fi
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

mkdir -p "$OUT"
"$PY" -m deltamem.bench --shape qwen3-4b --device cuda --dtype bfloat16 --prompt-lens 512,4096 --decode-len 64 \
    --modes prefill,decode,memory,ab --repeats 3 --warmup 1 --json "$OUT/bench.json" --markdown "$OUT/bench.md" \
    > "$OUT/bench.log"

# One A/B conversation through the runtime: first turn, follow-up turn, each three ways.
"$PY" -m deltamem.benchmarks.ab_check --shape qwen3-4b --device cuda --dtype bfloat16 --prompt-tokens 4096 \
    --message-tokens 32 --new-tokens 64 --json "$OUT/ab_turn.json" | tee "$OUT/ab_turn.log"

echo
cat "$OUT/bench.md"

"$PY" - "$OUT/bench.json" "$OUT/ab_turn.json" <<'EOF'
import json
import sys

bench, turn = (json.load(open(path)) for path in sys.argv[1:3])
machine = bench["machine"]
print(f"\n{machine['device_name']}, torch {machine['torch_version']}, {machine['dtype']}, {bench['settings']['shape_label']}")
lengths = sorted({r["prompt_len"] for r in bench["records"] if r["mode"] == "prefill"})
for length in lengths:
    found = {(r["mode"], r["lane"]): r for r in bench["records"]
             if r["prompt_len"] == length and r["mode"] in ("prefill", "decode")}
    for mode in ("prefill", "decode"):
        frozen, delta = found.get((mode, "frozen")), found.get((mode, "delta"))
        if frozen and delta:
            bound = "1.05" if mode == "prefill" else "1.02"
            print(f"{mode:8s} prompt {length:5d}: frozen {frozen['tps']:9.1f} tok/s, δ-mem {delta['tps']:9.1f} tok/s, "
                  f"δ-mem / frozen time {delta['seconds'] / frozen['seconds']:.3f} (target <= {bound})")
    decode = found.get(("decode", "delta"))
    if decode and decode.get("bandwidth_fraction"):
        print(f"decode   prompt {length:5d}: {decode['bytes_read'] / 1e9:.2f} GB read per token, copy "
              f"{decode['copy_gbps']:.0f} GB/s, {decode['bandwidth_fraction']:.2f} of the bandwidth")
for name, value in bench["summary"].items():
    if value is not None:
        print(f"{name:45s} {value:.3f}  ({bench['targets'][name]['verdict']})")
for name, value in turn["summary"].items():
    target = "  (target <= 1.3)" if name == "ab_batched_over_single_followup_turn_time" else ""
    print(f"runtime {name:37s} {value:.3f}{target}")
EOF
