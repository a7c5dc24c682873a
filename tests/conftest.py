"""Shared fixtures: tiny Qwen3 backbones with random weights, built offline in milliseconds."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch

from deltamem import DeltaMemConfig, DeltaMemModel, OffTrainedDefaultsWarning
from deltamem.shapes import BackboneShape, random_backbone, randomize_adapter


def make_delta_model(attn: str = "eager", dtype: torch.dtype = torch.float32, seed: int = 0,
                     shape: BackboneShape | str = "tiny", **config: object) -> DeltaMemModel:
    """A tiny random backbone with a random δ-mem adapter (released settings unless overridden)."""
    backbone = random_backbone(shape, attn=attn, dtype=dtype, seed=seed)
    settings = {"output_init": "base_slice_fixed", "delta_heads": ("q", "o")} | config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
        model = DeltaMemModel(backbone, DeltaMemConfig(**settings))
    randomize_adapter(model, seed=seed + 1)
    return model


@pytest.fixture
def delta_model() -> Callable[..., DeltaMemModel]:
    return make_delta_model


def ascii_only(backbone: torch.nn.Module) -> torch.nn.Module:
    """Make a random byte-level model emit printable ASCII or end-of-turn only, so its replies round-trip."""
    from deltamem.runtime.offline_tokenizer import byte_chatml_tokenizer

    tokenizer = byte_chatml_tokenizer()
    head = backbone.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True, dtype=head.weight.dtype)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.fill_(-1e4)
        allowed = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(chr(c)))[0] for c in range(32, 127)]
        biased.bias[allowed] = 0.0
        biased.bias[tokenizer.eos_token_id] = 0.0
    backbone.lm_head = biased
    return backbone


def make_engine(policy: str = "full", batched: bool = True, seed: int = 0, attn: str = "sdpa",
                dtype: torch.dtype = torch.float32, **kwargs: object):
    """A tiny offline A/B engine: random δ-mem model, byte-level ChatML tokenizer, printable replies."""
    from deltamem.context import ContextPolicy
    from deltamem.runtime.engine import ABEngine
    from deltamem.runtime.offline_tokenizer import byte_chatml_tokenizer

    model = make_delta_model(attn=attn, seed=seed, dtype=dtype)
    ascii_only(model.backbone)
    return ABEngine(model, byte_chatml_tokenizer(), policy=ContextPolicy.parse(policy), batched=batched, **kwargs)


@pytest.fixture
def engine_factory() -> Callable[..., object]:
    return make_engine


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    """A tiny base model folder (weights + byte-level ChatML tokenizer) and a random adapter folder for it."""
    from deltamem import save_adapter
    from deltamem.runtime.offline_tokenizer import byte_chatml_tokenizer

    root = tmp_path_factory.mktemp("tiny-model")
    base_dir, adapter_dir = root / "base", root / "adapter"
    random_backbone("tiny", attn="eager").save_pretrained(base_dir)
    byte_chatml_tokenizer().save_pretrained(base_dir)
    save_adapter(make_delta_model(), adapter_dir)
    return base_dir, adapter_dir
