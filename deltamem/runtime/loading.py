"""Loading a base model and a δ-mem adapter: aliases, local folders or hub ids, with one-sentence failures.

Every way loading can fail (offline, a missing or gated repo, a folder without weights, a model too large for the
device) ends in a `LoadError` whose message says what happened and what to do; the CLI prints it and exits.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from deltamem import demo
from deltamem.adapter import AdapterError, attach_adapter
from deltamem.config import ConfigError, OffTrainedDefaultsWarning
from deltamem.model import DeltaMemError, DeltaMemModel


class LoadError(RuntimeError):
    """Loading failed; the message is one sentence for the user."""


@dataclass(frozen=True)
class Alias:
    """A short name for a base model and, where one is released, its δ-mem adapter."""

    name: str
    base: str
    adapter: str | None
    note: str
    context: str = "window:1024"
    intro: str | None = None                 # shown in the chat when a conversation starts
    labels: tuple[str, str] | None = None    # names recorded for (base, adapter) instead of their folders


ALIASES: dict[str, Alias] = {
    "qwen3-4b": Alias("qwen3-4b", "Qwen/Qwen3-4B-Instruct-2507", "declare-lab/delta-mem_qwen3_4b-instruct",
                      "the released TSW adapter (rank 8, q/o corrections, trained on 8,192-token write histories)"),
    "qwen3-8b": Alias("qwen3-8b", "Qwen/Qwen3-8B", None, "no released adapter: pass --adapter with a local folder"),
    "smollm3-3b": Alias("smollm3-3b", "HuggingFaceTB/SmolLM3-3B", None,
                        "no released adapter: pass --adapter with a local folder"),
    "demo": Alias(
        "demo", str(demo.BASE_DIR), str(demo.ADAPTER_DIR),
        "offline toy shipped in the package: a 4-layer Qwen3 with a word-level vocabulary and its δ-mem adapter, "
        "trained here on synthetic chats", context=f"window:{demo.DEMO_WINDOW}",
        intro=(f"demo model: the prompt keeps only the last {demo.DEMO_WINDOW} tokens (about two exchanges), so a "
               "fact you state soon falls out of it and only the δ-mem lane can still answer. It knows a few hundred "
               "lower-case words; others show as <unk>. Try: my dog is called rex. / i baked a cake today. / "
               "it is raining this morning. / what is my dog called?"),
        labels=("deltamem demo backbone", "deltamem demo adapter")),
}

ADAPTER_FILES = ["delta_mem_config.json", "delta_mem_adapter.pt", "delta_mem_adapter.safetensors"]
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model", "*.jinja"]


@dataclass(frozen=True)
class RuntimeChoice:
    """Where and how the model runs."""

    device: str
    dtype: torch.dtype
    attn: str

    def describe(self) -> str:
        return f"{self.device} · {str(self.dtype).removeprefix('torch.')} · {self.attn}"


def choose_runtime(device: str | None = None, dtype: str | None = None, attn: str | None = None) -> RuntimeChoice:
    """CUDA: bf16 with FlashAttention-2 when installed, else SDPA. CPU: float32 with SDPA. Each overridable."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LoadError(f"device {device!r} was asked for, but this machine has no CUDA GPU: use --device cpu")
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if dtype in (None, "auto"):
        chosen = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif dtype in names:
        chosen = names[dtype]
    else:
        raise LoadError(f"unknown dtype {dtype!r}: use one of auto, bfloat16, float16, float32")
    if attn in (None, "auto"):
        attn = "flash_attention_2" if device.startswith("cuda") and _has_flash_attn() else "sdpa"
    if attn == "flash_attention_2" and not _has_flash_attn():
        raise LoadError("FlashAttention-2 was asked for but flash-attn is not installed: "
                        "pip install 'deltamem-chat[gpu]', or use --attn sdpa")
    if attn not in ("eager", "sdpa", "flash_attention_2"):
        raise LoadError(f"unknown attention {attn!r}: use one of auto, eager, sdpa, flash_attention_2")
    return RuntimeChoice(device, chosen, attn)


def _has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(spec: str, what: str, files: list[str]) -> Path:
    """A local folder as is; a hub id downloaded (or found in the cache) with a progress bar."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise LoadError(f"{what} {spec}: expected a folder, found a file")
        return path
    if spec.count("/") != 1 or spec.startswith((".", "/", "~")):
        raise LoadError(f"{what} {spec!r} is neither an existing folder nor a hub id like org/name "
                        f"(aliases: {', '.join(ALIASES)})")
    return download(spec, what, files)


def download(repo: str, what: str, files: list[str]) -> Path:
    """Fetch `repo` into the hub cache (or find it there when offline), translating every failure."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(repo, allow_patterns=files))
    except GatedRepoError:
        raise LoadError(f"{what} {repo} is gated: accept its licence on its hub page, then log in with "
                        "`hf auth login`") from None
    except RepositoryNotFoundError:
        raise LoadError(f"{what} {repo} does not exist on the hub (or is private): check the name") from None
    except LocalEntryNotFoundError:
        raise LoadError(f"{what} {repo} is not in the local cache and the hub cannot be reached: run "
                        f"`deltamem-chat download` where there is a network, or pass a local folder") from None
    except (HfHubHTTPError, OSError) as exc:
        raise LoadError(f"{what} {repo} could not be downloaded ({str(exc).splitlines()[0]})") from None


def is_cached(repo: str) -> bool:
    """Whether a hub repo is already in the local cache (no network)."""
    from huggingface_hub import scan_cache_dir

    try:
        return any(r.repo_id == repo for r in scan_cache_dir().repos)
    except Exception:  # an absent or unreadable cache simply holds nothing
        return False


def weight_bytes(folder: Path) -> int:
    """The size of a model folder's weights (safetensors files), 0 when unknown."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def check_fits(folder: Path, choice: RuntimeChoice) -> None:
    """Refuse a model that cannot fit the device before spending minutes loading it."""
    size = weight_bytes(folder)
    if not size:
        raise LoadError(f"model folder {folder} holds no .safetensors weights")
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    stored = {"bfloat16": 2, "float16": 2, "float32": 4}.get(str(config.get("torch_dtype") or config.get("dtype")), 2)
    needed = size * torch.tensor([], dtype=choice.dtype).element_size() / stored
    if choice.device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(choice.device))
        where = "free GPU memory"
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        where = "free RAM"
    if needed > free:
        raise LoadError(f"the model needs about {needed / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB of {where} "
                        "is available: use a smaller model, --dtype bfloat16, or another device")


@dataclass
class LoadedModel:
    """A ready δ-mem model with its tokenizer and what it was made from."""

    model: DeltaMemModel
    tokenizer: object
    base: str
    adapter: str
    choice: RuntimeChoice
    alias: Alias | None


def load(adapter: str, base: str | None = None, *, device: str | None = None, dtype: str | None = None,
         attn: str | None = None) -> LoadedModel:
    """Load base + adapter by alias, folder or hub id; the base defaults to the alias's."""
    alias = ALIASES.get(adapter)
    adapter_spec = adapter
    if alias is not None:
        if alias.adapter is None:
            raise LoadError(f"{alias.name}: {alias.note}")
        adapter_spec = alias.adapter
    if base is None:
        if alias is None:
            raise LoadError(f"adapter {adapter!r} is not an alias, so its base model is unknown: pass --base")
        base = alias.base
    base_alias = ALIASES.get(base)
    base_spec = base_alias.base if base_alias else base
    choice = choose_runtime(device, dtype, attn)
    adapter_dir = resolve(adapter_spec, "adapter", ADAPTER_FILES)
    base_dir = resolve(base_spec, "base model", MODEL_FILES)
    check_fits(base_dir, choice)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        backbone = AutoModelForCausalLM.from_pretrained(base_dir, dtype=choice.dtype, attn_implementation=choice.attn)
        backbone = backbone.to(choice.device).eval()
    except (OSError, ValueError) as exc:
        raise LoadError(f"base model {base_spec} could not be loaded ({str(exc).splitlines()[0]})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OffTrainedDefaultsWarning)
            model = attach_adapter(backbone, adapter_dir)
    except (AdapterError, ConfigError, DeltaMemError) as exc:
        raise LoadError(f"adapter {adapter_spec}: {exc}") from None
    names = alias.labels if alias is not None and alias.labels and base_spec == alias.base else None
    base_name, adapter_name = names or (base_spec, adapter_spec)
    return LoadedModel(model, tokenizer, base_name, adapter_name, choice, alias)
