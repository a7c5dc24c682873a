"""`python -m deltamem.demo.build --out deltamem/demo/assets`: retrain the whole offline demo from scratch.

Tokenizer from the generator's vocabulary, backbone trained on generated chats with the facts in context, then the
δ-mem adapter trained on the frozen backbone (`deltamem.train`), everything from fixed seeds. Writes `base/` (a
transformers model folder) and `adapter/` (the official δ-mem adapter layout, safetensors) under `--out`, each a
Python package so that they install with deltamem, and `build.json` with the settings, timings and held-out
teacher-forced accuracies.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console

from deltamem.demo import DEMO_WINDOW
from deltamem.demo.adapter import STAGES, train_adapter
from deltamem.demo.backbone import BackboneSettings, save_backbone, train_backbone
from deltamem.demo.data import conversations, corpus_text, demo_shape
from deltamem.demo.tokenizer import build_tokenizer
from deltamem.files import atomic_write_text
from deltamem.runtime.contract import DELTA, LANE_NAMES
from deltamem.train.batch import Renderer
from deltamem.train.episodes import Episode
from deltamem.train.trainer import answer_accuracy

ADAPTER_FILES = ("delta_mem_config.json", "delta_mem_adapter.safetensors")

#: Held-out chats for the accuracies in build.json (seeds below the training range, above the shipped ones).
EVAL_SEED, EVAL_COUNT = 900_000, 256


def held_out(count: int = EVAL_COUNT) -> list[Episode]:
    """Demo-style chats never trained on, each with its first question."""
    return [Episode(tuple((t.role, t.content) for t in c.turns), c.queries[0].question, c.queries[0].reply)
            for c in conversations(EVAL_SEED, count, demo_shape(DEMO_WINDOW))]


def _package(folder: Path, what: str) -> None:
    """Make a folder an (empty) Python package, so setuptools ships its JSON and safetensors files."""
    init = folder / "__init__.py"
    if not init.exists():
        atomic_write_text(init, f'"""{what} (data only: see deltamem.demo.build)."""\n')


def build(out: Path, backbone_settings: BackboneSettings, adapter_steps: int, seed: int, console: Console, *,
          adapter_batch: int = 32, eval_count: int = EVAL_COUNT) -> dict:
    """Train tokenizer, backbone and adapter into `out`; return what build.json records (accuracies over
    `eval_count` held-out chats)."""
    started = time.perf_counter()
    tokenizer = build_tokenizer(corpus_text())
    backbone = train_backbone(tokenizer, backbone_settings, console=console)
    backbone_s = time.perf_counter() - started
    base_dir, adapter_dir = out / "base", out / "adapter"
    save_backbone(backbone, tokenizer, base_dir)
    with tempfile.TemporaryDirectory(prefix="deltamem-demo-") as work:
        result = train_adapter(backbone, tokenizer, Path(work), adapter_steps, seed, console, batch=adapter_batch)
        adapter_dir.mkdir(parents=True, exist_ok=True)
        for name in ADAPTER_FILES:
            shutil.copyfile(Path(work) / f"stage{len(STAGES)}" / name, adapter_dir / name)
    _package(out, "The demo model's files")
    _package(base_dir, "The demo backbone: a transformers model folder")
    _package(adapter_dir, "The demo δ-mem adapter")
    total_s = time.perf_counter() - started
    renderer, episodes, model = Renderer(tokenizer), held_out(eval_count), result.model
    accuracy = {f"{lane}_{'full' if window is None else 'window'}":
                answer_accuracy(model, renderer, episodes, window, memory=lane == DELTA)
                for lane in LANE_NAMES for window in (DEMO_WINDOW, None)}
    record = {
        "backbone": asdict(backbone_settings),
        "adapter": {"steps": adapter_steps, "batch": adapter_batch,
                    "stages": [{"name": st.name, "windows": list(st.windows), "share": st.share} for st in STAGES]},
        "seconds": {"backbone": round(backbone_s, 1), "total": round(total_s, 1)},
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "held_out": {"seeds": [EVAL_SEED, EVAL_SEED + eval_count - 1], "window": DEMO_WINDOW,
                     "exact_answer": {k: round(v, 4) for k, v in accuracy.items()}},
        "parameters": {"backbone": sum(p.numel() for p in backbone.parameters()),
                       "adapter": sum(t.numel() for t in model.adapter_state_dict().values())},
    }
    atomic_write_text(out / "build.json", json.dumps(record, indent=1) + "\n")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deltamem.demo.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where base/ and adapter/ go "
                        "(deltamem/demo/assets to replace the shipped demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--backbone-steps", type=int, default=BackboneSettings.steps,
                        help=f"backbone training steps (default {BackboneSettings.steps})")
    parser.add_argument("--adapter-steps", type=int, default=1200,
                        help="adapter training steps, all curriculum stages together (default 1200)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    settings = BackboneSettings(steps=args.backbone_steps, seed=args.seed)
    record = build(args.out, settings, args.adapter_steps, args.seed, console)
    console.print(json.dumps(record["held_out"]), f"{record['seconds']['total'] / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
