"""The one place that knows how transformers versions differ in what we call.

transformers 5.x renamed the KV-cache argument and output field from `past_key_values` to `cache` (the old name
is a deprecated alias); 4.56/4.57 only know the old one. Callers build their kwargs through these helpers.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn


def cache_argument(model: nn.Module) -> str:
    """The name of the KV-cache keyword of this model's forward."""
    forward = getattr(model, "backbone", model).forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned, whatever the field is called."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def crop_cache(cache: Any, keep: int) -> None:
    """Shorten a KV cache to its first `keep` positions.

    Both major versions read a negative argument as "drop that many from the end" (5.x accepts nothing else).
    """
    current = cache.get_seq_length()
    if keep < current:
        cache.crop(keep - current)
