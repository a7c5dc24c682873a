"""A lone row's decode step runs on whichever CPU kernel the machine multiplies one row faster with, measured once
per kind of model; everything else keeps oneDNN, and the switch is always put back."""

from __future__ import annotations

import time

import pytest
import torch

from deltamem.runtime import kernels, prefill
from deltamem.runtime.contract import GenerationSettings
from deltamem.testing import random_delta_model
from tests.conftest import make_engine


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_CHOICES", {})
    monkeypatch.setattr(kernels, "_SECONDS", {})


def _faster(way: str) -> dict[str, float]:
    return {kernels.ATEN: 1.0, kernels.ONEDNN: 2.0} if way == kernels.ATEN else {kernels.ATEN: 2.0, kernels.ONEDNN: 1.0}


def _slow_when(onednn: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make one-row products 3 ms slower with oneDNN on (`onednn`) or off."""
    linear = torch.nn.functional.linear

    def timed(*args, **kwargs):
        if torch.backends.mkldnn.enabled == onednn:
            time.sleep(0.003)
        return linear(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "linear", timed)


@pytest.mark.parametrize(("slow_onednn", "chosen"), [(True, kernels.ATEN), (False, kernels.ONEDNN)])
def test_the_faster_way_is_measured_on_the_model_s_largest_matrix(monkeypatch, slow_onednn: bool, chosen: str) -> None:
    model = random_delta_model(dtype=torch.bfloat16)
    _slow_when(slow_onednn, monkeypatch)
    with kernels.one_row(model):
        inside = torch.backends.mkldnn.enabled
    assert torch.backends.mkldnn.enabled, "the switch is put back"
    ffn = model.backbone.config.intermediate_size, model.backbone.config.hidden_size
    assert kernels.choices() == {("cpu", "torch.bfloat16", ffn): chosen}
    assert inside == (chosen == kernels.ONEDNN)
    [measured] = kernels.measurements()
    assert measured["matrix"] == list(ffn) and measured["chosen"] == chosen
    slow, fast = ("onednn_ms", "aten_ms") if slow_onednn else ("aten_ms", "onednn_ms")
    assert measured[slow] > 3 > measured[fast]


def test_a_kind_is_measured_once_and_the_switch_survives_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    model = random_delta_model(dtype=torch.bfloat16)
    measured = []
    monkeypatch.setattr(kernels, "measure", lambda weight: measured.append(weight.shape) or _faster(kernels.ATEN))
    for _ in range(3):
        with kernels.one_row(model):
            assert not torch.backends.mkldnn.enabled
    with pytest.raises(RuntimeError), kernels.one_row(random_delta_model(dtype=torch.bfloat16, seed=1)):
        raise RuntimeError("a failed forward")
    assert torch.backends.mkldnn.enabled and len(measured) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_full_precision_models_never_measure_or_switch(monkeypatch, dtype: torch.dtype) -> None:
    monkeypatch.setattr(kernels, "measure", lambda weight: pytest.fail("measured"))
    with kernels.one_row(random_delta_model(dtype=dtype)):
        assert torch.backends.mkldnn.enabled
    assert kernels.choices() == {}


def test_quantized_weights_never_measure_or_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torchao")
    from deltamem.quantization import quantize_backbone
    from tests.test_quantization import SHAPE

    model = quantize_backbone(random_delta_model(dtype=torch.bfloat16, shape=SHAPE), "int8")
    monkeypatch.setattr(kernels, "measure", lambda weight: pytest.fail("measured"))
    with kernels.one_row(model):
        assert torch.backends.mkldnn.enabled


def test_only_a_lone_lane_s_decode_steps_take_the_one_row_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = prefill.one_row

    def spy(model):
        calls.append(model)
        return real(model)

    monkeypatch.setattr(prefill, "one_row", spy)
    monkeypatch.setattr(kernels, "measure", lambda weight: _faster(kernels.ATEN))
    engine = make_engine(dtype=torch.bfloat16)
    list(engine.turn("Hello there, who are you?", GenerationSettings(max_new_tokens=6)))
    assert calls == [], "two lanes decode as a batch of two rows: oneDNN's"
    events = list(engine.turn("And again?", GenerationSettings(max_new_tokens=6), lanes=["delta"]))
    generated = events[-1].stats["delta"].tokens
    assert generated > 1 and len(calls) == generated - 1, "every generated token but the last is fed alone"
    assert all(model is engine.model for model in calls)


def test_the_two_kernels_give_the_same_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    from deltamem.compat import cache_argument
    from deltamem.kv_cache import new_cache

    model = random_delta_model(dtype=torch.bfloat16)
    ids = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(2))
    results = []
    for way in (kernels.ONEDNN, kernels.ATEN):
        monkeypatch.setattr(kernels, "_CHOICES", {})
        monkeypatch.setattr(kernels, "measure", lambda weight, way=way: _faster(way))
        model.reset()
        cache = new_cache(model)
        with torch.no_grad():
            prefill.chunked_forward(model, input_ids=ids[:, :8], cache_kw=cache_argument(model), cache=cache)
            results.append(prefill.chunked_forward(model, input_ids=ids[:, 8:], cache_kw=cache_argument(model),
                                                   cache=cache).logits.float())
    torch.testing.assert_close(results[1], results[0], atol=2e-2, rtol=2e-2)
