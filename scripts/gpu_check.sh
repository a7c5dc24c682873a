#!/usr/bin/env bash
# GPU check of what δ-mem costs on a real shape: Qwen3-4B with random weights (nothing is downloaded), bfloat16,
# a 4,096-token prompt and 64 decoded tokens. Prints tokens/s per lane and peak GPU memory, then the full report.
# About two minutes on an H200 (repeats are kept small); results go to $OUT (default: gpu_check_out/).
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
"$PY" -m deltamem.bench --shape qwen3-4b --device cuda --dtype bfloat16 --prompt-lens 4096 --decode-len 64 \
    --repeats 2 --warmup 1 --json "$OUT/bench.json" --markdown "$OUT/bench.md" > "$OUT/bench.log"

"$PY" - "$OUT/bench.json" <<'EOF'
import json
import sys

data = json.load(open(sys.argv[1]))
print(f"\n{data['machine']['device_name']}, torch {data['machine']['torch_version']}, {data['machine']['dtype']}")
for record in data["records"]:
    name = record["lane"] or record["variant"]
    if record["mode"] in ("prefill", "decode"):
        print(f"{record['mode']:8s} {name:7s} prompt {record['prompt_len']}: {record['tps']:10.1f} tokens/s")
    elif record["mode"] == "memory":
        print(f"memory   {name:7s} prompt {record['prompt_len']}: peak {record['peak_alloc_gb']:.2f} GB allocated")
for name, value in data["summary"].items():
    print(f"{name:42s} {'-' if value is None else f'{value:.3f}'}  ({data['targets'][name]['verdict']})")
EOF
echo
cat "$OUT/bench.md"

# One A/B turn through the app's runtime (chat template, both lanes, batched then sequential).
echo
"$PY" -m deltamem.benchmarks.ab_check --shape qwen3-4b --device cuda --dtype bfloat16 --prompt-tokens 4096 \
    --new-tokens 64 | tee "$OUT/ab_turn.log"
