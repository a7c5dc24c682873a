"""Rows are isolated: whatever one row's memory holds (NaN from a broken adapter), a row with memory off is the
frozen backbone exactly, and the memory never reads or writes the rows it does not serve."""

from __future__ import annotations

import pytest
import torch

from deltamem.runtime.contract import GenerationSettings, LaneDone
from tests.conftest import make_engine

MESSAGE = "My name is Ada and I live in Lisbon."


def _poison(model) -> None:
    """An adapter gone bad: NaN in one correction matrix and one memory projection of every layer."""
    with torch.no_grad():
        for layer in model.layers:
            layer.delta_o_proj.fill_(float("nan"))
            layer.memory_k_proj[0, 0] = float("nan")


@pytest.mark.parametrize("batched", [True, False])
def test_a_nan_adapter_leaves_the_frozen_lane_the_plain_backbone(batched: bool) -> None:
    engine = make_engine(batched=batched)
    _poison(engine.model)
    events = list(engine.turn(MESSAGE, GenerationSettings(max_new_tokens=10)))
    frozen = next(e.text for e in events if isinstance(e, LaneDone) and e.lane == "frozen")
    second = list(engine.turn("And my cat?", GenerationSettings(max_new_tokens=6)))     # decode after decode
    frozen_again = next(e.text for e in second if isinstance(e, LaneDone) and e.lane == "frozen")
    backbone = engine.model.detach()
    tokenizer = engine.tokenizer
    expected = []
    messages = [{"role": "user", "content": MESSAGE}]
    for reply, new in ((frozen, 10), (frozen_again, 6)):
        prompt = engine.renderer.ids(messages, True)
        with torch.no_grad():
            out = backbone.generate(torch.tensor([prompt]), max_new_tokens=new, do_sample=False,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        expected.append(tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True))
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And my cat?"}]
    assert [frozen, frozen_again] == expected
    assert engine.lanes["frozen"].state == {}


def test_memory_rows_alone_reach_the_memory(delta_model) -> None:
    """A frozen row between memory rows (not a contiguous slice): its state stays empty, its logits the backbone's,
    and the memory rows match running them without it."""
    model = delta_model()
    ids = torch.randint(0, 300, (3, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        with model.rows(memory=[True, False, True]):
            mixed = model(input_ids=ids).logits
            states = model.get_state()
        model.reset()
        with model.rows(memory=[False, False, False]):
            plain = model(input_ids=ids).logits
        model.reset()
        alone = model(input_ids=ids[[0, 2]]).logits
    assert torch.equal(mixed[1], plain[1])
    torch.testing.assert_close(mixed[[0, 2]], alone, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(state[1], torch.zeros_like(state[1])) for state in states.values())
    assert model.tokens_written == [12, 12]
