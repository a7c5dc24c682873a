"""Loading a base model and a δ-mem adapter from local folders or hub ids, with one-sentence failures.

The names users type (aliases such as `qwen3-4b`) are the app's (`deltamem_chat.aliases`): this module takes what
they resolve to.

Every way loading can fail (offline, a missing or gated repo, a folder without weights, a model too large for the
device) ends in a `LoadError` whose message says what happened and what to do; the CLI prints it and exits.
"""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deltamem.adapter import AdapterDtypeWarning, AdapterError, attach_adapter
from deltamem.config import ConfigError, OffTrainedDefaultsWarning
from deltamem.files import read_json
from deltamem.hub import ADAPTER_FILES, MODEL_FILES, LoadError, resolve
from deltamem.model import DeltaMemError, DeltaMemModel
from deltamem.quantization import MODES as QUANTIZATIONS
from deltamem.quantization import QuantizationError, quantize_backbone
from deltamem.quantization import check_runtime as check_quantization
from deltamem.runtime.progress import LoadStep, Progress, reported_bar, transformers_bars


@dataclass(frozen=True)
class RuntimeChoice:
    """Where and how the model runs."""

    device: str
    dtype: torch.dtype
    attn: str
    quantize: str = "none"

    def describe(self) -> str:
        text = f"{self.device} · {str(self.dtype).removeprefix('torch.')} · {self.attn}"
        return text if self.quantize == "none" else f"{text} · {self.quantize} weights"


def choose_runtime(device: str | None = None, dtype: str | None = None, attn: str | None = None,
                   quantize: str | None = None) -> RuntimeChoice:
    """Where and how to run, each choice overridable.

    Device: CUDA when available, else Apple's MPS when available, else the CPU. Dtype: bf16 on CUDA; on MPS bf16
    where macOS supports it (14 and later), else float16; float32 on a CPU, or bf16 there with `quantize` (int8
    or int4 weights, torchao's CPU kernels, which compute in bf16). Attention: FlashAttention-2 on CUDA when
    installed, else SDPA. The δ-mem state is float32 on every device. (MPS cannot be tested on this project's
    machines: it is chosen and its dtypes follow PyTorch's documented support, nothing more.)
    """
    quantize = quantize or "none"
    if quantize not in QUANTIZATIONS:
        raise LoadError(f"unknown quantization {quantize!r}: use one of {', '.join(QUANTIZATIONS)}")
    if device in (None, "auto"):
        if quantize != "none":
            device = "cpu"                  # quantized weights are for the CPU
        elif torch.cuda.is_available():
            device = "cuda"
        else:
            device = "mps" if _has_mps() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LoadError(f"device {device!r} was asked for, but this machine has no CUDA GPU: use --device cpu")
    if device == "mps" and not _has_mps():
        raise LoadError("device 'mps' was asked for, but this torch sees no Apple GPU: use --device cpu")
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if dtype in (None, "auto"):
        if device.startswith("cuda") or quantize != "none":
            chosen = torch.bfloat16
        elif device == "mps":
            chosen = torch.bfloat16 if _mps_has_bf16() else torch.float16
        else:
            chosen = torch.float32
    elif dtype in names:
        chosen = names[dtype]
    else:
        raise LoadError(f"unknown dtype {dtype!r}: use one of auto, bfloat16, float16, float32")
    try:
        check_quantization(quantize, device, chosen)
    except QuantizationError as exc:
        raise LoadError(str(exc)) from None
    if attn in (None, "auto"):
        attn = "flash_attention_2" if device.startswith("cuda") and _has_flash_attn() else "sdpa"
    if attn == "flash_attention_2" and not _has_flash_attn():
        raise LoadError("FlashAttention-2 was asked for but flash-attn is not installed: "
                        "pip install 'deltamem-chat[gpu]', or use --attn sdpa")
    if attn not in ("eager", "sdpa", "flash_attention_2"):
        raise LoadError(f"unknown attention {attn!r}: use one of auto, eager, sdpa, flash_attention_2")
    return RuntimeChoice(device, chosen, attn, quantize)


def _has_mps() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _mps_has_bf16() -> bool:
    """bf16 on MPS needs macOS 14 (PyTorch's MPS notes); older systems have float16 only."""
    check = getattr(torch.backends.mps, "is_macos_or_newer", None)
    return bool(check is not None and check(14, 0))


def _has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def weight_bytes(folder: Path) -> int:
    """The size of a model folder's weights (safetensors files), 0 when unknown."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def check_fits(folder: Path, choice: RuntimeChoice) -> None:
    """Refuse a model that cannot fit the device before spending minutes loading it."""
    size = weight_bytes(folder)
    if not size:
        raise LoadError(f"model folder {folder} holds no .safetensors weights")
    config_file = folder / "config.json"
    config = read_json(config_file, LoadError, "missing") if config_file.exists() else {}
    if not isinstance(config, dict):
        raise LoadError(f"{config_file}: expected a JSON object")
    stored = {"bfloat16": 2, "float16": 2, "float32": 4}.get(str(config.get("torch_dtype") or config.get("dtype")), 2)
    needed = size * torch.tensor([], dtype=choice.dtype).element_size() / stored
    free = free_memory(torch.device(choice.device))
    where = "free GPU memory" if choice.device.startswith("cuda") else "free RAM"
    if free is not None and needed > free:
        raise LoadError(f"the model needs about {needed / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB of {where} "
                        "is available: use a smaller model, --dtype bfloat16, or another device")


def free_memory(device: torch.device) -> int | None:
    """Free memory in bytes on a device: the GPU's, or physical RAM where the system says (glibc's sysconf); None
    where it cannot be known (macOS)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class LoadedModel:
    """A ready δ-mem model with its tokenizer and what it was made from (the names sessions and reports record).

    `notes` are sentences the user should see (an adapter whose weights were converted to another dtype).
    """

    model: DeltaMemModel
    tokenizer: Any
    base: str
    adapter: str
    choice: RuntimeChoice
    notes: tuple[str, ...] = field(default=())


def _say(progress: Progress | None, step: LoadStep) -> LoadStep:
    if progress is not None:
        progress(step)
    return step


def _resolve(spec: str, what: str, files: list[str], progress: Progress | None) -> Path:
    """`resolve` with its download (when there is one) reported as a step."""
    step = _say(progress, LoadStep(f"finding the {what}", spec))
    return resolve(spec, what, files, reported_bar(progress, step) if progress else None)


def load_base(base: str, choice: RuntimeChoice, progress: Progress | None = None) -> tuple[Any, nn.Module]:
    """A base model (folder or hub id) and its tokenizer on the chosen device, after checking that it fits;
    `progress` hears each step (and transformers' weight count) instead of a bar on the terminal."""
    folder = _resolve(base, "base model", MODEL_FILES, progress)
    check_fits(folder, choice)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        _say(progress, LoadStep("reading the tokenizer", str(folder)))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        weights = _say(progress, LoadStep("loading the weights", str(folder)))
        with transformers_bars(progress, weights) if progress else nullcontext():
            backbone = AutoModelForCausalLM.from_pretrained(folder, dtype=choice.dtype,
                                                            attn_implementation=choice.attn)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in transformers, tokenizers or safetensors, any way
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "a damaged or truncated file"
        raise LoadError(f"base model {base} could not be loaded ({first})") from None
    _say(progress, LoadStep(f"moving the weights to {choice.device}"))
    return tokenizer, backbone.to(choice.device).eval()


def load(adapter: str, base: str, *, device: str | None = None, dtype: str | None = None, attn: str | None = None,
         names: tuple[str, str] | None = None, quantize: str | None = None,
         progress: Progress | None = None) -> LoadedModel:
    """Load a base model and a δ-mem adapter (folders or hub ids); `names` are recorded instead of them.

    `quantize` (int8, int4) quantizes the backbone's weights once the adapter is attached (see
    `deltamem.quantization`); δ-mem's own matrices are not quantized. `progress` hears each step.
    """
    choice = choose_runtime(device, dtype, attn, quantize)
    adapter_dir = _resolve(adapter, "adapter", ADAPTER_FILES, progress)
    tokenizer, backbone = load_base(base, choice, progress)
    _say(progress, LoadStep("attaching the δ-mem adapter", str(adapter_dir)))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
            warnings.simplefilter("always", AdapterDtypeWarning)
            model = attach_adapter(backbone, adapter_dir)
    except (AdapterError, ConfigError, DeltaMemError) as exc:
        raise LoadError(f"adapter {adapter}: {exc}") from None
    if choice.quantize != "none":
        _say(progress, LoadStep(f"quantizing the weights to {choice.quantize}"))
    try:
        quantize_backbone(model, choice.quantize)
    except QuantizationError as exc:
        raise LoadError(str(exc)) from None
    notes = tuple(f"adapter {adapter}: {w.message}" for w in caught if issubclass(w.category, AdapterDtypeWarning))
    for w in caught:
        if not issubclass(w.category, AdapterDtypeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    base_name, adapter_name = names or (base, adapter)
    return LoadedModel(model, tokenizer, base_name, adapter_name, choice, notes)
