"""Weight-only quantization (torchao) of the backbone: the model loads and answers through both lanes, δ-mem's own
matrices and its state keep their dtypes, and every way it cannot run here is one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from deltamem.context import ContextPolicy
from deltamem.quantization import QuantizationError, is_quantized, quantize_backbone, storage_bytes
from deltamem.runtime.contract import GenerationSettings, LaneDone
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadError, choose_runtime, load
from deltamem.shapes import BackboneShape
from deltamem.testing import byte_chatml_tokenizer, printable_only, random_delta_model

pytest.importorskip("torchao")

#: Tiny, but wide enough for int4's groups of 128 columns (tied embeddings, like the released model).
SHAPE = BackboneShape(layers=2, hidden=128, heads=4, kv_heads=2, head_dim=32, ffn=256, vocab=304, tie_embeddings=True)


def _model(mode: str):
    model = random_delta_model(attn="sdpa", dtype=torch.bfloat16, shape=SHAPE)
    printable_only(model.backbone)
    before = {name: (p.dtype, p.detach().clone()) for name, p in model.layers.named_parameters()}
    return quantize_backbone(model, mode), before


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_models_answer_through_both_lanes(mode: str) -> None:
    model, before = _model(mode)
    backbone = model.backbone
    linears = [m for m in backbone.modules() if isinstance(m, nn.Linear) and m is not backbone.lm_head]
    assert linears and all(is_quantized(m.weight) for m in linears)
    assert not is_quantized(backbone.get_input_embeddings().weight), "the embedding stays in the model dtype"
    for name, param in model.layers.named_parameters():          # δ-mem's own matrices: untouched
        dtype, value = before[name]
        assert not is_quantized(param) and param.dtype == dtype and torch.equal(param, value), name
    assert model.state_dtype == torch.float32
    weights = sum(storage_bytes(m.weight) for m in linears)
    assert weights < sum(m.weight.numel() for m in linears) * (1.1 if mode == "int8" else 0.7)

    settings = GenerationSettings(max_new_tokens=6)
    replies = {}
    for batched in (True, False):
        engine = ABEngine(model, byte_chatml_tokenizer(), policy=ContextPolicy(), batched=batched)
        done = [e for e in engine.turn("My name is Ada.", settings) if isinstance(e, LaneDone)]
        assert {e.lane for e in done} == {"frozen", "delta"} and all(e.stats.tokens > 0 for e in done)
        replies[batched] = {e.lane: e.text for e in done}
        states = engine.lanes["delta"].state.values()
        assert states and all(state.dtype == torch.float32 for state in states)
    prompt = engine.renderer.ids([{"role": "user", "content": "My name is Ada."}], True)
    with torch.no_grad(), model.rows(memory=[False]):
        out = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                             eos_token_id=engine.tokenizer.eos_token_id, pad_token_id=engine.tokenizer.pad_token_id)
    assert replies[False]["frozen"] == engine.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)


def test_a_quantized_load_from_folders(tiny_model_dirs: tuple[Path, Path]) -> None:
    base_dir, adapter_dir = tiny_model_dirs
    loaded = load(str(adapter_dir), str(base_dir), device="cpu", quantize="int8")
    assert (loaded.choice.dtype, loaded.choice.quantize) == (torch.bfloat16, "int8")      # auto: bf16
    assert "int8 weights" in loaded.choice.describe()
    assert is_quantized(loaded.model.backbone.model.layers[0].self_attn.q_proj.weight)
    assert all(p.dtype == torch.bfloat16 and not is_quantized(p) for p in loaded.model.layers.parameters())
    with torch.no_grad():
        assert loaded.model(input_ids=torch.tensor([[5, 6, 7]])).logits.shape == (1, 3, 300)


def test_replay_takes_quantize(tiny_model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    from deltamem_chat.cli import app

    base, adapter = tiny_model_dirs
    fixture = Path(__file__).parent / "fixtures" / "replay_small.jsonl"
    result = CliRunner().invoke(app, ["replay", str(fixture), "--headless", "--ab", "--adapter", str(adapter),
                                      "--base", str(base), "--device", "cpu", "--max-new-tokens", "3",
                                      "--quantize", "int8", "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"device": "cpu", "dtype": "float32", "quantize": "int8"}, "computes in bfloat16"),
    ({"device": "cpu", "quantize": "int3"}, "unknown quantization 'int3'"),
])
def test_quantization_refusals_are_one_sentence(kwargs: dict, fragment: str) -> None:
    with pytest.raises(LoadError, match=fragment):
        choose_runtime(**kwargs)


def test_quantize_auto_device_is_the_cpu() -> None:
    assert choose_runtime(quantize="int4").device == "cpu"
    with pytest.raises(QuantizationError, match="bfloat16"):
        quantize_backbone(random_delta_model(), "int8")                    # a float32 backbone
