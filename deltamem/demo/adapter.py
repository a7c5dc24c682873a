"""The demo adapter's training recipe: episodes and read windows shaped like what the app will show it.

The prototype recipe trained on the question alone after the history and lost recall in the app's conditions:
recent turns in the prompt, longer gaps after the last fact, writes left on while the question and answer are read.
Here every episode is a full demo-style chat with a random extra gap, mostly read through the demo window (so the
recent exchanges are in the prompt while the facts are not), sometimes through wider windows or the whole history
(so the memory learns not to spoil answers the context already holds), always with writes on during the read.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from deltamem.demo import DEMO_WINDOW
from deltamem.demo.data import TRAIN_SEEDS, conversation, demo_shape
from deltamem.train.episodes import Episode
from deltamem.train.trainer import TrainSettings

#: Chats as in the demo transcripts, with up to six more exchanges of small talk before the question.
ADAPTER_SHAPE = replace(demo_shape(DEMO_WINDOW), extra_gap=(0, 6))

#: Read windows drawn per episode (None = whole history): mostly the demo's own.
ADAPTER_WINDOWS: tuple[int | None, ...] = (DEMO_WINDOW,) * 6 + (32, 64, 96, None)

#: Adapter training seeds start here, clear of the backbone's and of every demo transcript's.
ADAPTER_SEEDS = 2 * TRAIN_SEEDS


def make_episode(rng: random.Random) -> Episode:
    """One chat and one of its questions, drawn from the step's random stream."""
    chat = conversation(ADAPTER_SEEDS + rng.randrange(10**9), ADAPTER_SHAPE)
    query = rng.choice(chat.queries)
    return Episode(tuple((t.role, t.content) for t in chat.turns), query.question, query.reply)


def adapter_settings(out: Path, steps: int = 600, seed: int = 0) -> TrainSettings:
    """The demo adapter's run: released δ-mem settings, recipe learning rate, safetensors output only."""
    return TrainSettings(out=out, steps=steps, lr=5e-3, batch=32, seed=seed, windows=ADAPTER_WINDOWS,
                         checkpoint_every=100, formats=("safetensors",))


__all__ = ["ADAPTER_SEEDS", "ADAPTER_SHAPE", "ADAPTER_WINDOWS", "adapter_settings", "make_episode"]
