"""Adapter files: the official `delta_mem_adapter.pt` and a safetensors twin, loaded strictly.

The official loader ignores missing keys and never checks shapes, so a partial or mismatched file silently leaves
random memory projections. Ours refuses: every key must be there, nothing extra, every shape must fit the backbone,
and the error says which key, what it expected and what it found, and which base the file was made for.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from deltamem.config import CONFIG_FILENAME, DeltaMemConfig
from deltamem.files import atomic_write
from deltamem.model import DeltaMemModel

ADAPTER_PT = "delta_mem_adapter.pt"
ADAPTER_SAFETENSORS = "delta_mem_adapter.safetensors"
ACCEPTED_PREFIXES = ("base_model.model.", "module.")

#: (hidden size, layers) → the base model of that shape, to say what an adapter was made for.
KNOWN_BASES = {(2560, 36): "Qwen3-4B", (4096, 36): "Qwen3-8B", (2048, 36): "SmolLM3-3B"}

_LAYER_KEY = re.compile(r"layers\.(\d+)\.")


class AdapterError(ValueError):
    """An adapter file that does not fit: the message names the file and the key."""


def adapter_file(folder: str | Path) -> Path:
    """The adapter tensors in `folder` (or the file itself): safetensors first, as it cannot run code."""
    path = Path(folder)
    if path.is_file():
        return path
    for name in (ADAPTER_SAFETENSORS, ADAPTER_PT):
        if (path / name).is_file():
            return path / name
    raise AdapterError(f"{path}: no {ADAPTER_SAFETENSORS} or {ADAPTER_PT} here")


def read_tensors(path: str | Path) -> dict[str, Tensor]:
    """Read a flat name → tensor dict from .safetensors or .pt (never unpickling code: weights_only=True)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            tensors = load_file(str(path))
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AdapterError(f"{path}: file not found") from None
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise AdapterError(f"{path}: not a readable adapter file ({str(exc).splitlines()[0]})") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
        raise AdapterError(f"{path}: expected a flat dict of tensors, found {type(tensors).__name__}")
    return {_strip_prefix(str(k)): v for k, v in tensors.items()}


def _strip_prefix(key: str) -> str:
    for prefix in ACCEPTED_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def made_for(tensors: dict[str, Tensor]) -> str:
    """Describe the base an adapter's tensors fit: hidden size and layer count, and a known name if any."""
    hidden = next((t.shape[-1] for k, t in tensors.items() if k.endswith("memory_q_proj")), None)
    layers = {int(m.group(1)) for k in tensors if (m := _LAYER_KEY.search(k))}
    n_layers = max(layers) + 1 if layers else None
    name = KNOWN_BASES.get((hidden, n_layers))
    shape = f"hidden size {hidden}, {n_layers} layers"
    return f"{name} ({shape})" if name else shape


def _base_description(model: DeltaMemModel) -> str:
    cfg = getattr(model.backbone, "config", None)
    name = getattr(cfg, "_name_or_path", "") or type(model.backbone).__name__
    hidden = getattr(cfg, "hidden_size", None)
    layers = getattr(cfg, "num_hidden_layers", None)
    return f"{name} (hidden size {hidden}, {layers} layers)"


def load_weights(model: DeltaMemModel, tensors: dict[str, Tensor], source: str) -> None:
    """Copy adapter tensors into `model`, strict in both directions, casting to the model's dtype."""
    expected = model.adapter_state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    hint = f"the file was made for {made_for(tensors)}; this base is {_base_description(model)}"
    if unexpected:
        raise AdapterError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} in all): {hint}")
    if missing:
        raise AdapterError(f"{source}: missing key {missing[0]!r} ({len(missing)} in all): {hint}")
    for key, param in expected.items():
        found = tensors[key]
        if found.shape != param.shape:
            raise AdapterError(
                f"{source}: key {key!r} has shape {list(found.shape)} but this base needs {list(param.shape)}: {hint}"
            )
        if not found.is_floating_point():
            raise AdapterError(f"{source}: key {key!r} holds {found.dtype}, expected floating-point weights")
    with torch.no_grad():
        for key, param in expected.items():
            param.copy_(tensors[key].to(device=param.device, dtype=param.dtype))


def attach_adapter(backbone: nn.Module, folder: str | Path) -> DeltaMemModel:
    """Read a δ-mem adapter folder (config + tensors) and attach it to `backbone`."""
    config = DeltaMemConfig.load(folder)
    model = DeltaMemModel(backbone, config)
    try:
        path = adapter_file(folder)
        load_weights(model, read_tensors(path), str(path))
    except BaseException:
        model.detach()
        raise
    return model


def save_adapter(
    model: DeltaMemModel, folder: str | Path, formats: tuple[str, ...] = ("pt", "safetensors")
) -> list[Path]:
    """Write the config and the tensors in the official .pt form and/or safetensors, each atomically."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.adapter_state_dict().items()}
    written = [model.config.save(folder)]
    if "pt" in formats:
        written.append(atomic_write(folder / ADAPTER_PT, lambda tmp: torch.save(tensors, tmp)))
    if "safetensors" in formats:
        written.append(atomic_write(folder / ADAPTER_SAFETENSORS, lambda tmp: save_file(tensors, str(tmp))))
    return written


__all__ = ["ADAPTER_PT", "ADAPTER_SAFETENSORS", "AdapterError", "CONFIG_FILENAME", "attach_adapter",
           "adapter_file", "load_weights", "read_tensors", "save_adapter"]
