"""δ-mem: an online 8×8 memory per attention layer for a frozen LLM (arXiv 2605.12357), re-implemented.

    from deltamem import attach_adapter
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(base), "path/to/adapter")
"""

from deltamem.adapter import AdapterError, attach_adapter, read_tensors, save_adapter
from deltamem.config import ConfigError, DeltaMemConfig, OffTrainedDefaultsWarning
from deltamem.model import DeltaMemError, DeltaMemModel, NotMergeableError

__version__ = "0.1.0"

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
