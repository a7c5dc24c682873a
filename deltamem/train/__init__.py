"""Training δ-mem adapters on a frozen backbone: episodes, the app-faithful batch layout, checkpoints, the loop.

    from deltamem.train import TrainSettings, ListSource, read_episodes, train
    result = train(backbone, tokenizer, ListSource(read_episodes("episodes.jsonl")), TrainSettings(out=Path("run")))
"""

from deltamem.train.batch import Renderer, TemplateError, collate, encode
from deltamem.train.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from deltamem.train.episodes import (
    Episode,
    EpisodeError,
    EpisodeSource,
    GeneratedSource,
    ListSource,
    read_episodes,
    write_episodes,
)
from deltamem.train.trainer import TrainResult, TrainSettings, answer_accuracy, train

__all__ = [
    "CHECKPOINT", "CheckpointError", "Episode", "EpisodeError", "EpisodeSource",
    "GeneratedSource", "ListSource", "Renderer", "TemplateError", "TrainResult", "TrainSettings", "answer_accuracy",
    "collate", "encode", "load_checkpoint", "read_episodes", "save_checkpoint", "train", "write_episodes",
]
