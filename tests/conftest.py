"""Shared fixtures: tiny Qwen3 backbones with random weights, built offline in milliseconds."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch

from deltamem import DeltaMemConfig, DeltaMemModel, OffTrainedDefaultsWarning
from deltamem.shapes import random_backbone, randomize_adapter


def make_delta_model(attn: str = "eager", dtype: torch.dtype = torch.float32, seed: int = 0,
                     **config: object) -> DeltaMemModel:
    """A tiny random backbone with a random δ-mem adapter (released settings unless overridden)."""
    backbone = random_backbone("tiny", attn=attn, dtype=dtype, seed=seed)
    settings = {"output_init": "base_slice_fixed", "delta_heads": ("q", "o")} | config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
        model = DeltaMemModel(backbone, DeltaMemConfig(**settings))
    randomize_adapter(model, seed=seed + 1)
    return model


@pytest.fixture
def delta_model() -> Callable[..., DeltaMemModel]:
    return make_delta_model
