"""Weight-only quantization of the backbone for CPUs (torchao), with δ-mem's own matrices left as they are.

On a CPU, decode reads every weight once per token, so its speed is bounded by memory bandwidth: int8 weights halve
what bfloat16 reads, int4 quarter it. The quantization itself is torchao's (`quantize_` with its weight-only
configurations: per-row symmetric int8, group-wise asymmetric int4). What runs each product is one of PyTorch's own
CPU kernels:

- int8: torchao's `Int8Tensor` holds the int8 rows and their scales, and its eager product converts the whole
  matrix to bfloat16 on every call (it relies on `torch.compile` to fuse that away: 4x slower than bfloat16 when
  not compiled). So a quantized linear layer of a model on the CPU runs `aten._weight_int8pack_mm` on torchao's
  data instead when a product has few rows (decode), the fused kernel `torch.compile` would lower that pattern
  to; longer inputs (prefill) dequantize the one matrix and run a bfloat16 GEMM, which is compute-bound anyway.
- int4: torchao's `Int4OpaqueTensor` (group size 128), whose product is `aten._weight_int4pack_mm_for_cpu`.

Only the backbone's `nn.Linear` layers are quantized, the output head included. The input embedding stays in the
model dtype (a lookup reads one row per token; a quantized one would be dequantized whole), so with tied
embeddings the head gets its own quantized copy. δ-mem's matrices are `nn.Parameter`s of `DeltaMemLayer`, not
linear layers, and keep their dtype: its numerics are unchanged, only the backbone's products move.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

#: The quantization modes the app and the bench accept.
MODES = ("none", "int8", "int4")

#: int4's group size: one scale and zero point per this many weights of a row.
INT4_GROUP = 128

#: Products of at most this many rows run the int8 kernel; longer ones dequantize the matrix (see the module doc).
INT8_KERNEL_MAX_ROWS = 16


class _ImportNoise(logging.Filter):
    """Drops what torchao logs when it is imported (transformers imports it whenever it is installed) on a machine
    without its optional GPU libraries, and torch's deprecation notice about torchao's enums: neither matters to a
    user, and both would print on every start."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Failed to load ") or "is an Enum subclass and is now natively" in message)


def install_import_filter() -> None:
    """Filter torchao's import-time noise (idempotent; `deltamem.model` calls it on import)."""
    for name in ("torchao", "torch.utils._pytree"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ImportNoise) for f in logger.filters):
            logger.addFilter(_ImportNoise())


class QuantizationError(RuntimeError):
    """A quantization that cannot be done here; the message is one sentence for the user."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise QuantizationError(f"unknown quantization {mode!r}: use one of {', '.join(MODES)}")
    return mode


def available() -> bool:
    """Whether torchao can be imported."""
    try:
        import_torchao()
    except QuantizationError:
        return False
    return True


def check_runtime(mode: str, device: str | torch.device, dtype: torch.dtype) -> None:
    """Refuse, in one sentence, a quantization this device and dtype cannot run."""
    if check_mode(mode) == "none":
        return
    if torch.device(device).type != "cpu":
        raise QuantizationError(f"--quantize {mode} is for CPUs (torchao's CPU kernels); on {device} run the model "
                                "in bfloat16 without it")
    if dtype != torch.bfloat16:
        raise QuantizationError(f"--quantize {mode} computes in bfloat16 (the dtype of its CPU kernels), not "
                                f"{str(dtype).removeprefix('torch.')}: use --dtype bfloat16 or auto")
    import_torchao()


def quantize_backbone(backbone: nn.Module, mode: str) -> nn.Module:
    """Quantize `backbone`'s linear layers in place (weights only) and return it; `none` leaves it as it is.

    Call it on the backbone before attaching δ-mem or on a `DeltaMemModel` (its `backbone` is quantized, its
    δ-mem layers are not). The backbone must already be on the CPU in bfloat16.
    """
    if check_mode(mode) == "none":
        return backbone
    target = getattr(backbone, "backbone", backbone)
    linears = [m for m in target.modules() if type(m) is nn.Linear]
    if not linears:
        raise QuantizationError("the model has no linear layers to quantize")
    check_runtime(mode, linears[0].weight.device, linears[0].weight.dtype)
    quantize_, config = _config(mode)
    _untie_head(target)
    quantize_(target, config, filter_fn=lambda module, name: _fits(module, mode))
    if mode == "int8":
        for module in linears:
            _route_int8(module)
    return backbone


def is_quantized(tensor: Tensor) -> bool:
    """Whether a parameter is one of torchao's quantized tensors (a tensor subclass)."""
    return type(tensor) not in (Tensor, nn.Parameter) and hasattr(tensor, "__tensor_flatten__")


def storage_bytes(tensor: Tensor) -> int:
    """Bytes a tensor holds: for a quantized one the sum of its inner tensors (data, scales, zero points)."""
    if is_quantized(tensor):
        names, _ = tensor.__tensor_flatten__()
        return sum(storage_bytes(getattr(tensor, name)) for name in names if getattr(tensor, name) is not None)
    return tensor.numel() * tensor.element_size()


def describe(module: nn.Module) -> dict[str, Any]:
    """What the linear layers of a backbone hold: how many of each weight type, and the weights' total bytes."""
    kinds: dict[str, int] = {}
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            name = type(sub.weight).__name__ if is_quantized(sub.weight) else str(sub.weight.dtype)
            kinds[name] = kinds.get(name, 0) + 1
    seen: set[int] = set()
    total = 0
    for param in module.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            total += storage_bytes(param)
    return {"linear_weights": kinds, "weight_bytes": total}


# --------------------------------------------------------------------------------------------------- torchao
@contextmanager
def _quiet_import() -> Iterator[None]:
    """torchao logs, on import, every optional GPU library it cannot load (see `_ImportNoise`)."""
    install_import_filter()
    yield


def import_torchao() -> Any:
    try:
        with _quiet_import():
            import torchao
            import torchao.quantization
    except ImportError as exc:
        raise QuantizationError(f"--quantize needs torchao ({exc}): pip install 'deltamem-chat[cpu]' or "
                                "pip install torchao") from None
    return torchao


def _config(mode: str) -> tuple[Any, Any]:
    import_torchao()
    with _quiet_import():
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
        if mode == "int8":
            return quantize_, Int8WeightOnlyConfig(set_inductor_config=False)
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
        return quantize_, PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP, set_inductor_config=False)


def _fits(module: nn.Module, mode: str) -> bool:
    """A linear layer the mode's kernel takes: int4 packs rows in 16s and columns in groups of `INT4_GROUP`
    (others stay in the model dtype; every layer of the real models fits)."""
    if type(module) is not nn.Linear:
        return False
    return mode != "int4" or (module.out_features % 16 == 0 and module.in_features % INT4_GROUP == 0)


def _untie_head(backbone: nn.Module) -> None:
    """Give a head that shares the input embedding's matrix its own parameter, so that quantizing the head leaves
    the embedding (which stays in the model dtype) intact."""
    head = getattr(backbone, "lm_head", None)
    embed = backbone.get_input_embeddings() if hasattr(backbone, "get_input_embeddings") else None
    if isinstance(head, nn.Linear) and embed is not None and head.weight is embed.weight:
        head.weight = nn.Parameter(embed.weight.detach().clone(), requires_grad=False)
        config = getattr(backbone, "config", None)
        if config is not None and hasattr(config, "tie_word_embeddings"):
            config.tie_word_embeddings = False      # so that nothing ties them again


class _Int8Product:
    """A quantized linear layer's forward: `aten._weight_int8pack_mm` on torchao's int8 rows for few rows, the
    dequantized matrix in a bfloat16 GEMM for many (see the module doc). Scales are converted once, here."""

    def __init__(self, module: nn.Linear) -> None:
        weight = module.weight
        self.module_ref = module
        self.qdata = weight.qdata
        self.scale = weight.scale.reshape(-1).to(weight.dtype)
        self.dtype = weight.dtype

    def __call__(self, x: Tensor) -> Tensor:
        module = self.module_ref
        flat = x.reshape(-1, x.shape[-1])
        if flat.dtype != self.dtype:
            flat = flat.to(self.dtype)
        if flat.shape[0] <= INT8_KERNEL_MAX_ROWS:
            out = torch.ops.aten._weight_int8pack_mm(flat.contiguous(), self.qdata, self.scale)
        else:
            out = torch.nn.functional.linear(flat, self.qdata.to(self.dtype)) * self.scale
        if module.bias is not None:
            out = out + module.bias
        return out.view(*x.shape[:-1], out.shape[-1])


def _route_int8(module: nn.Linear) -> None:
    if type(module.weight).__name__ != "Int8Tensor":
        return
    module.forward = _Int8Product(module)          # an instance attribute: hooks and the module's type stay
