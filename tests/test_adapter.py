"""Adapter files: .pt and safetensors round trips, and one clear error for each way a file can be wrong."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deltamem import AdapterError, OffTrainedDefaultsWarning, attach_adapter, save_adapter
from deltamem.adapter import ADAPTER_PT, ADAPTER_SAFETENSORS
from deltamem.shapes import BackboneShape
from deltamem.testing import random_backbone

IDS = torch.tensor([[5, 17, 99, 3, 250, 8, 41]])


def _attach(folder: Path, backbone=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
        return attach_adapter(backbone or random_backbone("tiny", attn="eager"), folder)


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_round_trip_gives_identical_tensors_and_logits(delta_model, tmp_path: Path, fmt: str) -> None:
    model = delta_model(num_state_heads=2, delta_o_rmsnorm=True, trainable_delta_scale=True, couple_lambda=False)
    save_adapter(model, tmp_path, formats=(fmt,))
    loaded = _attach(tmp_path)
    for key, value in model.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=IDS).logits, model(input_ids=IDS).logits)


def test_released_key_set_is_nine_per_layer(delta_model, tmp_path: Path) -> None:
    model = delta_model()
    save_adapter(model, tmp_path)
    tensors = torch.load(tmp_path / ADAPTER_PT, weights_only=True)
    assert len(tensors) == 9 * 2
    assert "model.layers.1.self_attn.delta_k_proj" in tensors


def test_bf16_file_is_cast_to_the_model_dtype(delta_model, tmp_path: Path) -> None:
    model = delta_model()
    save_adapter(model, tmp_path, formats=("pt",))
    tensors = torch.load(tmp_path / ADAPTER_PT, weights_only=True)
    torch.save({k: v.bfloat16() for k, v in tensors.items()}, tmp_path / ADAPTER_PT)
    loaded = _attach(tmp_path)
    param = loaded.adapter_state_dict()["model.layers.0.self_attn.memory_q_proj"]
    assert param.dtype == torch.float32
    assert torch.equal(param, tensors["model.layers.0.self_attn.memory_q_proj"].bfloat16().float())


@pytest.mark.parametrize("prefix", ["base_model.model.", "module."])
def test_wrapper_prefixes_are_accepted(delta_model, tmp_path: Path, prefix: str) -> None:
    model = delta_model()
    save_adapter(model, tmp_path, formats=("safetensors",))
    tensors = {prefix + k: v.contiguous() for k, v in model.adapter_state_dict().items()}
    save_file(tensors, str(tmp_path / ADAPTER_SAFETENSORS))
    assert torch.equal(_attach(tmp_path).adapter_state_dict()["model.layers.0.self_attn.beta_bias"],
                       model.adapter_state_dict()["model.layers.0.self_attn.beta_bias"])


def _saved(delta_model, tmp_path: Path) -> dict[str, torch.Tensor]:
    save_adapter(delta_model(), tmp_path, formats=("pt",))
    return torch.load(tmp_path / ADAPTER_PT, weights_only=True)


def test_missing_key_is_named(delta_model, tmp_path: Path) -> None:
    tensors = _saved(delta_model, tmp_path)
    del tensors["model.layers.1.self_attn.beta_proj"]
    torch.save(tensors, tmp_path / ADAPTER_PT)
    with pytest.raises(AdapterError, match=r"missing key 'model\.layers\.1\.self_attn\.beta_proj'"):
        _attach(tmp_path)


def test_unexpected_key_is_named(delta_model, tmp_path: Path) -> None:
    tensors = _saved(delta_model, tmp_path)
    tensors["model.layers.1.self_attn.surprise"] = torch.zeros(1)
    torch.save(tensors, tmp_path / ADAPTER_PT)
    with pytest.raises(AdapterError, match=r"unexpected key 'model\.layers\.1\.self_attn\.surprise'"):
        _attach(tmp_path)


def test_adapter_for_another_base_says_what_it_was_made_for(delta_model, tmp_path: Path) -> None:
    _saved(delta_model, tmp_path)
    wider = BackboneShape(layers=2, hidden=96, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=300)
    with pytest.raises(AdapterError) as err:
        _attach(tmp_path, random_backbone(wider, attn="eager"))
    message = str(err.value)
    assert "memory_q_proj" in message and "[8, 64]" in message and "[8, 96]" in message
    assert "made for hidden size 64, 2 layers" in message and "hidden size 96" in message


def test_more_layers_than_the_base_is_reported(delta_model, tmp_path: Path) -> None:
    _saved(delta_model, tmp_path)
    shallow = BackboneShape(layers=1, hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=300)
    with pytest.raises(AdapterError, match=r"unexpected key 'model\.layers\.1\..*2 layers.*1 layers"):
        _attach(tmp_path, random_backbone(shallow, attn="eager"))


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    from deltamem.config import DeltaMemConfig

    DeltaMemConfig(delta_heads=("q", "o")).save(tmp_path)
    with pytest.raises(AdapterError, match="no delta_mem_adapter"):
        _attach(tmp_path)
    (tmp_path / ADAPTER_PT).write_bytes(b"not a zip archive")
    with pytest.raises(AdapterError, match="not a readable adapter file"):
        _attach(tmp_path)
    torch.save([torch.zeros(1)], tmp_path / ADAPTER_PT)
    with pytest.raises(AdapterError, match="flat dict of tensors"):
        _attach(tmp_path)


def test_pickled_code_is_never_run(tmp_path: Path) -> None:
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Boom()}))
    from deltamem import read_tensors

    with pytest.raises(AdapterError):
        read_tensors(tmp_path / "evil.pt")


def test_a_failed_load_leaves_the_backbone_clean(delta_model, tmp_path: Path) -> None:
    tensors = _saved(delta_model, tmp_path)
    del tensors["model.layers.0.self_attn.beta_bias"]
    torch.save(tensors, tmp_path / ADAPTER_PT)
    backbone = random_backbone("tiny", attn="eager")
    with torch.no_grad():
        before = backbone(input_ids=IDS).logits
        with pytest.raises(AdapterError):
            _attach(tmp_path, backbone)
        assert torch.equal(backbone(input_ids=IDS).logits, before)
