"""`deltamem-chat train`: train a δ-mem adapter for a base model, on episodes, transcripts or the demo generator."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from deltamem_chat.aliases import resolve_base
from deltamem_chat.commands.options import fail
from deltamem_chat.transcripts import Message, TranscriptError, load_transcript

if TYPE_CHECKING:
    from deltamem.train.episodes import Episode, EpisodeSource


def transcript_episodes(folder: Path) -> list[Episode]:
    """Every probe of every transcript in `folder`: the messages before it, its question and expected answer."""
    from deltamem.train.episodes import Episode, EpisodeError

    episodes = []
    for path in sorted(folder.glob("*.jsonl")):
        transcript = load_transcript(path)
        seen: list[Message] = []
        for item in transcript.items:
            if isinstance(item, Message):
                seen.append(item)
            elif seen:
                episodes.append(Episode(tuple((m.role, m.content) for m in seen), item.question, item.answer))
    if not episodes:
        raise EpisodeError(f"{folder}: no transcript with probes (*.jsonl) here")
    return episodes


def episode_source(data: str, seed: int) -> EpisodeSource:
    """`demo` (the demo generator), an episodes .jsonl file, or a folder of transcripts."""
    from deltamem.train.episodes import EpisodeError, GeneratedSource, ListSource, read_episodes

    if data == "demo":
        from deltamem.demo.adapter import make_episode

        return GeneratedSource(make_episode, seed)
    path = Path(data)
    if path.is_dir():
        return ListSource(transcript_episodes(path), seed)
    if path.is_file():
        return ListSource(read_episodes(path), seed)
    raise EpisodeError(f"--data {data}: no such file or folder (or pass `demo`)")


def parse_windows(text: str) -> tuple[int | None, ...]:
    """`48`, `full` or a comma list such as `48,48,64,full` (each episode draws one)."""
    windows: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "full":
            windows.append(None)
        elif part.isascii() and part.isdigit() and len(part) <= 9 and int(part) > 0:
            windows.append(int(part))
        else:
            raise fail(f"--window {text!r}: expected token counts or `full`, comma-separated (e.g. 48,64,full)")
    return tuple(windows)


def register(app: typer.Typer) -> None:
    """Add the `train` command."""

    @app.command(name="train")
    def train_command(
        base: Annotated[str, typer.Option("--base", help="Base model to train for: a local transformers folder "
                                          "(weights + tokenizer), a hub id, or an alias such as `demo`.")],
        data: Annotated[str, typer.Option("--data", help="Training episodes: a .jsonl episodes file (one "
                                          '{"messages": [...], "question": ..., "answer": ...} a line), a folder of '
                                          "transcripts (every probe becomes an episode), or `demo` for the demo "
                                          "generator.")],
        out: Annotated[Path, typer.Option("--out", help="Output folder: the adapter (delta_mem_config.json, "
                                          "delta_mem_adapter.pt and .safetensors), checkpoint.safetensors, "
                                          "train_log.json.")],
        steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps.")] = 600,
        lr: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate (10% linear warm-up, then "
                                          "cosine to a tenth).")] = 5e-3,
        batch: Annotated[int, typer.Option("--batch", min=1, help="Episodes per step.")] = 32,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the adapter init and of the batch order.")] = 0,
        window: Annotated[str, typer.Option("--window", help="Read window(s) in tokens, as the app's window "
                                            "policy: `full`, `1024`, or a comma list each episode draws from "
                                            "(e.g. 48,48,64,full).")] = "full",
        device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
        dtype: Annotated[str, typer.Option("--dtype", help="Backbone dtype: auto (bf16 on CUDA, float32 on CPU), "
                                           "bfloat16 or float32; the adapter is trained in float32 either way.")]
        = "auto",
        resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/checkpoint.safetensors "
                                             "(same settings required).")] = False,
        checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=0, help="Save a checkpoint every N "
                                                      "steps (0: only at the end).")] = 100,
        init: Annotated[Path | None, typer.Option("--init", help="Start from this adapter folder (e.g. an earlier "
                                                  "stage of a curriculum) instead of a fresh adapter.")] = None,
    ) -> None:
        """Train a δ-mem adapter (released settings: rank 8, q/o corrections) on a frozen base model."""
        from deltamem.adapter import AdapterError
        from deltamem.config import ConfigError
        from deltamem.runtime.loading import LoadError, choose_runtime, load_base
        from deltamem.train import CheckpointError, EpisodeError, TemplateError, TrainSettings, train

        windows = parse_windows(window)
        try:
            source = episode_source(data, seed)
            tokenizer, backbone = load_base(resolve_base(base), choose_runtime(device, dtype, "sdpa"))
        except (LoadError, EpisodeError, TranscriptError) as exc:
            raise fail(str(exc)) from None
        settings = TrainSettings(out=out, steps=steps, lr=lr, batch=batch, seed=seed, windows=windows, resume=resume,
                                 checkpoint_every=checkpoint_every, init=init)
        console = Console(stderr=True)
        try:
            result = train(backbone, tokenizer, source, settings, console=console)
        except (CheckpointError, TemplateError, AdapterError, ConfigError) as exc:
            raise fail(str(exc)) from None
        console.print(f"adapter: {out} (final loss {result.losses[-1]:.3f})")
