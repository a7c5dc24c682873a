"""Supervised δ-mem adapter training on a frozen backbone, with the paper's episode protocol.

Each step: empty memory; one forward over a batch of episodes in which every history message is written into
memory as the app would write it (its window as context), then the question turn is read with writes on; the loss
is on the answer, and its gradient flows back through the memory state into the write pass. Only the adapter
learns. Batches are a pure function of (seed, step), parameters are kept in float32 (also when the backbone runs
in bf16) and checkpoints hold the optimizer state, so a resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from deltamem.adapter import attach_adapter, save_adapter
from deltamem.config import RELEASED_SETTINGS, DeltaMemConfig, OffTrainedDefaultsWarning
from deltamem.files import atomic_write_text
from deltamem.model import DeltaMemModel
from deltamem.train.batch import IGNORE, Batch, Renderer, collate, encode
from deltamem.train.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, restore_optimizer, save_checkpoint
from deltamem.train.episodes import Episode, EpisodeSource, step_rng

#: Settings that change the numbers; a resumed run must match them (the rest, e.g. where to save, may differ).
_RESUME_KEYS = ("steps", "lr", "batch", "seed", "dtype", "windows", "warmup", "min_lr_ratio", "weight_decay",
                "clip", "config", "init", "ov_init")

#: The released δ-mem settings (TSW, rank 8, α 16, corrections on q and o, β bias −1.5), init from the base.


@dataclass(frozen=True)
class TrainSettings:
    """One training run.

    `windows`: read windows in tokens (None = whole history), each episode draws one. `config`: the δ-mem config of
    a fresh adapter (official keys). `init`: an adapter folder to start from instead (its own config applies), e.g.
    the previous stage of a curriculum. `ov_init`: scale of `attention_init` for a fresh adapter (0: official init).
    """

    out: Path
    steps: int = 600
    lr: float = 5e-3
    batch: int = 32
    seed: int = 0
    windows: tuple[int | None, ...] = (None,)
    warmup: float = 0.1
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    clip: float = 1.0
    checkpoint_every: int = 100
    resume: bool = False
    formats: tuple[str, ...] = ("pt", "safetensors")
    config: dict = field(default_factory=lambda: dict(RELEASED_SETTINGS))
    init: Path | None = None
    ov_init: float = 0.1

    def to_json(self, dtype: torch.dtype | None = None) -> dict:
        """The settings as JSON, with the dtype the backbone runs in (it changes the numbers too)."""
        data = asdict(self)
        data["dtype"] = None if dtype is None else str(dtype).removeprefix("torch.")
        data["out"] = str(self.out)
        data["init"] = None if self.init is None else str(self.init)
        data["windows"] = list(self.windows)
        data["formats"] = list(self.formats)
        return data


@dataclass
class TrainResult:
    """The trained model, where its files went, and the per-step loss and answer accuracy."""

    model: DeltaMemModel
    files: list[Path]
    losses: list[float]
    accuracy: list[float]


def lr_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine down to `min_lr_ratio` of the peak."""
    warm = max(1, round(settings.warmup * settings.steps))
    if step < warm:
        return settings.lr * (step + 1) / warm
    progress = (step - warm) / max(1, settings.steps - warm)
    floor = settings.min_lr_ratio
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def answer_loss(model: torch.nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy over the answer tokens, and per row whether greedy decoding gives the whole answer."""
    if isinstance(model, DeltaMemModel):
        model.reset()
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                logits_to_keep=batch.keep)
    logits = out.logits[:, -batch.keep:].float()
    loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE)
    answer = batch.labels != IGNORE
    exact = ((logits.argmax(-1) == batch.labels) | ~answer).all(-1)
    return loss, exact


def make_batch(renderer: Renderer, episodes: Sequence[Episode], windows: Sequence[int | None], pad_id: int,
               dtype: torch.dtype) -> Batch:
    return collate([encode(renderer, e, w) for e, w in zip(episodes, windows)], pad_id, dtype)


@torch.no_grad()
def answer_accuracy(model: torch.nn.Module, renderer: Renderer, episodes: Sequence[Episode], window: int | None,
                    batch_size: int = 32, memory: bool = True) -> float:
    """Share of episodes whose answer greedy decoding reproduces exactly (teacher-forced, one forward a batch).

    `memory=False` scores a δ-mem model's frozen backbone (its rows with memory off).
    """
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    hits = 0
    for start in range(0, len(episodes), batch_size):
        chunk = episodes[start:start + batch_size]
        batch = make_batch(renderer, chunk, [window] * len(chunk), _pad_id(renderer.tokenizer), dtype).to(device)
        switch = model.rows(memory=[memory] * len(chunk)) if isinstance(model, DeltaMemModel) else nullcontext()
        with switch:
            hits += int(answer_loss(model, batch)[1].sum())
    return hits / max(1, len(episodes))


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def build_model(backbone: torch.nn.Module, settings: TrainSettings) -> DeltaMemModel:
    """Freeze the backbone and attach the adapter to train: freshly initialised (seeded), or `settings.init`."""
    for param in backbone.parameters():
        param.requires_grad_(False)
    torch.manual_seed(settings.seed)
    if settings.init is not None:
        model = attach_adapter(backbone.eval(), settings.init)
        for param in model.layers.parameters():
            param.requires_grad_(True)
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
        config = DeltaMemConfig.from_dict(dict(settings.config), source="training config", warn=False)
    model = DeltaMemModel(backbone.eval(), config)
    if settings.ov_init > 0:
        attention_init(model, settings.ov_init)
    return model


@torch.no_grad()
def attention_init(model: DeltaMemModel, scale: float) -> None:
    """Start the memory as a copy of each layer's own attention: why the adapter learns in tens of steps, not hundreds.

    `delta_o_proj · memory_v_proj` becomes the rank-r truncation of the layer's summed value-output circuit (times
    `scale`), and `memory_q_proj` starts equal to `memory_k_proj`, so a first read is a positively weighted average
    of what was written, passed through the circuit the backbone already uses to copy what it attends to. With the
    official init the reads start as random-signed mixtures and the adapter sat at chance for 250 steps or more
    even on one-fact chats (measured on the demo).
    """
    for name, layer in zip(model.layer_names, model.layers):
        attention = model.backbone.get_submodule(name)
        out, value = attention.o_proj.weight.float(), attention.v_proj.weight.float()
        head_dim = attention.head_dim
        heads, groups = out.shape[1] // head_dim, value.shape[0] // head_dim
        circuit = sum(out[:, h * head_dim:(h + 1) * head_dim]
                      @ value[(h * groups // heads) * head_dim:(h * groups // heads + 1) * head_dim]
                      for h in range(heads))
        left, singular, right = torch.linalg.svd(circuit)
        rank = layer.memory_v_proj.shape[0]
        root = (singular[:rank] * scale).sqrt()
        layer.memory_v_proj.copy_(root[:, None] * right[:rank])
        layer.delta_o_proj.copy_(left[:, :rank] * root[None, :])
        layer.memory_q_proj.copy_(layer.memory_k_proj)


def training_progress(label: str, console: Console | None = None) -> Progress:
    """The progress bar of a training run: steps done, time elapsed and left, and a `status` field (the loss)."""
    console = console or Console(stderr=True)
    columns = (TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    return Progress(*columns, console=console, disable=console.quiet)


def train(backbone: torch.nn.Module, tokenizer, source: EpisodeSource, settings: TrainSettings, *,
          console: Console | None = None, log: Callable[[int, float, float], None] | None = None) -> TrainResult:
    """Train an adapter for `backbone` on `source`; save it (official format) and checkpoints under `settings.out`.

    `log(step, loss, accuracy)` is called after every step (for tests and callers that keep their own records).
    """
    out = Path(settings.out)
    model = build_model(backbone, settings)
    renderer = Renderer(tokenizer)
    renderer.check(source.sample(0, 1)[0])
    params = dict(model.layers.named_parameters())
    names = [f"{model.layer_names[int(k.split('.', 1)[0])]}.{k.split('.', 1)[1]}" for k in params]
    runtime = list(params.values())
    masters = [p if p.dtype == torch.float32 else p.detach().float().clone().requires_grad_() for p in runtime]
    optimizer = torch.optim.AdamW(masters, lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay)
    start, losses, accuracy = 0, [], []
    checkpoint = out / CHECKPOINT
    pad_id, dtype = _pad_id(tokenizer), runtime[0].dtype
    record = settings.to_json(dtype)
    if settings.resume and checkpoint.exists():
        start, losses, accuracy = _resume(checkpoint, record, settings.steps, names, masters, optimizer)
        _copy(masters, runtime)
    with training_progress("training adapter", console) as progress:
        task = progress.add_task("train", total=settings.steps, completed=start, status="")
        for step in range(start, settings.steps):
            loss, acc = _step(model, renderer, source, settings, step, masters, runtime, optimizer, pad_id, dtype)
            losses.append(loss)
            accuracy.append(acc)
            if log is not None:
                log(step, loss, acc)
            recent = slice(-20, None)
            progress.update(task, advance=1, status=f"loss {_mean(losses[recent]):.3f} · "
                                                    f"exact {_mean(accuracy[recent]):.2f}")
            done = step + 1
            if done == settings.steps or (settings.checkpoint_every and done % settings.checkpoint_every == 0):
                save_checkpoint(checkpoint, done, dict(zip(names, masters)), optimizer,
                                {"settings": record, "losses": losses, "accuracy": accuracy})
    files = save_adapter(model, out, formats=settings.formats)
    files.append(atomic_write_text(out / "train_log.json", json.dumps(
        {"settings": record, "losses": losses, "accuracy": accuracy}, indent=1) + "\n"))
    return TrainResult(model, files, losses, accuracy)


def _step(model: DeltaMemModel, renderer: Renderer, source: EpisodeSource, settings: TrainSettings, step: int,
          masters: list[Tensor], runtime: list[Tensor], optimizer: torch.optim.Optimizer, pad_id: int,
          dtype: torch.dtype) -> tuple[float, float]:
    episodes = source.sample(step, settings.batch)
    rng = step_rng(settings.seed, step, salt=2)
    windows = [rng.choice(settings.windows) for _ in episodes]
    batch = make_batch(renderer, episodes, windows, pad_id, dtype).to(model.device)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, settings)
    loss, exact = answer_loss(model, batch)
    loss.backward()
    if masters[0] is not runtime[0]:
        for master, param in zip(masters, runtime):
            master.grad = param.grad.float()
            param.grad = None
    torch.nn.utils.clip_grad_norm_(masters, settings.clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _copy(masters, runtime)
    model.reset()
    return loss.item(), exact.float().mean().item()


def _copy(masters: Iterable[Tensor], runtime: Iterable[Tensor]) -> None:
    with torch.no_grad():
        for master, param in zip(masters, runtime):
            if master is not param:
                param.copy_(master)


def _resume(path: Path, now: dict, steps: int, names: list[str], masters: list[Tensor],
            optimizer: torch.optim.Optimizer) -> tuple[int, list[float], list[float]]:
    saved = load_checkpoint(path)
    before = saved.info.get("settings", {})
    for key in _RESUME_KEYS:
        if before.get(key) != now.get(key):
            raise CheckpointError(f"{path}: saved with {key}={before.get(key)!r}, but this run has {now.get(key)!r}; "
                                  "resume with the same settings or start a new output folder")
    if list(saved.params) != names:
        raise CheckpointError(f"{path}: holds parameters for another model")
    if saved.step > steps:
        raise CheckpointError(f"{path}: is at step {saved.step}, past the {steps} steps asked for")
    with torch.no_grad():
        for master, name in zip(masters, names):
            master.copy_(saved.params[name])
    restore_optimizer(optimizer, names, saved.optimizer)
    return saved.step, list(saved.info.get("losses", [])), list(saved.info.get("accuracy", []))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


__all__ = ["TrainResult", "TrainSettings", "answer_accuracy", "answer_loss", "attention_init",
           "build_model", "lr_at", "make_batch", "train", "training_progress"]
