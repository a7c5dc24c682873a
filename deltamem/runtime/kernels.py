"""Which CPU kernel multiplies a single row by the weights: oneDNN's or ATen's own, whichever runs faster here.

On a CPU, PyTorch hands bfloat16 and float16 matrix products to oneDNN. For one row, a decode step of one lane,
oneDNN's kernel can read the weights at about half the rate of ATen's own matrix-vector kernel: on a 2-core AMD
EPYC with AVX-512 BF16, the 9,728 × 2,560 FFN matrix took 3.26 ms through oneDNN against 1.91 ms without it. For two
rows and more oneDNN is the faster one (two rows: 3.12 against 4.86 ms; 512 rows: ten times faster), so only
forwards of a single token of a single row may run with oneDNN off.

Which is faster depends on the CPU, so it is measured, not assumed: the first one-row forward of a kind of model
(its device, dtype and largest matrix) times one product with the model's own largest decoder matrix each way, and
every later one-row forward of that kind takes the faster. Measurements live for the process. oneDNN's switch is
process-wide, so the forward must be the only one running (the app's engines and the server run one at a time).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

ONEDNN, ATEN = "onednn", "aten"

#: Timed products per way; the fastest of each counts.
TRIALS = 3

#: Per kind of model, the way its one-row products run, and the seconds measured each way.
_CHOICES: dict[tuple, str] = {}
_SECONDS: dict[tuple, dict[str, float]] = {}

#: Per model, the matrix its kind is measured on (None: the choice does not arise), found once.
_MATRICES: weakref.WeakKeyDictionary[nn.Module, Tensor | None] = weakref.WeakKeyDictionary()


@contextmanager
def one_row(model: nn.Module) -> Iterator[None]:
    """Run the block, a forward of one token of one row, with the faster of the two kernels (see the module doc)."""
    if model not in _MATRICES:
        _MATRICES[model] = _largest_matrix(model)
    weight = _MATRICES[model]
    if weight is None:
        yield
        return
    kind = (weight.device.type, str(weight.dtype), tuple(weight.shape))
    way = _CHOICES.get(kind)
    if way is None:
        seconds = _SECONDS[kind] = measure(weight)
        way = _CHOICES[kind] = ATEN if seconds[ATEN] < seconds[ONEDNN] else ONEDNN
    with _onednn(way == ONEDNN):
        yield


def measure(weight: Tensor) -> dict[str, float]:
    """Seconds of one row times `weight` each way, timed on it (the fastest of `TRIALS` products each)."""
    row = torch.ones(1, weight.shape[1], dtype=weight.dtype, device=weight.device)
    best = {ONEDNN: float("inf"), ATEN: float("inf")}
    with torch.no_grad():
        for trial in range(TRIALS + 1):                   # the first round is a warm-up
            for way in (ONEDNN, ATEN) if trial % 2 == 0 else (ATEN, ONEDNN):
                with _onednn(way == ONEDNN):
                    start = time.perf_counter()
                    torch.nn.functional.linear(row, weight)
                    seconds = time.perf_counter() - start
                if trial:
                    best[way] = min(best[way], seconds)
    return best


@contextmanager
def _onednn(enabled: bool) -> Iterator[None]:
    """oneDNN on or off for the block (only its switch: `torch.backends.mkldnn.flags` also resets the others)."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def choices() -> dict[tuple, str]:
    """What has been chosen so far, per kind of model (for reports and tests)."""
    return dict(_CHOICES)


def measurements() -> list[dict[str, object]]:
    """What was measured so far, as plain data for reports: per kind, the matrix, both times and the choice."""
    return [{"device": kind[0], "dtype": kind[1].removeprefix("torch."), "matrix": list(kind[2]),
             "onednn_ms": seconds[ONEDNN] * 1e3, "aten_ms": seconds[ATEN] * 1e3, "chosen": _CHOICES[kind]}
            for kind, seconds in _SECONDS.items() if kind in _CHOICES]


def _largest_matrix(model: nn.Module) -> Tensor | None:
    """The largest plain half-precision CPU weight of the decoder's linear layers, or None where the choice does not
    arise (another device or dtype, quantized weights: their products do not go through oneDNN's half kernels)."""
    backbone = getattr(model, "backbone", model)
    decoder = backbone.get_decoder() if hasattr(backbone, "get_decoder") else backbone
    largest = None
    for module in decoder.modules():
        if isinstance(module, nn.Linear) and (largest is None or module.weight.numel() > largest.numel()):
            largest = module.weight
    if largest is None or largest.device.type != "cpu" or largest.dtype not in (torch.bfloat16, torch.float16):
        return None
    if type(largest.data) is not torch.Tensor:              # a quantized tensor subclass
        return None
    return largest
