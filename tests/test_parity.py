"""Golden outputs of the official δ-mem code, reproduced by ours on the current transformers release.

Every case folder under tests/fixtures/parity, and under each directory listed in DELTAMEM_PARITY_DIRS
(os.pathsep-separated), is one test per attention implementation. The format is in tests/fixtures/parity/README.md.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, DynamicCache

from deltamem import OffTrainedDefaultsWarning, attach_adapter
from deltamem.compat import cache_argument, output_cache

BUILTIN = Path(__file__).parent / "fixtures" / "parity"


def _case_dirs() -> list[Path]:
    roots = [BUILTIN] + [Path(p) for p in os.environ.get("DELTAMEM_PARITY_DIRS", "").split(os.pathsep) if p]
    cases = []
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"DELTAMEM_PARITY_DIRS names {root}, which is not a directory")
        cases += sorted(p for p in root.iterdir() if (p / "case.json").is_file())
    return cases


CASES = _case_dirs()


def _load(case_dir: Path, attn: str):
    case = json.loads((case_dir / "case.json").read_text())
    backbone = AutoModelForCausalLM.from_pretrained(case_dir / "backbone", dtype=torch.float32,
                                                    attn_implementation=attn).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
        model = attach_adapter(backbone, case_dir / "adapter")
    expected = load_file(str(case_dir / "expected.safetensors"))
    return case, backbone, model, expected


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: dict, what: str) -> None:
    actual = actual.float()
    assert actual.shape == expected.shape, f"{what}: shape {list(actual.shape)} != {list(expected.shape)}"
    err = (actual - expected).abs().max().item()
    assert torch.allclose(actual, expected, atol=tol["atol"], rtol=tol["rtol"]), f"{what}: max abs error {err:.3g}"


def _ids(values: list[int] | None) -> torch.Tensor | None:
    return None if values is None else torch.tensor([values])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("case_dir", CASES, ids=[f"{p.parent.name}-{p.name}" for p in CASES])
@torch.no_grad()
def test_parity_case(case_dir: Path, attn: str) -> None:
    case, backbone, model, expected = _load(case_dir, attn)
    tol = case["tolerance"]

    with model.rows(memory=[False]):
        logits = model(torch.tensor([case["base_logits_input_ids"]])).logits[0]
    _assert_close(logits, expected["base.logits"], tol, "memory-off logits vs plain backbone")
    assert model.get_state() == {}, "a forward with memory off must not create any state"

    cache = None
    cache_kw = cache_argument(backbone)
    checked = 0
    for step in case["steps"]:
        if step["op"] == "reset":
            model.reset()
            cache = DynamicCache(config=backbone.config)
            continue
        assert step["op"] == "forward", step["op"]
        ids = torch.tensor([step["input_ids"]])
        with model.write_segments(_ids(step.get("message_ids")), _ids(step.get("sentence_ids"))):
            if step["write"]:
                out = model(input_ids=ids, use_cache=True, **{cache_kw: cache})
            else:
                before = model.get_state()
                with model.read_only():
                    out = model(input_ids=ids, use_cache=True, **{cache_kw: cache})
                after = model.get_state()
                assert all(torch.equal(before[k], after[k]) for k in before), "read-only forward changed the state"
        cache = output_cache(out)
        name = step["expect"]
        _assert_close(out.logits[0], expected[f"{name}.logits"], tol, f"{name} logits")
        states = model.get_state()
        for key, value in expected.items():
            if key.startswith(f"{name}.state."):
                layer = key[len(f"{name}.state."):]
                _assert_close(states[layer], value, tol, f"{name} state of {layer}")
                checked += 1
    assert checked > 0, "the case compared no memory state"

    batch = case.get("batch")
    if batch:
        model.reset()
        mask = torch.tensor(batch["attention_mask"])
        out = model(input_ids=torch.tensor(batch["input_ids"]), attention_mask=mask)
        keep = mask.bool()
        _assert_close(out.logits[keep], expected["batch.logits"][keep], tol, "batch logits (unpadded positions)")
        states = model.get_state()
        for key, value in expected.items():
            if key.startswith("batch.state."):
                layer = key[len("batch.state."):]
                _assert_close(states[layer], value, tol, f"batch state of {layer}")


def test_every_builtin_case_is_collected() -> None:
    names = {p.name for p in CASES if p.parent == BUILTIN}
    assert {"tsw_released", "tsw_qkvo", "msw_4heads", "ssw_message_mean", "ssw_sentence_mean", "gates_variants",
            "options_bf16_adapter"} <= names
