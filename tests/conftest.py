"""Shared fixtures: tiny Qwen3 backbones with random weights (`deltamem.testing`), built offline in milliseconds."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

from deltamem.context import ContextPolicy
from deltamem.model import DeltaMemModel
from deltamem.runtime.engine import ABEngine
from deltamem.testing import byte_chatml_tokenizer, printable_only, random_backbone, random_delta_model

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs a worker per core (pyproject's addopts): one torch thread each, or they spin against each other.
    # Subprocesses a test starts (a server) inherit it.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def delta_model() -> Callable[..., DeltaMemModel]:
    return random_delta_model


def make_engine(policy: str = "full", batched: bool = True, seed: int = 0, attn: str = "sdpa",
                dtype: torch.dtype = torch.float32, **kwargs: object) -> ABEngine:
    """A tiny offline A/B engine: random δ-mem model, byte-level ChatML tokenizer, printable replies."""
    model = random_delta_model(attn=attn, seed=seed, dtype=dtype)
    printable_only(model.backbone)
    return ABEngine(model, byte_chatml_tokenizer(), policy=ContextPolicy.parse(policy), batched=batched, **kwargs)


@pytest.fixture
def engine_factory() -> Callable[..., ABEngine]:
    return make_engine


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    """A tiny base model folder (weights + byte-level ChatML tokenizer) and a random adapter folder for it."""
    from deltamem import save_adapter

    root = tmp_path_factory.mktemp("tiny-model")
    base_dir, adapter_dir = root / "base", root / "adapter"
    random_backbone("tiny", attn="eager").save_pretrained(base_dir)
    byte_chatml_tokenizer().save_pretrained(base_dir)
    save_adapter(random_delta_model(), adapter_dir)
    return base_dir, adapter_dir
