"""Adapter training and the demo data generator: toy runs learn and resume, generated chats are sound.

Fast: the demo model is tiny and the training runs use the random `tiny` backbone for a few steps.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deltamem import attach_adapter
from deltamem.demo import DEMO_WINDOW
from deltamem.demo.data import SLOTS, TRAIN_SEEDS, conversation, conversations, corpus_text, demo_shape
from deltamem.demo.tokenizer import build_tokenizer
from deltamem.testing import byte_chatml_tokenizer, random_backbone
from deltamem.train import (
    CHECKPOINT,
    CheckpointError,
    Episode,
    ListSource,
    TrainSettings,
    collate,
    encode,
    train,
    write_episodes,
)
from deltamem.train.batch import Renderer
from deltamem.train.trainer import build_model
from deltamem_chat.cli import app
from deltamem_chat.scoring import is_hit
from deltamem_chat.transcripts import load_transcript


# --------------------------------------------------------------------------------------------- generator, CLI
def test_generator_is_seeded_and_the_newest_value_wins() -> None:
    assert conversation(7) == conversation(7) and conversation(7) != conversation(8)
    updated = 0
    for chat in conversations(0, 300):
        for query in chat.queries:
            source = chat.turns[query.source].content
            assert is_hit(source, query.value)
            later = [t.content for t in chat.turns[query.source + 1:] if t.role == "user"]
            slot = next(s for s in SLOTS if s.key == query.slot)
            stated_later = [t for t in later if any(t == u.format(v=v) for u in (*slot.statements, *slot.updates)
                                                   for v in slot.values)]
            assert not stated_later, (chat.seed, query)
            updated += source.split()[0] in {u.split()[0] for u in slot.updates}
    assert updated > 10


def test_demo_data_cli_writes_valid_transcripts(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo-data", "--seed", "5", "--count", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    paths = sorted(tmp_path.glob("demo_*.jsonl"))
    assert [p.name for p in paths] == ["demo_5.jsonl", "demo_6.jsonl", "demo_7.jsonl"]
    for path in paths:
        transcript = load_transcript(path)
        for before, probe in transcript.probe_positions():
            assert is_hit(transcript.messages[probe.depends_on].content, probe.answer)
            words = sum(len(m.content.split()) for m in transcript.messages[probe.depends_on + 1:before])
            assert words >= 0.75 * DEMO_WINDOW
    refused = CliRunner().invoke(app, ["demo-data", "--seed", str(TRAIN_SEEDS - 1), "--count", "2", "--out",
                                       str(tmp_path)])
    assert refused.exit_code != 0 and "training range" in refused.output


def test_train_help_documents_every_option() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--base", "--data", "--out", "--steps", "--lr", "--batch", "--seed", "--device", "--dtype",
                   "--resume", "--checkpoint-every", "--window", "--init"):
        assert option in result.output


def test_train_cli_trains_from_an_episodes_file_and_resumes(tiny_model_dirs, tmp_path: Path) -> None:
    base, _ = tiny_model_dirs
    episodes = tmp_path / "episodes.jsonl"
    write_episodes(_toy_episodes(), episodes)
    out = tmp_path / "adapter"
    common = ["train", "--base", str(base), "--data", str(episodes), "--steps", "4", "--batch", "2", "--device", "cpu",
              "--window", "24,full", "--checkpoint-every", "2"]
    args = [*common, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {"delta_mem_config.json", "delta_mem_adapter.pt", "delta_mem_adapter.safetensors", CHECKPOINT,
            "train_log.json"} <= {p.name for p in out.iterdir()}
    again = CliRunner().invoke(app, [*args, "--resume", "--lr", "0.1"])
    assert again.exit_code != 0 and "lr" in again.output
    missing = CliRunner().invoke(app, ["train", "--base", str(base), "--data", str(tmp_path / "nope.jsonl"), "--out",
                                       str(out)])
    assert missing.exit_code != 0 and "no such file" in " ".join(missing.output.split())
    no_init = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "next"), "--init", str(tmp_path / "none")])
    assert no_init.exit_code != 0 and "none" in no_init.output and "Traceback" not in no_init.output, no_init.output
    continued = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "next"), "--init", str(out)])
    assert continued.exit_code == 0, continued.output


# ------------------------------------------------------------------------------------------------ training
def _toy_episodes() -> list[Episode]:
    rng = random.Random(0)
    episodes = []
    for _ in range(8):
        pet, colour = rng.choice(["rex", "max", "ida", "bo"]), rng.choice(["red", "tan", "sky"])
        history = (("user", f"dog {pet}"), ("assistant", "ok"), ("user", f"hue {colour}"), ("assistant", "ok"),
                   ("user", "hi there"), ("assistant", "hello"))
        question, answer = rng.choice([("dog?", pet), ("hue?", colour)])
        episodes.append(Episode(history, question, answer))
    return episodes


def _toy_run(out: Path, steps: int = 6, **overrides) -> tuple[object, list[float]]:
    settings = TrainSettings(out=out, steps=steps, **({"lr": 3e-2, "batch": 4, "seed": 3, "windows": (None, 24),
                                                       "warmup": 0.0, "checkpoint_every": 3} | overrides))
    backbone = random_backbone("tiny", attn="sdpa", seed=1)
    return train(backbone, byte_chatml_tokenizer(), ListSource(_toy_episodes(), seed=3), settings,
                 console=_quiet()), settings


def _quiet():
    from rich.console import Console

    return Console(quiet=True)


def test_toy_training_lowers_the_loss_and_saves_a_loadable_adapter(tmp_path: Path) -> None:
    result, _ = _toy_run(tmp_path, steps=30)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.4, result.losses
    assert (tmp_path / "delta_mem_adapter.pt").exists() and (tmp_path / CHECKPOINT).exists()
    loaded = attach_adapter(random_backbone("tiny", attn="sdpa", seed=1), tmp_path)
    for key, value in result.model.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[key], value), key


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    whole, _ = _toy_run(tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop_after_four(step: int, loss: float, accuracy: float) -> None:
        if step == 4:
            raise Stop

    settings = TrainSettings(out=tmp_path / "cut", steps=6, lr=3e-2, batch=4, seed=3, windows=(None, 24),
                             warmup=0.0, checkpoint_every=3)
    with pytest.raises(Stop):
        train(random_backbone("tiny", attn="sdpa", seed=1), byte_chatml_tokenizer(),
              ListSource(_toy_episodes(), seed=3), settings, console=_quiet(), log=stop_after_four)
    resumed, _ = _toy_run(tmp_path / "cut", resume=True)
    assert resumed.losses == whole.losses
    for key, value in whole.model.adapter_state_dict().items():
        assert torch.equal(resumed.model.adapter_state_dict()[key], value), key
    with pytest.raises(CheckpointError, match="lr"):
        _toy_run(tmp_path / "cut", resume=True, lr=2e-2)


def test_windowed_batches_mask_what_the_app_would_not_show() -> None:
    tokenizer = build_tokenizer(corpus_text())
    renderer = Renderer(tokenizer)
    chat = conversation(11, demo_shape(DEMO_WINDOW))
    episode = Episode(tuple((t.role, t.content) for t in chat.turns), chat.queries[0].question,
                      chat.queries[0].reply)
    renderer.check(episode)
    windowed, full = encode(renderer, episode, DEMO_WINDOW), encode(renderer, episode, None)
    assert windowed.ids == full.ids
    batch = collate([windowed, full], tokenizer.pad_token_id)
    assert batch.attention_mask.shape == (2, 1, len(full.ids), len(full.ids))
    question_row = batch.attention_mask[0, 0, -1] == 0
    fact = [i for i, s in enumerate(windowed.segments) if s == chat.queries[0].source]
    assert not question_row[fact].any(), "the fact lies outside the window the question sees"
    assert (batch.attention_mask[1, 0, -1] == 0).all(), "the full-context row sees everything before it"
    seen = sum(len(renderer.message(*episode.messages[i])) for i in windowed.sees[-1])
    assert seen + len(renderer.message("user", episode.question)) <= DEMO_WINDOW


def test_attention_init_starts_the_memory_as_each_layers_value_output_circuit(tmp_path: Path) -> None:
    backbone = random_backbone("tiny", attn="sdpa", seed=1)
    model = build_model(backbone, TrainSettings(out=tmp_path, ov_init=0.5))
    for name, layer in zip(model.layer_names, model.layers):
        attention = backbone.get_submodule(name)
        heads = attention.o_proj.weight.shape[1] // attention.head_dim
        kv_heads = attention.v_proj.weight.shape[0] // attention.head_dim
        value = attention.v_proj.weight.view(kv_heads, attention.head_dim, -1)
        value = value.repeat_interleave(heads // kv_heads, dim=0).reshape(heads * attention.head_dim, -1)
        left, singular, right = torch.linalg.svd(attention.o_proj.weight @ value)
        rank = layer.memory_v_proj.shape[0]
        best = left[:, :rank] @ torch.diag(singular[:rank]) @ right[:rank]
        torch.testing.assert_close(layer.delta_o_proj @ layer.memory_v_proj, 0.5 * best, atol=1e-5, rtol=1e-4)
        assert torch.equal(layer.memory_q_proj, layer.memory_k_proj)
    official = build_model(random_backbone("tiny", attn="sdpa", seed=1), TrainSettings(out=tmp_path, ov_init=0.0))
    assert not torch.equal(official.layers[0].memory_q_proj, official.layers[0].memory_k_proj)
