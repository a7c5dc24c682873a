"""The δ-mem configuration: the official `delta_mem_config.json`, read and written with all 49 keys.

The official file is a dump of a frozen dataclass. Many of its keys belong to archived features that the release
no longer runs; we accept them only while they hold their neutral values, so a file that asks for a feature we do
not implement fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from deltamem.files import atomic_write_text, read_json

CONFIG_FILENAME = "delta_mem_config.json"

STATE_UPDATE_MODES = ("standard", "lambda_outside", "no_lambda")
WRITE_GRANULARITIES = ("token", "message_mean", "sentence_mean")
OUTPUT_INITS = ("zero", "random", "base_slice", "base_slice_fixed")
DELTA_SCALE_GRANULARITIES = ("layer", "head")
BRANCHES = ("q", "k", "v", "o")

#: Far beyond any released adapter: a larger rank or state width is a damaged file, not an adapter to allocate.
MAX_RANK = 1024
MAX_READ_DIM = 16384

#: The settings the released adapters were trained with; anything else will not reproduce the paper.
TRAINED_RANK = 8
TRAINED_ALPHA = 16.0
TRAINED_BRANCHES = ("q", "o")

#: Archived keys and the only value each may hold (the official code rejects or ignores anything else).
NEUTRAL_VALUES: dict[str, Any] = {
    "num_memory_partitions": 1,
    "num_global_memory_partitions": 0,
    "memory_partition_routing": "soft",
    "memory_partition_basis": "shared",
    "tie_memory_partition_read_write": False,
    "memory_partition_read_mode": "softmax",
    "slot_read_top_k": 0,
    "global_memory_mode": "shared_rw",
    "global_memory_read_top_k": 0,
    "global_memory_merge_mode": "gated_residual",
    "memory_reader_layers": (),
    "memory_readout_mode": "delta",
    "memory_write_source": "learned_hidden",
    "memory_write_proposals_per_message": 2,
    "synthetic_memory_slots": 1,
    "latent_memory_layers": (),
    "delta_scale_parameterization": "alpha_over_rank",
}

_TUPLE_KEYS = ("memory_reader_layers", "latent_memory_layers", "target_modules", "target_layers", "delta_heads")


#: The settings of the released adapters beyond the official defaults: base-slice output init, q/o corrections.
RELEASED_SETTINGS: dict[str, Any] = {"output_init": "base_slice_fixed", "delta_heads": "q,o"}


class ConfigError(ValueError):
    """A `delta_mem_config.json` that we cannot honour; the message names the key."""


def _type_problem(kind: str, key: str, value: Any) -> str | None:
    """What is wrong with the JSON type of `value` for a field annotated `kind`, or None when it fits."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "int":
        return None if is_int(value) else "must be an integer"
    if kind == "float":
        number = is_int(value) or isinstance(value, float)
        return None if number and math.isfinite(value) else "must be a finite number"
    if kind == "str":
        return None if isinstance(value, str) else "must be a string"
    if key == "delta_heads":
        fits = value is None or isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value))
        return None if fits else 'must be a list of branch names or a string such as "q,o"'
    if kind == "tuple[int, ...]":
        return None if isinstance(value, list) and all(map(is_int, value)) else "must be a list of integers"
    if kind == "tuple[str, ...]":
        fits = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if fits else "must be a list of strings"
    return None


def _shown(value: Any) -> str:
    """A JSON value as a message quotes it, cut short when long."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:59] + "…"


def normalize_branches(value: Any) -> tuple[str, ...]:
    """Turn the official spellings of `delta_heads` ("q,o", ["Q", "o"], "none") into an ordered tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [] if value.strip().lower() == "none" else value.split(",")
    out: list[str] = []
    for item in value:
        name = str(item).strip().lower()
        if not name:
            continue
        if name not in BRANCHES:
            raise ConfigError(f'delta_heads: unknown branch "{item}" (expected some of q, k, v, o)')
        if name not in out:
            out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class DeltaMemConfig:
    """All 49 keys of the official config, in the official order, with the official defaults."""

    rank: int = 8
    alpha: float = 16.0
    beta_bias_init: float = -1.5
    normalize_qk: bool = True
    couple_lambda: bool = True
    state_update_mode: str = "standard"
    rankwise_gates: bool = True
    output_init: str = "zero"
    base_slice_ref_width: int = 8
    online_gain: float = 0.05
    num_state_heads: int = 1
    num_memory_partitions: int = 1
    num_global_memory_partitions: int = 0
    memory_partition_routing: str = "soft"
    memory_partition_basis: str = "shared"
    tie_memory_partition_read_write: bool = False
    memory_partition_read_mode: str = "softmax"
    memory_partition_sigmoid_gate_bias_init: float = -2.0
    slot_read_top_k: int = 0
    global_memory_mode: str = "shared_rw"
    global_memory_read_top_k: int = 0
    global_memory_merge_mode: str = "gated_residual"
    global_memory_gate_bias_init: float = -2.0
    global_memory_read_logit_bias: float = 0.0
    memory_reader_layers: tuple[int, ...] = ()
    memory_reader_hidden_size: int = 1024
    memory_reader_residual_scale: float = 0.1
    memory_reader_read_only: bool = True
    memory_readout_mode: str = "delta"
    memory_write_source: str = "learned_hidden"
    memory_write_granularity: str = "token"
    memory_write_proposals_per_message: int = 2
    synthetic_memory_slots: int = 1
    latent_memory_layers: tuple[int, ...] = ()
    latent_memory_hidden_size: int = 1024
    latent_memory_residual_scale: float = 0.1
    latent_memory_slots: int = 4
    latent_memory_init_std: float = 0.002
    latent_gate_init: float = 0.01
    target_modules: tuple[str, ...] = ("self_attn",)
    target_layers: tuple[int, ...] = ()
    delta_heads: tuple[str, ...] = field(default=BRANCHES)
    delta_o_rmsnorm: bool = False
    delta_o_rmsnorm_eps: float = 1e-6
    trainable_delta_scale: bool = False
    delta_scale_init: float = 1.0
    delta_scale_max: float = 2.0
    delta_scale_granularity: str = "layer"
    delta_scale_parameterization: str = "alpha_over_rank"

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta_heads", normalize_branches(self.delta_heads))
        for key in _TUPLE_KEYS:
            if key != "delta_heads":
                object.__setattr__(self, key, tuple(getattr(self, key)))
        self._validate()

    # ----------------------------------------------------------------------------------------------- checks
    def _validate(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"{key}: {what} (got {getattr(self, key)!r})")

        need(isinstance(self.rank, int) and self.rank >= 1, "rank", "must be a positive integer")
        need(self.rank <= MAX_RANK, "rank", f"must be at most {MAX_RANK} (released adapters use 8)")
        need(math.isfinite(self.alpha) and self.alpha > 0, "alpha", "must be a positive number")
        need(isinstance(self.num_state_heads, int) and self.num_state_heads >= 1, "num_state_heads",
             "must be a positive integer")
        need(self.rank * self.num_state_heads <= MAX_READ_DIM, "num_state_heads",
             f"times rank must be at most {MAX_READ_DIM} (released adapters use 1 to 4 heads of rank 8)")
        need(self.state_update_mode in STATE_UPDATE_MODES, "state_update_mode",
             f"must be one of {', '.join(STATE_UPDATE_MODES)}")
        need(self.memory_write_granularity in WRITE_GRANULARITIES, "memory_write_granularity",
             f"must be one of {', '.join(WRITE_GRANULARITIES)}")
        need(self.output_init in OUTPUT_INITS, "output_init", f"must be one of {', '.join(OUTPUT_INITS)}")
        need(self.base_slice_ref_width >= 1, "base_slice_ref_width", "must be at least 1")
        need(self.delta_o_rmsnorm_eps > 0, "delta_o_rmsnorm_eps", "must be positive")
        need(self.delta_scale_max > 0, "delta_scale_max", "must be positive")
        need(0 < self.delta_scale_init < self.delta_scale_max, "delta_scale_init",
             "must lie strictly between 0 and delta_scale_max")
        need(self.delta_scale_granularity in DELTA_SCALE_GRANULARITIES, "delta_scale_granularity",
             f"must be one of {', '.join(DELTA_SCALE_GRANULARITIES)}")
        need(self.latent_memory_hidden_size >= 1, "latent_memory_hidden_size", "must be at least 1")
        need(self.latent_memory_slots >= 1, "latent_memory_slots", "must be at least 1")
        need(self.latent_memory_init_std > 0, "latent_memory_init_std", "must be positive")
        need(self.latent_gate_init > 0, "latent_gate_init", "must be positive")
        need(all(isinstance(i, int) and i >= 0 for i in self.target_layers), "target_layers",
             "must be a list of layer indices")
        for key, neutral in NEUTRAL_VALUES.items():
            if getattr(self, key) != neutral:
                raise ConfigError(
                    f"{key}: archived option set to {getattr(self, key)!r}; only {neutral!r} is supported "
                    "(the released δ-mem code no longer runs this feature)"
                )

    def off_trained_defaults(self) -> list[str]:
        """The settings that differ from what the released adapters were trained with."""
        notes = []
        if self.rank != TRAINED_RANK:
            notes.append(f"rank {self.rank} (trained: {TRAINED_RANK})")
        if self.alpha != TRAINED_ALPHA:
            notes.append(f"alpha {self.alpha:g} (trained: {TRAINED_ALPHA:g})")
        if self.delta_heads != TRAINED_BRANCHES:
            notes.append(f"branches {','.join(self.delta_heads) or 'none'} (trained: q,o)")
        return notes

    # ------------------------------------------------------------------------------------------- derived
    @property
    def scaling(self) -> float:
        """α/r, the factor every correction is multiplied by (the official code always uses it)."""
        return self.alpha / self.rank

    @property
    def read_dim(self) -> int:
        """R = r·H: the width of one token's memory read."""
        return self.rank * self.num_state_heads

    @property
    def gate_dim(self) -> int:
        """G: one gate per state row (rank-wise) or one per state head."""
        return (self.rank if self.rankwise_gates else 1) * self.num_state_heads

    @property
    def segmented_writes(self) -> bool:
        """True for SSW: one write per message or sentence mean instead of one per token."""
        return self.memory_write_granularity != "token"

    @classmethod
    def released(cls, **overrides: Any) -> DeltaMemConfig:
        """The released adapters' configuration (rank 8, alpha 16, q/o corrections, base-slice init), with
        `overrides`."""
        return cls(**(RELEASED_SETTINGS | overrides))

    # ------------------------------------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """The official JSON layout: every key, tuples as lists."""
        data = asdict(self)
        for key in _TUPLE_KEYS:
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config", warn: bool = True) -> DeltaMemConfig:
        """Build from the official dict; unknown keys are errors, missing keys take the official defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        kinds = {f.name: str(f.type) for f in fields(cls)}
        for key in data:
            if key not in kinds:
                raise ConfigError(f"{source}: unknown key {key!r} (not one of the 49 official δ-mem config keys)")
        for key, value in data.items():
            problem = _type_problem(kinds[key], key, value)
            if problem:
                raise ConfigError(f"{source}: {key}: {problem} (got {_shown(value)})")
        try:
            config = cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if warn:
            notes = config.off_trained_defaults()
            if notes:
                warnings.warn(
                    f"{source}: {'; '.join(notes)}: results will not match the paper's trained settings",
                    OffTrainedDefaultsWarning,
                    stacklevel=2,
                )
        return config

    @classmethod
    def load(cls, path: str | Path, *, warn: bool = True) -> DeltaMemConfig:
        """Read `delta_mem_config.json` (or the folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILENAME
        data = read_json(path, ConfigError, "no δ-mem config file here")
        return cls.from_dict(data, source=str(path), warn=warn)

    def save(self, folder: str | Path) -> Path:
        """Write `delta_mem_config.json` into `folder`, atomically."""
        path = Path(folder) / CONFIG_FILENAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path


class OffTrainedDefaultsWarning(UserWarning):
    """The config differs from the trained settings (rank 8, alpha 16, q/o branches)."""
