"""The fast paths compute what the plain ones do: on a CPU in bfloat16 the memory's small products run in float32
(`DeltaMemLayer.float_products`), with the inputs and outputs of the half-precision GEMMs they replace."""

from __future__ import annotations

import pytest
import torch

from deltamem.compat import cache_argument, output_cache
from deltamem.kv_cache import new_cache
from deltamem.memory import DeltaMemLayer
from deltamem.testing import random_delta_model


def _prefill_then_decode(float_products: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[torch.Tensor, dict]:
    monkeypatch.setattr(DeltaMemLayer, "float_products", property(lambda self: float_products))
    model = random_delta_model(attn="sdpa", dtype=torch.bfloat16)
    ids = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    cache, kw = new_cache(model), cache_argument(model)
    with torch.no_grad(), model.rows(memory=[False, True]):
        out = model(input_ids=ids[:, :20], use_cache=True, **{kw: cache})
        logits = [out.logits]
        for t in range(20, 24):
            out = model(input_ids=ids[:, t:t + 1], use_cache=True, **{kw: output_cache(out)})
            logits.append(out.logits)
    return torch.cat(logits, dim=1).float(), model.get_state()


def test_float_products_match_the_half_precision_products(monkeypatch: pytest.MonkeyPatch) -> None:
    assert random_delta_model(dtype=torch.bfloat16).layers[0].float_products        # the CPU's bf16 default
    fast, fast_state = _prefill_then_decode(True, monkeypatch)
    plain, plain_state = _prefill_then_decode(False, monkeypatch)
    assert torch.equal(fast[0], plain[0]), "the frozen row never sees the memory"
    torch.testing.assert_close(fast, plain, atol=1e-2, rtol=1e-2)          # a bf16 rounding here and there
    for name, state in fast_state.items():
        assert state.dtype == torch.float32
        torch.testing.assert_close(state, plain_state[name], atol=1e-2, rtol=1e-2)


def test_float_products_are_for_half_precision_on_a_cpu() -> None:
    assert not random_delta_model(dtype=torch.float32).layers[0].float_products
    layer = random_delta_model(dtype=torch.bfloat16).layers[0]
    assert all(p.dtype == torch.bfloat16 for p in layer.parameters()), "the parameters stay in the model dtype"
