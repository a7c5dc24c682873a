"""Adapter files: the official `delta_mem_adapter.pt` and a safetensors twin, loaded strictly.

The official loader ignores missing keys and never checks shapes, so a partial or mismatched file silently leaves
random memory projections. Ours refuses: every key must be there, nothing extra, every shape must fit the backbone,
and the error says which key, what it expected and what it found, and which base the file was made for.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from deltamem.config import CONFIG_FILENAME, DeltaMemConfig
from deltamem.files import atomic_write
from deltamem.memory import AttentionShape, DeltaMemLayer
from deltamem.model import DeltaMemModel

ADAPTER_PT = "delta_mem_adapter.pt"
ADAPTER_SAFETENSORS = "delta_mem_adapter.safetensors"
ACCEPTED_PREFIXES = ("base_model.model.", "module.")

#: (hidden size, layers) → the base model of that shape, to say what an adapter was made for.
KNOWN_BASES = {(2560, 36): "Qwen3-4B", (4096, 36): "Qwen3-8B", (2048, 36): "SmolLM3-3B"}

_LAYER_KEY = re.compile(r"layers\.([0-9]{1,9})\.")

MAX_LAYERS = 1024
"""More layers than any model has: an adapter key with a higher layer index is unexpected, whatever the base."""


class AdapterError(ValueError):
    """An adapter file that does not fit: the message names the file and the key."""


class AdapterDtypeWarning(UserWarning):
    """The adapter's weights are stored in another float type than the model runs in, and are converted."""


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
        size = path.stat().st_size
    except FileNotFoundError:
        raise AdapterError(f"{path}: file not found") from None
    except OSError as exc:
        raise AdapterError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise AdapterError(f"{path}: not a readable adapter file (it is empty)")
    try:
        if path.suffix == ".safetensors":
            tensors = load_file(str(path))
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AdapterError(f"{path}: file not found") from None
    except SafetensorError as exc:
        raise AdapterError(f"{path}: not a readable adapter file ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - weights_only runs no code, and a damaged file fails in any way it likes
        raise AdapterError(f"{path}: not a readable adapter file ({_first_line(exc)})") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
        raise AdapterError(f"{path}: expected a flat dict of tensors, found {type(tensors).__name__}")
    return {_strip_prefix(str(k)): v for k, v in tensors.items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "damaged or truncated"


def _strip_prefix(key: str) -> str:
    for prefix in ACCEPTED_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def made_for(tensors: dict[str, Tensor]) -> str:
    """Describe the base an adapter's tensors fit: hidden size and layer count, and a known name if any."""
    hidden = next((t.shape[-1] for k, t in tensors.items() if k.endswith("memory_q_proj") and t.dim()), None)
    layers = {int(m.group(1)) for k in tensors if (m := _LAYER_KEY.search(k))}
    n_layers = max(layers) + 1 if layers else None
    name = KNOWN_BASES.get((hidden, n_layers))
    shape = f"hidden size {'unknown' if hidden is None else hidden}, {n_layers or 'no'} layers"
    return f"{name} ({shape})" if name else shape


def _base_description(model: DeltaMemModel) -> str:
    cfg = getattr(model.backbone, "config", None)
    name = getattr(cfg, "_name_or_path", "") or type(model.backbone).__name__
    hidden = getattr(cfg, "hidden_size", None)
    layers = getattr(cfg, "num_hidden_layers", None)
    return f"{name} (hidden size {hidden}, {layers} layers)"


def check_tensors(tensors: Mapping[str, Tensor], expected: Mapping[str, Sequence[int]], source: str,
                  hint: str) -> None:
    """The checks an adapter passes before use, the same for loading and `inspect`: every key the model needs is
    there and nothing else, each with its shape, holding floating-point numbers that are all finite.

    Raises `AdapterError`: `<source>: <what is wrong>: <hint>`, the hint saying what the file was made for.
    """
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise AdapterError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} in all): {hint}")
    if missing:
        raise AdapterError(f"{source}: missing key {missing[0]!r} ({len(missing)} in all): {hint}")
    for key, shape in expected.items():
        found = tensors[key]
        if tuple(found.shape) != tuple(shape):
            raise AdapterError(
                f"{source}: key {key!r} has shape {list(found.shape)} where {list(shape)} is needed: {hint}"
            )
        if not found.is_floating_point():
            kind = str(found.dtype).removeprefix("torch.")
            raise AdapterError(f"{source}: key {key!r} holds {kind} numbers, expected floating-point weights")
    for key in expected:
        found = tensors[key]
        bad = ~torch.isfinite(found)
        if bool(bad.any()):
            nan = int(torch.isnan(found).sum())
            infinite = int(bad.sum()) - nan
            kinds = " and ".join(([f"{nan:,} NaN"] if nan else []) + ([f"{infinite:,} infinite"] if infinite else []))
            plural = "s" if nan + infinite > 1 else ""
            raise AdapterError(f"{source}: key {key!r} holds {kinds} value{plural} (of {found.numel():,}): the "
                               "weights are damaged, and every δ-mem answer would be garbage")


def dtype_note(tensors: Mapping[str, Tensor], dtype: torch.dtype, source: str) -> str | None:
    """The sentence that says the adapter's floats are converted to `dtype`, or None when none are."""
    stored = Counter(str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.dtype != dtype)
    if not stored:
        return None
    kinds = " and ".join(sorted(stored))
    target = str(dtype).removeprefix("torch.")
    return f"{source}: the adapter's weights are {kinds}; they are converted to {target}, the dtype the model runs in"


def load_weights(model: DeltaMemModel, tensors: dict[str, Tensor], source: str) -> None:
    """Copy adapter tensors into `model`, strict in both directions, casting to the model's dtype.

    A cast is stated with an `AdapterDtypeWarning` (the CLI shows it as a note).
    """
    expected = model.adapter_state_dict()
    hint = f"the file was made for {made_for(tensors)}; this base is {_base_description(model)}"
    check_tensors(tensors, {key: param.shape for key, param in expected.items()}, source, hint)
    dtype = next(iter(expected.values())).dtype
    note = dtype_note(tensors, dtype, source)
    if note:
        warnings.warn(note, AdapterDtypeWarning, stacklevel=2)
    with torch.no_grad():
        for key, param in expected.items():
            param.copy_(tensors[key].to(device=param.device, dtype=param.dtype))


@dataclass(frozen=True)
class BaselessCheck:
    """What `check_without_base` found: the base the tensors describe, and what only a base can check."""

    made_for: str
    layers: int
    hidden: int | None
    needs_base: tuple[str, ...]


def _most_common(values: list[int]) -> int | None:
    return Counter(values).most_common(1)[0][0] if values else None


def expected_without_base(config: DeltaMemConfig, tensors: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """The keys and shapes a model would ask of this adapter, with the base's sizes read off the tensors.

    The layers are 0..the highest found (or the config's `target_layers`), each a `model.layers.{i}.<module>` of the
    Qwen3 and SmolLM3 layout; the projection sizes are the ones most layers agree on. So a key missing in one layer,
    a stray key, a renamed one or a shape that differs from the rest (or from the config's rank and heads) is found
    as loading would find it; a whole layer missing at the end, or sizes of another base, need the base itself.
    """
    def sizes(param: str, dim: int) -> int | None:
        return _most_common([t.shape[dim] for k, t in tensors.items() if k.endswith(f".{param}") and t.dim() == 2])

    hidden = sizes("memory_q_proj", 1) or sizes("memory_k_proj", 1) or sizes("beta_proj", 1)
    outs = {branch: sizes(f"delta_{branch}_proj", 0) for branch in ("q", "k", "v", "o")}
    outs["o"] = outs["o"] or hidden
    outs["v"] = outs["v"] or outs["k"]
    if hidden is None or any(size is None for size in outs.values()):
        return {}
    shape = AttentionShape(hidden=hidden, q_out=outs["q"], k_out=outs["k"], v_out=outs["v"], o_out=outs["o"])
    with torch.device("meta"):
        layer = DeltaMemLayer(config, shape)
    params = {name: tuple(param.shape) for name, param in layer.named_parameters()}
    found = {index for k in tensors if (m := _LAYER_KEY.search(k)) and (index := int(m.group(1))) < MAX_LAYERS}
    indices = sorted(config.target_layers) if config.target_layers else range(max(found) + 1 if found else 0)
    return {f"model.layers.{i}.{module}.{name}": size
            for i in indices for module in config.target_modules for name, size in params.items()}


def check_without_base(config: DeltaMemConfig, tensors: Mapping[str, Tensor], source: str) -> BaselessCheck:
    """Every check loading runs that needs no base (keys both ways, shapes, dtypes, finite values), with the
    sentence loading would give (`AdapterError`); returns what the base must then have."""
    expected = expected_without_base(config, tensors)
    if not expected:
        raise AdapterError(f"{source}: its {len(tensors)} tensors do not include the memory_q_proj, delta_q_proj and "
                           "delta_k_proj matrices of any layer, so it is no δ-mem adapter")
    check_tensors(tensors, expected, source, f"the file looks made for {made_for(tensors)}")
    layers = len({key.rsplit(".", 1)[0] for key in expected})
    hidden = next((tensors[k].shape[-1] for k in expected if k.endswith(".memory_q_proj")), None)
    needs_base = (f"the base has exactly {layers} attention layers, of hidden size {hidden}",
                  "its attention is Qwen3's or SmolLM3's",
                  "its q/k/v/o projection sizes are the delta_*_proj shapes above")
    return BaselessCheck(made_for(dict(tensors)), layers, hidden, needs_base)


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


__all__ = ["ADAPTER_PT", "ADAPTER_SAFETENSORS", "AdapterDtypeWarning", "AdapterError", "CONFIG_FILENAME",
           "attach_adapter", "adapter_file", "check_tensors", "check_without_base", "load_weights", "read_tensors",
           "save_adapter"]
