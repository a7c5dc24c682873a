"""Training checkpoints: one safetensors file holding the weights, the optimizer state and (as metadata) the JSON.

No pickle anywhere: tensors are plain safetensors entries (`param/…`, `exp_avg/…`, `exp_avg_sq/…`, `step/…`) and
the step, settings and loss history are a JSON string in the file's metadata. One file written atomically means a
crash mid-save leaves the previous checkpoint whole, and weights can never be paired with the wrong step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from deltamem.files import atomic_write, parse_json

CHECKPOINT = "checkpoint.safetensors"
_META_KEY = "deltamem_checkpoint"
_OPTIMIZER_FIELDS = ("exp_avg", "exp_avg_sq", "step")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says why."""


@dataclass
class Checkpoint:
    """What a resumed run needs: trained tensors by name, AdamW state by name, and the JSON part."""

    step: int
    params: dict[str, Tensor]
    optimizer: dict[str, dict[str, Tensor]]
    info: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, step: int, params: Mapping[str, Tensor], optimizer: torch.optim.Optimizer,
                    info: Mapping[str, Any]) -> Path:
    """Write step, parameters (by name, in optimizer order) and AdamW state into one file, atomically."""
    names = list(params)
    tensors = {f"param/{name}": t.detach().cpu().contiguous() for name, t in params.items()}
    state = optimizer.state_dict()["state"]
    for index, name in enumerate(names):
        for key, value in state.get(index, {}).items():
            if key in _OPTIMIZER_FIELDS:
                tensors[f"{key}/{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {_META_KEY: json.dumps({"step": step, "names": names, **info})}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0]})") from None
    if _META_KEY not in meta:
        raise CheckpointError(f"{path}: not a deltamem training checkpoint (no {_META_KEY} metadata)")
    try:
        info = parse_json(meta[_META_KEY])
        names = info.pop("names")
        params = {name: tensors[f"param/{name}"] for name in names}
        int(info["step"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{path}: not a deltamem training checkpoint (its metadata is damaged)") from None
    optimizer = {name: {key: tensors[f"{key}/{name}"] for key in _OPTIMIZER_FIELDS if f"{key}/{name}" in tensors}
                 for name in names}
    return Checkpoint(int(info.pop("step")), params, optimizer, info)


def restore_optimizer(optimizer: torch.optim.Optimizer, names: list[str], saved: Mapping[str, Mapping[str, Tensor]]
                      ) -> None:
    """Load AdamW state saved by parameter name into an optimizer built over parameters in `names` order."""
    current = optimizer.state_dict()
    state = {index: dict(saved[name]) for index, name in enumerate(names) if saved.get(name)}
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


__all__ = ["CHECKPOINT", "Checkpoint", "CheckpointError", "load_checkpoint", "restore_optimizer", "save_checkpoint"]
