"""The offline demo as shipped: small pickle-free assets, a replay where δ-mem recalls what the frozen lane cannot
see, a tokenizer that round-trips generated text and turns the rest into <unk>, and a build that runs end to end.

Fast: the demo model has 0.8 M parameters; the build test trains for a handful of steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deltamem.context import ContextPolicy
from deltamem.demo import ADAPTER_DIR, ASSETS, BASE_DIR, DEMO_WINDOW
from deltamem.demo.data import SLOT_BY_KEY, TRAIN_SEEDS, conversations, corpus_text
from deltamem.runtime.contract import GenerationSettings, LaneDone
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import load
from deltamem_chat.aliases import ALIASES, resolve_models
from deltamem_chat.cli import app
from deltamem_chat.transcripts import load_transcript

ROOT = Path(__file__).resolve().parent.parent
DEMO_TRANSCRIPTS = sorted((ROOT / "transcripts").glob("demo_*.jsonl"))


@pytest.fixture(scope="module")
def demo_model():
    models = resolve_models("demo", None)
    return load(models.adapter, models.base, device="cpu", names=models.names)


# ------------------------------------------------------------------------------------------------ shipped demo
def test_shipped_assets_are_small_packaged_and_pickle_free() -> None:
    files = [p for p in ASSETS.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    assert {p.suffix for p in files} <= {".json", ".safetensors", ".py"}
    for folder in (ASSETS, BASE_DIR, ADAPTER_DIR):
        assert (folder / "__init__.py").exists(), f"{folder} must be a package to be installed"


def test_demo_replay_remembers_what_the_frozen_lane_cannot_see(tmp_path: Path) -> None:
    """The CI check: headless A/B replay of a shipped demo transcript with the shipped weights, offline."""
    report = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["replay", str(DEMO_TRANSCRIPTS[0]), "--ab", "--adapter", "demo", "--headless",
                                      "--device", "cpu", "--report", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["config"]["context_policy"] == f"window:{DEMO_WINDOW}"
    answers = [p["answers"] for p in data["probes"]]
    assert any(a["delta"]["hit"] and not a["frozen"]["hit"] for a in answers), answers


def test_demo_transcripts_are_held_out_and_fit_the_window() -> None:
    assert len(DEMO_TRANSCRIPTS) >= 3
    for path in DEMO_TRANSCRIPTS:
        assert int(path.stem.split("_")[1]) < TRAIN_SEEDS
        transcript = load_transcript(path)
        assert str(transcript.meta.context) == f"window:{DEMO_WINDOW}"


def test_every_probed_fact_has_left_the_demo_window_when_it_is_asked(demo_model) -> None:
    """Counted with the demo tokenizer and the window policy the app uses, not estimated from words."""
    tokenizer, policy = demo_model.tokenizer, ContextPolicy(DEMO_WINDOW)

    def length(role: str, content: str) -> int:
        text = tokenizer.apply_chat_template([{"role": role, "content": content}], tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    for path in DEMO_TRANSCRIPTS:
        transcript = load_transcript(path)
        for before, probe in transcript.probe_positions():
            chat = [(m.role, m.content) for m in transcript.messages[:before]] + [("user", probe.question)]
            in_prompt = policy.select([length(*m) for m in chat], [role for role, _ in chat])
            assert probe.depends_on not in in_prompt, (path.name, probe.question)


def test_generated_text_round_trips_through_the_tokenizer(demo_model) -> None:
    tokenizer = demo_model.tokenizer
    for fragment in corpus_text():               # the vocabulary's sources, templates with holes included
        assert tokenizer.unk_token_id not in tokenizer(fragment, add_special_tokens=False)["input_ids"], fragment
    chats = list(conversations(0, 200))
    texts = {t.content for c in chats for t in c.turns} | {q.question for c in chats for q in c.queries}
    texts |= {q.reply for c in chats for q in c.queries}
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        decoded = tokenizer.decode(ids, skip_special_tokens=True)
        assert decoded == text
        assert tokenizer(decoded, add_special_tokens=False)["input_ids"] == ids


def test_demo_replies_re_tokenise_so_the_cache_is_kept(demo_model) -> None:
    """A reply that re-tokenised differently would force a read-only rebuild of the prompt every turn."""
    engine = ABEngine(demo_model.model, demo_model.tokenizer, policy=ContextPolicy(None))
    settings = GenerationSettings(max_new_tokens=16)
    for text in ("my dog is called rex.", "i baked a cake today.", "what is my dog called?"):
        done = [e for e in engine.turn(text, settings) if isinstance(e, LaneDone)]
        assert all(e.text and not e.stats.rebuilt for e in done), [(e.text, e.stats) for e in done]
    assert all(e.text.startswith("your dog is called") for e in done)


def test_unknown_words_become_unk_and_do_not_crash(demo_model) -> None:
    tokenizer = demo_model.tokenizer
    ids = tokenizer("Zürich's fjord ♥ 2024?? Ünïcode", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id in ids
    engine = ABEngine(demo_model.model, tokenizer, policy=ContextPolicy(DEMO_WINDOW))
    done = [e for e in engine.turn("Zürich's fjord ♥ 2024?? Ünïcode", GenerationSettings(max_new_tokens=8))
            if isinstance(e, LaneDone)]
    assert {e.lane for e in done} == {"frozen", "delta"}


def test_demo_alias_suggests_its_window_and_records_names_not_folders(demo_model) -> None:
    assert (demo_model.base, demo_model.adapter) == ("deltamem demo backbone", "deltamem demo adapter")
    alias = ALIASES["demo"]
    assert alias.context == ContextPolicy(DEMO_WINDOW) and f"last {DEMO_WINDOW} tokens" in alias.intro
    assert alias.intro_for(ContextPolicy(DEMO_WINDOW)) == alias.intro and alias.intro_for(ContextPolicy()) is None
    assert Path(alias.base) == BASE_DIR and Path(alias.adapter) == ADAPTER_DIR


def test_the_build_runs_end_to_end_and_its_output_loads(tmp_path: Path) -> None:
    """A few steps of each stage: the folders it writes load through the normal path, offline."""
    from rich.console import Console

    from deltamem.demo.backbone import BackboneSettings
    from deltamem.demo.build import build

    record = build(tmp_path, BackboneSettings(steps=4, batch=4, one_fact_steps=2, two_fact_steps=3), adapter_steps=6,
                   seed=0, console=Console(quiet=True), adapter_batch=4, eval_count=8)
    assert set(record["held_out"]["exact_answer"]) == {"frozen_window", "frozen_full", "delta_window", "delta_full"}
    assert json.loads((tmp_path / "build.json").read_text()) == record
    for folder in (tmp_path, tmp_path / "base", tmp_path / "adapter"):
        assert (folder / "__init__.py").exists()
    loaded = load(str(tmp_path / "adapter"), str(tmp_path / "base"), device="cpu")
    assert tuple(loaded.model.config.delta_heads) == ("q", "o")
    assert loaded.tokenizer.eos_token == "<|im_end|>"


def test_demo_eval_totals_the_recall_of_generated_chats(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deltamem_chat.cli import app

    report = tmp_path / "demo-eval.json"
    result = CliRunner().invoke(app, ["demo-eval", "--count", "2", "--report", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert (data["context"], data["seed"], data["count"]) == (f"window:{DEMO_WINDOW}", 500_000, 2)
    assert data["probes"] and {p["seed"] for p in data["probes"]} == {500_000, 500_001}
    hits = {lane: sum(p[lane]["hit"] for p in data["probes"]) for lane in ("frozen", "delta")}
    assert f"│ δ-mem  │  {hits['delta'] / len(data['probes']):.3f} │ {hits['delta']:>4} │" in result.stdout
    assert hits["delta"] > hits["frozen"], "the demo's point, on two chats"
    refused = CliRunner().invoke(app, ["demo-eval", "--seed", "999999999", "--count", "2"])
    assert refused.exit_code != 0 and "training range" in refused.output


def test_a_generated_document_buries_its_facts_at_their_depths_in_about_the_tokens_asked(demo_model,
                                                                                          tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo-data", "--out", str(tmp_path), "--document", "2000", "--seed", "7"])
    assert result.exit_code == 0, result.output
    transcript = load_transcript(tmp_path / "document_7.jsonl")
    [message] = transcript.messages
    assert message.document == "notes 7" and len(transcript.probes) == 3
    ids = demo_model.tokenizer(message.content, add_special_tokens=False)["input_ids"]
    assert demo_model.tokenizer.unk_token_id not in ids
    assert 2000 <= len(ids) <= 2100, "about the tokens asked"
    lines = message.content.split("\n")
    where = []
    for probe in transcript.probes:
        assert probe.depends_on == 0
        statements = {t.format(v=probe.answer) for t in SLOT_BY_KEY[probe.id].statements}
        holding = [i for i, line in enumerate(lines) if line in statements]
        assert len(holding) == 1, f"{probe.id} is stated once in the document"
        where.append(len(demo_model.tokenizer("\n".join(lines[:holding[0]]), add_special_tokens=False)["input_ids"]))
    assert [round(d / 2000, 1) for d in sorted(where)] == [0.2, 0.5, 0.8], "spread through it"
