"""The demo backbone: a small Qwen3 trained from scratch to answer questions from the facts in its context.

A plain language model on generated chats, with every fact asked after the history, the loss weighted on the
answers (other tokens 0.1), AdamW (0.9, 0.95) at a learning rate that stays flat until late. What makes retrieval
appear within a CPU budget is a curriculum: with one fact per chat the model learns to copy the value within a few
hundred steps, with one or two it learns to pick the fact the question names, and only then do longer chats with
up to four facts, small talk and full-length gaps come in. Without it, chats of one to three facts sat at chance
for 800 steps (measured), and every step on them costs more.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor

from deltamem.demo import DEMO_WINDOW
from deltamem.demo.data import TRAIN_SEEDS, Conversation, Shape, conversation, demo_shape
from deltamem.shapes import BackboneShape, qwen3_config
from deltamem.train.batch import Renderer
from deltamem.train.trainer import training_progress


@dataclass(frozen=True)
class BackboneSettings:
    """Shape and training schedule of the demo backbone."""

    layers: int = 4
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32
    ffn: int = 384
    rope_theta: float = 10_000.0
    steps: int = 2000
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 100
    decay_from: float = 0.8
    weight_decay: float = 0.01
    clip: float = 1.0
    seed: int = 0
    answer_weight: float = 1.0
    other_weight: float = 0.1
    one_fact_steps: int = 250
    two_fact_steps: int = 500
    long_share: float = 0.5


#: The curriculum's chats: one fact, then one or two, then up to four among small talk (short, cheap steps).
ONE_FACT = Shape(facts=(1, 1), between=(0, 0), gap_words=0, extra_gap=(0, 0))
TWO_FACTS = Shape(facts=(1, 2), between=(0, 0), gap_words=0, extra_gap=(0, 1))
SHORT = Shape(facts=(1, 4), between=(0, 1), gap_words=0, extra_gap=(0, 2))

#: Full-length chats as in the demo transcripts, a little longer still, so `--context full` stays in range.
LONG = replace(demo_shape(DEMO_WINDOW), extra_gap=(0, 4))


def make_config(tokenizer, settings: BackboneSettings):
    """A Qwen3 config of the demo shape for this tokenizer (tied embeddings, SDPA, 4,096 positions)."""
    shape = BackboneShape(layers=settings.layers, hidden=settings.hidden, heads=settings.heads,
                          kv_heads=settings.kv_heads, head_dim=settings.head_dim, ffn=settings.ffn,
                          vocab=len(tokenizer), tie_embeddings=True)
    return qwen3_config(shape, max_position_embeddings=4096, rope_theta=settings.rope_theta,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def lm_sequence(renderer: Renderer, chat: Conversation, settings: BackboneSettings) -> tuple[list[int], list[float]]:
    """The chat followed by all its questions and answers; each token's loss weight (answers weigh most)."""
    ids: list[int] = []
    weights: list[float] = []
    for turn in chat.turns:
        piece = renderer.message(turn.role, turn.content)
        ids += piece
        weights += [settings.other_weight] * len(piece)
    for query in chat.queries:
        prompt, reply = renderer.turn(query.question, query.reply)
        ids += list(prompt) + list(reply)
        weights += [settings.other_weight] * len(prompt) + [settings.answer_weight] * len(reply)
    return ids, weights


def shape_at(step: int, rng: random.Random, settings: BackboneSettings) -> Shape:
    """The curriculum: the shape of the chats of one step (all alike, so a batch has little padding)."""
    if step < settings.one_fact_steps:
        return ONE_FACT
    if step < settings.two_fact_steps:
        return TWO_FACTS
    return LONG if rng.random() < settings.long_share else SHORT


def draw(rng: random.Random, step: int, settings: BackboneSettings) -> list[Conversation]:
    """One step's chats, from seeds never used for demo transcripts."""
    shape = shape_at(step, rng, settings)
    return [conversation(TRAIN_SEEDS + rng.randrange(10**9), shape) for _ in range(settings.batch)]


def _batch(renderer: Renderer, chats: list[Conversation], settings: BackboneSettings, pad_id: int
           ) -> tuple[Tensor, Tensor, Tensor]:
    pairs = [lm_sequence(renderer, c, settings) for c in chats]
    length = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), length), pad_id, dtype=torch.long)
    weights = torch.zeros(len(pairs), length)
    mask = torch.zeros(len(pairs), length, dtype=torch.long)
    for row, (tokens, w) in enumerate(pairs):
        ids[row, :len(tokens)] = torch.tensor(tokens)
        weights[row, :len(w)] = torch.tensor(w)
        mask[row, :len(tokens)] = 1
    return ids, weights, mask


def lr_at(step: int, settings: BackboneSettings) -> float:
    """Warm-up, flat, then a linear decay over the last part (retrieval appears late; decay only after)."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    decay = int(settings.decay_from * settings.steps)
    if step < decay:
        return settings.lr
    return settings.lr * max(0.05, 1 - (step - decay) / max(1, settings.steps - decay))


def train_backbone(tokenizer, settings: BackboneSettings, *, console: Console | None = None):
    """Train the demo backbone from scratch (seeded) and return it in eval mode."""
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(settings.seed)
    config = make_config(tokenizer, settings)
    model = Qwen3ForCausalLM(config).train()
    renderer = Renderer(tokenizer)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.95))
    rng = random.Random(settings.seed)
    recent: list[float] = []
    with training_progress("training backbone", console) as progress:
        task = progress.add_task("backbone", total=settings.steps, status="")
        for step in range(settings.steps):
            ids, weights, mask = _batch(renderer, draw(rng, step, settings), settings, tokenizer.pad_token_id)
            lr = lr_at(step, settings)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            per_token = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
            w = weights[:, 1:].flatten()
            loss = (per_token * w).sum() / w.sum()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            recent = (recent + [loss.item()])[-20:]
            progress.update(task, advance=1, status=f"loss {sum(recent) / len(recent):.3f}")
    return model.eval()


def save_backbone(model, tokenizer, folder: str | Path) -> Path:
    """Weights (safetensors), config, generation config and tokenizer (template inside its JSON) in `folder`."""
    folder = Path(folder)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder, save_jinja_files=False)
    for path in folder.iterdir():
        path.chmod(0o644)                # package data: readable by everyone, like the files around it
    return folder


__all__ = ["LONG", "ONE_FACT", "SHORT", "TWO_FACTS", "BackboneSettings", "draw", "lm_sequence", "lr_at",
           "make_config", "save_backbone", "shape_at", "train_backbone"]
