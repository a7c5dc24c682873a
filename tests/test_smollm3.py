"""δ-mem on a SmolLM3 backbone, whose no-RoPE layers must be wrapped like the others."""

from __future__ import annotations

import pytest
import torch

from deltamem import DeltaMemConfig, DeltaMemModel
from deltamem.compat import cache_argument, output_cache
from deltamem.kv_cache import new_cache
from deltamem.testing import randomize_adapter

transformers = pytest.importorskip("transformers")


def _smollm3(attn: str) -> torch.nn.Module:
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    torch.manual_seed(0)
    config = SmolLM3Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, torch_dtype="float64")
    config._attn_implementation = attn
    return SmolLM3ForCausalLM(config).double().eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_smollm3_all_layers_wrapped_and_decode_equals_prefill(attn: str) -> None:
    backbone = _smollm3(attn)
    assert not backbone.model.layers[3].self_attn.use_rope, "the tiny config must include a no-RoPE layer"
    ids = torch.randint(3, 290, (1, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = backbone(input_ids=ids).logits
        model = DeltaMemModel(backbone, DeltaMemConfig(delta_heads=("q", "o"), output_init="base_slice_fixed"))
        randomize_adapter(model, seed=2)
        assert len(model.layer_names) == 4
        with model.rows(memory=[False]):
            assert torch.equal(model(input_ids=ids).logits, plain)
        full = model(input_ids=ids).logits
        assert not torch.allclose(full, plain, atol=1e-3)
        model.reset()
        stepped = _prefill_then_steps(model, ids)
        with model.rows(memory=[False]):
            plain_stepped = _prefill_then_steps(model, ids)
    # Eager attention takes its softmax in float32 even for a float64 model: allow the backbone's own gap.
    backbone_gap = (plain_stepped - plain).abs().max().item()
    assert (stepped - full).abs().max() <= max(1e-10, 10 * backbone_gap)


def _prefill_then_steps(model: DeltaMemModel, ids: torch.Tensor) -> torch.Tensor:
    kw = cache_argument(model)
    out = model(input_ids=ids[:, :12], use_cache=True, **{kw: new_cache(model)})
    parts, cache = [out.logits], output_cache(out)
    for t in range(12, ids.shape[1]):
        out = model(input_ids=ids[:, t:t + 1], use_cache=True, **{kw: cache})
        parts.append(out.logits)
        cache = output_cache(out)
    return torch.cat(parts, dim=1)
