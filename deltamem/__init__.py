"""δ-mem: an online 8×8 memory per attention layer for a frozen LLM (arXiv 2605.12357), re-implemented.

    from deltamem import attach_adapter
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(base), "path/to/adapter")

The exports below load on first use, so torch-free modules (`deltamem.files`, the transcript tools) can be imported
without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each export and the module that defines it.
_EXPORTS = {
    "AdapterError": "deltamem.adapter",
    "attach_adapter": "deltamem.adapter",
    "read_tensors": "deltamem.adapter",
    "save_adapter": "deltamem.adapter",
    "ConfigError": "deltamem.config",
    "DeltaMemConfig": "deltamem.config",
    "OffTrainedDefaultsWarning": "deltamem.config",
    "DeltaMemError": "deltamem.model",
    "DeltaMemModel": "deltamem.model",
    "NotMergeableError": "deltamem.model",
}

__all__ = [
    "AdapterError",
    "ConfigError",
    "DeltaMemConfig",
    "DeltaMemError",
    "DeltaMemModel",
    "NotMergeableError",
    "OffTrainedDefaultsWarning",
    "attach_adapter",
    "read_tensors",
    "save_adapter",
]

if TYPE_CHECKING:
    from deltamem.adapter import AdapterError, attach_adapter, read_tensors, save_adapter
    from deltamem.config import ConfigError, DeltaMemConfig, OffTrainedDefaultsWarning
    from deltamem.model import DeltaMemError, DeltaMemModel, NotMergeableError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deltamem' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
