"""The offline demo: a tiny word-level Qwen3 model and its δ-mem adapter, trained here on synthetic chats.

Both ship inside the package (`assets/base`, `assets/adapter`), so `deltamem-chat --adapter demo` runs on any CPU
without a download. `python -m deltamem.demo.build` retrains everything from scratch with fixed seeds.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
BASE_DIR = ASSETS / "base"
ADAPTER_DIR = ASSETS / "adapter"

#: The demo's context window in tokens: the question and about two exchanges, so stated facts soon fall out of it.
DEMO_WINDOW = 48

__all__ = ["ADAPTER_DIR", "ASSETS", "BASE_DIR", "DEMO_WINDOW"]
