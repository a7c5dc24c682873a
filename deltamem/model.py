"""Attach δ-mem to a loaded transformers model, and drive it: state, per-row switches, counters, diagnostics.

Design: the corrections are additive at two points, the outputs of q_proj (and k/v_proj) and the output of
o_proj. So we leave attention, RoPE, q_norm, the KV cache and the attention kernels (eager, SDPA, FlashAttention-2)
entirely to the backbone and only add at those points, through forward hooks. A pre-hook on each wrapped attention
module reads its input x, runs the memory and parks the corrections; hooks on the projections add them. Nothing of
the backbone is replaced or copied, so its weights and state-dict keys stay as they were and `detach()` gives back
exactly the model you attached to.

Token validity comes from the 2D padding mask the caller passed to the model (captured by a pre-hook on the
decoder), never from the kernel-specific 4D mask, unless the attention is called on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from deltamem.attention import restore_sdpa, use_packed_sdpa
from deltamem.config import DeltaMemConfig
from deltamem.masks import token_validity
from deltamem.memory import AttentionShape, DecodeWeights, DeltaMemLayer, PendingWrite, ReadCorrections, masked_mean
from deltamem.quantization import install_import_filter

install_import_filter()

#: Attention classes δ-mem was trained on (by class name, so a transformers without SmolLM3 still imports).
SUPPORTED_ATTENTION = ("Qwen3Attention", "SmolLM3Attention")


class DeltaMemError(RuntimeError):
    """A δ-mem model used in a way that would silently give wrong results."""


class NotMergeableError(DeltaMemError):
    """δ-mem cannot be merged into the backbone weights."""


_MERGE_MESSAGE = (
    "δ-mem cannot be merged into the base weights: its corrections come from a memory state that is read and "
    "written at run time, token by token, so there is no fixed weight delta to fold in. A merge would silently "
    "throw the memory away. Keep the δ-mem model attached, or call detach() to get the plain backbone back."
)


#: A per-layer diagnostic: a [B] tensor, or the function that computes it (see `_now_or_later`).
_Diagnostic = Tensor | Callable[[], Tensor]


def _now_or_later(n_tok: int, compute: Callable[[], Tensor]) -> _Diagnostic:
    """Compute a diagnostic now, or keep the function for a one-token forward.

    Diagnostics are read once per turn, yet every forward would compute them, per layer: in decode that is kernel
    launches per token for nothing. A one-token forward's inputs are tiny, so it keeps them and `diagnostics()`
    computes on demand; a longer forward computes now rather than hold on to its activations.
    """
    return compute if n_tok == 1 else compute().detach()


def _norm(x: Tensor) -> Tensor:
    """‖x‖ per row (over tokens and features) in float32, without a float32 copy of x: reductions of bf16 (and
    float32) accumulate in float32 already; float16 is reduced in float32 since its norms can overflow."""
    x = x.detach()
    if x.dtype == torch.float16:
        return torch.linalg.vector_norm(x, dim=(-2, -1), dtype=torch.float32)
    return torch.linalg.vector_norm(x, dim=(-2, -1)).float()


def _norm_ratio(output: Tensor, delta: Tensor) -> Tensor:
    """‖Δo‖ / ‖o‖ per row, in float32."""
    return _norm(delta) / _norm(output).clamp(min=1e-12)


def _norm_ratio_after(corrected: Tensor, delta: Callable[[], Tensor]) -> Tensor:
    """`_norm_ratio` from the corrected output o + Δo (decode adds Δo in place, so o itself is gone)."""
    value = delta().detach().float()
    return _norm_ratio(corrected.detach().float() - value, value)


@dataclass(frozen=True)
class _Rows:
    """The rows of a batch that have memory on, when some do not: the memory runs on these rows alone.

    Rows with memory off never reach the memory's arithmetic, neither as inputs nor as outputs: their slice of
    the batch is never read by it, and nothing is added to their activations or written to their state. So NaN or
    Inf in another row (an adapter gone bad) cannot reach them, and a frozen row costs the memory nothing.
    """

    index: Tensor            # [b] long, on the batch's device
    span: slice | None       # the same rows as a slice when they are contiguous (views instead of copies)

    def take(self, tensor: Tensor, dim: int = 0) -> Tensor:
        if self.span is not None:
            return tensor[(slice(None),) * dim + (self.span,)]
        return tensor.index_select(dim, self.index)

    def put(self, full: Tensor, part: Tensor, dim: int = 0) -> Tensor:
        """`full` with these rows replaced by `part` (a new tensor: states are replaced, never changed in place)."""
        return full.index_copy(dim, self.index, part.to(full.dtype))

    def add(self, output: Tensor, delta: Tensor) -> Tensor:
        """`output` with `delta` added to these rows; in place when autograd is off (the output is the hook's own)."""
        if torch.is_grad_enabled():
            return output.index_add(0, self.index, delta)
        if self.span is not None:
            output[self.span] += delta
        else:
            output.index_add_(0, self.index, delta)
        return output

    def spread(self, values: Tensor | Callable[[], Tensor], batch: int) -> Tensor:
        """Per-row values of these rows → [batch], 0 for the rows without memory."""
        values = values() if callable(values) else values
        return values.new_zeros(batch, *values.shape[1:]).index_copy(0, self.index, values)


def _spread_later(rows: _Rows | None, batch: int, diagnostic: _Diagnostic) -> _Diagnostic:
    """A diagnostic of the memory rows as one of every row (now, or on demand if it is computed on demand)."""
    if rows is None:
        return diagnostic
    if callable(diagnostic):
        return partial(rows.spread, diagnostic, batch)
    return rows.spread(diagnostic, batch)


def _merge_row(old: _Diagnostic | None, new: _Diagnostic | None, row: int, batch: int) -> _Diagnostic | None:
    """A diagnostic of one row (a batch of one) as the row of a batch's, keeping the other rows' values."""
    if new is None:
        return old
    value = (new() if callable(new) else new).detach().reshape(-1)
    base = old() if callable(old) else old
    base = base.detach().clone() if base is not None and base.shape == (batch,) else value.new_zeros(batch)
    base[row] = value[0]
    return base


@dataclass
class _Forward:
    """What one call of the model needs between its hooks: made when the decoder's forward starts, dropped at its end.

    Outside a decoder forward (an attention module called on its own) an idle instance carries the corrections from
    the attention's pre-hook to its projections' hooks, and reads the attention's own mask.
    """

    captured: bool                                   # inside the decoder's forward, with its 2D mask captured
    mask: Tensor | None                              # the 2D mask the caller passed
    pending: list[dict[str, Tensor] | ReadCorrections | None]    # per layer, corrections not yet added
    held: list[PendingWrite | None]                  # per layer, decode writes waiting for the end of the forward
    rows: list[_Rows | None]                         # per layer, the rows its pending corrections belong to
    context: _ForwardContext | None = None           # the batch's masks, computed by the first layer
    decode_weights: list[DecodeWeights] | None = None    # fetched once per decode forward

    @classmethod
    def start(cls, layers: int, mask: Tensor | None, captured: bool) -> _Forward:
        return cls(captured, mask, [None] * layers, [None] * layers, [None] * layers)


@dataclass
class _ForwardContext:
    """What every wrapped layer of one forward needs to know about the batch, computed once."""

    batch: int
    n_tok: int
    rows: _Rows | None       # the rows with memory on, when not all have it (the masks below are of these rows)
    written: Tensor | None   # [b, T] bool: tokens that write into memory (None: no row writes)
    readable: Tensor | None  # [b, T] bool: tokens whose attention gets corrections (None: all)
    segments: Tensor | None  # [b, T] long SSW segment ids (-1 = none), or None for token writes
    all_written: bool        # every token of every memory row writes (known without looking at the device)


class DeltaMemModel(nn.Module):
    """A transformers causal LM with δ-mem attached.

    Call it like the backbone (`forward`, `generate`). Between calls it keeps one memory state per wrapped layer
    and batch row, in float32. Rows can be switched independently: memory off (the row is exactly the frozen
    backbone) or writes off (the row reads a frozen memory).
    """

    def __init__(self, backbone: nn.Module, config: DeltaMemConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.layer_names: list[str] = []
        attentions: list[nn.Module] = []
        for name, module in backbone.named_modules():
            if type(module).__name__ not in SUPPORTED_ATTENTION:
                continue
            if name.rsplit(".", 1)[-1] not in config.target_modules:
                continue
            if config.target_layers and getattr(module, "layer_idx", None) not in config.target_layers:
                continue
            self.layer_names.append(name)
            attentions.append(module)
        if not attentions:
            found = sorted({type(m).__name__ for m in backbone.modules() if "Attention" in type(m).__name__})
            raise DeltaMemError(
                f"no attention module to attach δ-mem to: it supports {', '.join(SUPPORTED_ATTENTION)} named "
                f"{list(config.target_modules)}, and this model has {', '.join(found) or 'none'}"
            )
        weight = attentions[0].q_proj.weight
        self.layers = nn.ModuleList(
            DeltaMemLayer(config, AttentionShape.of(attn)).to(device=attn.q_proj.weight.device, dtype=weight.dtype)
            for attn in attentions
        )
        for layer, attn in zip(self.layers, attentions):
            layer.reset_parameters(attn)
        self._attentions = attentions
        self._states: list[Tensor | None] = [None] * len(attentions)
        self._idle = _Forward.start(len(attentions), None, captured=False)
        self._forward = self._idle
        self._beta_mean: list[_Diagnostic | None] = [None] * len(attentions)
        self._delta_o_ratio: list[_Diagnostic | None] = [None] * len(attentions)
        self._written: Tensor | None = None
        self._memory_rows: tuple[bool, ...] | None = None
        self._write_rows: tuple[bool, ...] | bool | None = None   # False: off for every row
        self._segment_ids: tuple[Tensor | None, Tensor | None] = (None, None)
        self._row_masks: dict[tuple[tuple[bool, ...], torch.device], Tensor] = {}
        self._row_selections: dict[tuple[tuple[bool, ...], torch.device], _Rows] = {}
        self._handles: list[RemovableHandle] = []
        self._install_hooks()
        use_packed_sdpa(backbone)         # a CPU decode step's attention reads each key once (deltamem.attention)

    # ------------------------------------------------------------------------------------------- hooks
    def _install_hooks(self) -> None:
        decoder = self._decoder()
        if decoder is not None:
            self._handles.append(decoder.register_forward_pre_hook(self._begin_forward, with_kwargs=True))
            self._handles.append(decoder.register_forward_hook(self._end_forward, always_call=True))
        for index, attn in enumerate(self._attentions):
            self._handles.append(
                attn.register_forward_pre_hook(partial(self._run_memory, index), with_kwargs=True))
            for branch in self.config.delta_heads:
                proj = getattr(attn, f"{branch}_proj", None)
                if proj is None:
                    raise DeltaMemError(f"{self.layer_names[index]} has no {branch}_proj to correct")
                self._handles.append(proj.register_forward_hook(partial(self._add_correction, index, branch)))

    def _decoder(self) -> nn.Module | None:
        get = getattr(self.backbone, "get_decoder", None)
        decoder = get() if callable(get) else None
        return decoder if isinstance(decoder, nn.Module) else None

    def _begin_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        self._forward = _Forward.start(len(self.layers), mask, captured=True)

    def _end_forward(self, module: nn.Module, args: tuple, output: Any) -> None:
        forward, self._forward = self._forward, self._idle
        if output is not None and forward.context is not None:      # None: the forward raised, so nothing is written
            self._write_held(forward)

    def _run_memory(self, index: int, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        local_mask = kwargs.get("attention_mask")
        if local_mask is None and len(args) > 2:
            local_mask = args[2]
        forward = self._forward
        context = self._forward_context(forward, x, local_mask, count=index == 0 or forward.captured)
        if context is None:
            forward.pending[index] = None
            return
        layer = self.layers[index]
        state = self._state_for(index, context.batch, x.device)
        rows = forward.rows[index] = context.rows
        if rows is not None:
            x, state_in = rows.take(x), rows.take(state)
        else:
            state_in = state
        if forward.captured and context.n_tok == 1 and context.written is not None and context.segments is None:
            # Decode inside the decoder's forward: read now, write with every other layer when the forward ends.
            if forward.decode_weights is None:     # parameters are checked once per forward, not once per layer
                forward.decode_weights = [each.decode_weights() for each in self.layers]
            forward.pending[index], forward.held[index] = layer.read_token(x, state_in, context.readable,
                                                                           forward.decode_weights[index])
            return
        out = layer(x, state_in, context.written, context.readable, context.segments,
                    all_written=context.all_written)
        if context.written is not None:
            self._states[index] = out.state if rows is None else rows.put(state, out.state)
        if out.beta is not None:
            beta = _now_or_later(context.n_tok, partial(masked_mean, out.beta, out.written))
            self._beta_mean[index] = _spread_later(rows, context.batch, beta)
        forward.pending[index] = out.corrections

    def _write_held(self, forward: _Forward) -> None:
        """Run the held-back decode writes, one batch per device (layers may be spread over several)."""
        context = forward.context
        by_device: dict[torch.device, list[int]] = {}
        for index, held in enumerate(forward.held):
            if held is not None:
                by_device.setdefault(held.raw.device, []).append(index)
        rows = context.rows
        for indices in by_device.values():
            held = PendingWrite.stack([forward.held[i] for i in indices])
            new, beta = self.layers[indices[0]].write_tokens(held, context.written, context.all_written)
            if rows is not None:        # the memory rows' new states into every row's
                device = held.raw.device
                new = rows.put(torch.stack([self._state_for(i, context.batch, device) for i in indices]), new, dim=1)
            for index, state, layer_beta in zip(indices, new.unbind(0), beta.unbind(0)):
                self._states[index] = state
                self._beta_mean[index] = _spread_later(
                    rows, context.batch, partial(masked_mean, layer_beta.unsqueeze(1), context.written))

    def _add_correction(self, index: int, branch: str, module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        forward = self._forward
        pending = forward.pending[index]
        if pending is None:
            return None
        rows = forward.rows[index]
        batch = output.shape[0]
        if isinstance(pending, ReadCorrections):     # decode: one token, so the ratio is computed on demand
            result = pending.add_to(branch, output, rows)
            if branch == "o":
                forward.pending[index] = None
                corrected = result if rows is None else rows.take(result)
                self._delta_o_ratio[index] = _spread_later(
                    rows, batch, partial(_norm_ratio_after, corrected, partial(pending.delta, branch)))
            return result
        delta = pending[branch]
        if delta.dtype != output.dtype:
            delta = delta.to(output.dtype)
        if rows is None:
            if branch == "o":
                forward.pending[index] = None
                self._delta_o_ratio[index] = _now_or_later(output.shape[-2], partial(_norm_ratio, output, delta))
                if output.shape[-2] == 1:                 # measured later: keep o as it is
                    return output + delta
            return output + delta if torch.is_grad_enabled() else output.add_(delta)
        if branch == "o":         # measured before the in-place add below
            forward.pending[index] = None
            ratio = _norm_ratio(rows.take(output), delta)
            self._delta_o_ratio[index] = rows.spread(ratio.detach(), batch)
        return rows.add(output, delta)

    def _forward_context(self, forward: _Forward, x: Tensor, local_mask: Tensor | None,
                         count: bool) -> _ForwardContext | None:
        batch, n_tok = x.shape[:2]
        if forward.context is not None and (forward.context.batch, forward.context.n_tok) == (batch, n_tok):
            return forward.context
        memory_rows = self._rows(self._memory_rows, batch, "memory")
        if not any(memory_rows):
            return None
        write_rows = [m and w for m, w in zip(memory_rows, self._rows(self._write_rows, batch, "write"))]
        mask = forward.mask if forward.captured else local_mask
        valid = None if mask is None else token_validity(mask, batch, n_tok, x.device)
        all_valid = valid is None or (x.device.type == "cpu" and bool(valid.all()))   # no host sync on a GPU
        write_mask = self._row_mask(write_rows, x.device).expand(batch, n_tok)
        written = write_mask if all_valid else valid & write_mask
        segments = self._segments(batch, n_tok, written) if any(write_rows) else None
        if count:
            every_token = segments is None and all_valid and all(write_rows)
            counts = n_tok if every_token else (segments >= 0 if segments is not None else written).sum(1)
            self._count_written(counts, batch, x.device)
        rows = None if all(memory_rows) else self._row_selection(memory_rows, x.device)

        def take(tensor: Tensor | None) -> Tensor | None:
            return tensor if rows is None or tensor is None else rows.take(tensor)

        context = _ForwardContext(batch, n_tok, rows, take(written) if any(write_rows) else None,
                                  None if all_valid else take(valid), take(segments),
                                  all_valid and all(w for m, w in zip(memory_rows, write_rows) if m))
        if forward.captured:
            forward.context = context
        return context

    def _segments(self, batch: int, n_tok: int, written: Tensor) -> Tensor | None:
        """SSW segment ids for this forward, or None to write token by token (as the official code falls back)."""
        if not self.config.segmented_writes:
            return None
        message_ids, sentence_ids = self._segment_ids
        ids = message_ids
        if self.config.memory_write_granularity == "sentence_mean":
            if message_ids is None or sentence_ids is None or message_ids.shape != sentence_ids.shape:
                return None
            ids = torch.where(message_ids >= 0, sentence_ids, torch.full_like(sentence_ids, -1))
        if ids is None or tuple(ids.shape) != (batch, n_tok):
            return None
        ids = torch.where(written, ids.to(written.device), torch.full_like(ids, -1, device=written.device))
        return ids if bool((ids >= 0).any()) else None

    def _row_mask(self, rows: Sequence[bool], device: torch.device) -> Tensor:
        """[B, 1] bool: per-row switches as a device tensor, built once per setting.

        Building it from the Python list every forward is a host-to-device copy, and on CUDA that copy waits for
        all queued work: once per decoded token the CPU would stop running ahead of the GPU.
        """
        key = (tuple(rows), device)
        mask = self._row_masks.get(key)
        if mask is None:
            if len(self._row_masks) >= 16:
                self._row_masks.clear()
            mask = self._row_masks[key] = torch.tensor(rows, device=device).unsqueeze(1)
        return mask

    def _row_selection(self, rows: Sequence[bool], device: torch.device) -> _Rows:
        """The memory rows of a batch in which some have memory off, built once per setting."""
        key = (tuple(rows), device)
        selection = self._row_selections.get(key)
        if selection is None:
            if len(self._row_selections) >= 16:
                self._row_selections.clear()
            indices = [i for i, on in enumerate(rows) if on]
            contiguous = indices == list(range(indices[0], indices[-1] + 1))
            selection = self._row_selections[key] = _Rows(torch.tensor(indices, device=device),
                                                          slice(indices[0], indices[-1] + 1) if contiguous else None)
        return selection

    @staticmethod
    def _rows(flags: tuple[bool, ...] | bool | None, batch: int, what: str) -> list[bool]:
        if flags is None or isinstance(flags, bool):
            return [flags is not False] * batch
        if len(flags) != batch:
            raise DeltaMemError(f"{what} switches are set for {len(flags)} rows but the input has {batch}")
        return list(flags)

    def _state_for(self, index: int, batch: int, device: torch.device) -> Tensor:
        state = self._states[index]
        cfg = self.config
        if state is None:
            return torch.zeros(batch, cfg.num_state_heads, cfg.rank, cfg.rank, device=device, dtype=self.state_dtype)
        if state.shape[0] != batch:
            raise DeltaMemError(
                f"the memory holds {state.shape[0]} rows but the input has {batch}: call reset() or set_state() "
                "with a state of the new batch size first"
            )
        return state.to(device)

    def _count_written(self, counts: Tensor | int, batch: int, device: torch.device) -> None:
        """Add per-row counts [B], or one number for every row (decode: one in-place add, nothing to sum)."""
        if self._written is None or self._written.shape != (batch,):
            self._written = torch.zeros(batch, dtype=torch.long, device=device)
        self._written += counts

    # --------------------------------------------------------------------------------------- calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Exactly the backbone's forward, with the memory read and written along the way."""
        return self.backbone(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The backbone's `generate`; greedy or sampled single-pass decoding only (beam search would re-write)."""
        return self.backbone.generate(*args, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.layers[0].memory_q_proj.device

    @property
    def state_dtype(self) -> torch.dtype:
        """float32 for float32/bf16/fp16 models (as the official GPU kernel carries it), float64 for float64."""
        return torch.promote_types(self.layers[0].memory_q_proj.dtype, torch.float32)

    # ------------------------------------------------------------------------------------- switches
    def set_rows(self, memory: Sequence[bool] | None = None, writes: Sequence[bool] | None = None) -> None:
        """Per-row switches for the next forwards: memory on/off and writes on/off (None = on for every row).

        A row with memory off is the frozen backbone exactly, and neither reads nor writes its state.
        """
        self._memory_rows = None if memory is None else tuple(bool(m) for m in memory)
        self._write_rows = None if writes is None else tuple(bool(w) for w in writes)

    @contextmanager
    def rows(self, memory: Sequence[bool] | None = None, writes: Sequence[bool] | None = None) -> Iterator[None]:
        """`set_rows` for the duration of a block, restoring the previous switches after it."""
        saved = (self._memory_rows, self._write_rows)
        self.set_rows(memory, writes)
        try:
            yield
        finally:
            self._memory_rows, self._write_rows = saved

    @contextmanager
    def read_only(self) -> Iterator[None]:
        """Writes off for every row for the duration of a block (the memory is read, not changed)."""
        saved = self._write_rows
        self._write_rows = False
        try:
            yield
        finally:
            self._write_rows = saved

    @contextmanager
    def single_row(self, row: int, batch: int) -> Iterator[None]:
        """Run the forwards of a block on one row of a `batch`-row batch as a batch of one: that row's memory,
        switches and counter; merged back into the batch's when the block ends (and dropped if it raises).

        A caller that feeds the rows of a batch one at a time (see `deltamem.runtime.prefill`) gets what one
        batched forward would leave: every row's state and counter, and diagnostics per row of the batch.
        """
        memory = self._rows(self._memory_rows, batch, "memory")
        writes = self._rows(self._write_rows, batch, "write")
        saved = (self._states, self._written, self._memory_rows, self._write_rows, self._beta_mean,
                 self._delta_o_ratio)
        if any(state is not None and state.shape[0] != batch for state in self._states):
            raise DeltaMemError(f"the memory holds another batch than the {batch} rows asked for")
        views = [None if state is None else state[row:row + 1] for state in self._states]
        self._states = list(views)
        self._written = None if self._written is None else self._written[row:row + 1].clone()
        self._memory_rows, self._write_rows = (memory[row],), (writes[row],)
        self._beta_mean = [None] * len(self._beta_mean)
        self._delta_o_ratio = [None] * len(self._delta_o_ratio)
        try:
            yield
        except BaseException:
            (self._states, self._written, self._memory_rows, self._write_rows, self._beta_mean,
             self._delta_o_ratio) = saved
            raise
        states, written, self._memory_rows, self._write_rows, beta_mean, delta_o_ratio = saved
        index = torch.tensor([row], device=self.device)
        states = list(states)
        for layer, (full, part) in enumerate(zip(states, self._states)):
            if part is not None and part is not views[layer]:          # the row's state changed
                base = full if full is not None else part.new_zeros(batch, *part.shape[1:])
                states[layer] = base.index_copy(0, index.to(part.device), part)
        self._states = states
        if self._written is not None:
            merged = (written.clone() if written is not None and written.shape == (batch,) else
                      torch.zeros(batch, dtype=torch.long, device=self._written.device))
            merged[row] = self._written[0]
            self._written = merged
        else:
            self._written = written
        self._beta_mean = [_merge_row(old, new, row, batch) for old, new in zip(beta_mean, self._beta_mean)]
        self._delta_o_ratio = [_merge_row(old, new, row, batch) for old, new in zip(delta_o_ratio,
                                                                                    self._delta_o_ratio)]

    @contextmanager
    def write_segments(self, message_ids: Tensor | None, sentence_ids: Tensor | None = None) -> Iterator[None]:
        """SSW: the per-token message (and sentence) ids of the next forward, -1 where nothing is written."""
        self._segment_ids = (message_ids, sentence_ids)
        try:
            yield
        finally:
            self._segment_ids = (None, None)

    # ---------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Empty memory (all zeros) and zero counters for every row."""
        self._states = [None] * len(self._states)
        self._written = None
        self._beta_mean = [None] * len(self._beta_mean)
        self._delta_o_ratio = [None] * len(self._delta_o_ratio)

    def get_state(self) -> dict[str, Tensor]:
        """The memory of every wrapped layer that has one, as float32 copies in the official layout.

        Keys are the attention module names; values are [B, r, r], or [B, H, r, r] with several state heads.
        """
        out = {}
        for name, state in zip(self.layer_names, self._states):
            if state is not None:
                out[name] = (state[:, 0] if self.config.num_state_heads == 1 else state).detach().clone()
        return out

    def set_state(self, states: Mapping[str, Tensor]) -> None:
        """Load a memory saved by `get_state` (any float dtype; carried in float32 from here on)."""
        unknown = sorted(set(states) - set(self.layer_names))
        if unknown:
            raise DeltaMemError(f"memory state for unknown layer {unknown[0]!r}")
        cfg = self.config
        new: list[Tensor | None] = []
        batch = None
        for name, attn in zip(self.layer_names, self._attentions):
            state = states.get(name)
            if state is None:
                new.append(None)
                continue
            if cfg.num_state_heads == 1 and state.dim() == 3:
                state = state.unsqueeze(1)
            expected = (cfg.num_state_heads, cfg.rank, cfg.rank)
            wrong_batch = batch is not None and state.shape[0] != batch
            if state.dim() != 4 or tuple(state.shape[1:]) != expected or wrong_batch:
                raise DeltaMemError(
                    f"memory state {name!r} has shape {list(state.shape)}; expected [{batch or 'B'}, "
                    f"{', '.join(map(str, expected if cfg.num_state_heads > 1 else expected[1:]))}]"
                )
            batch = state.shape[0]
            new.append(state.detach().to(device=attn.q_proj.weight.device, dtype=self.state_dtype).clone())
        self._states = new
        # The last forward's β and ‖Δo‖ belonged to the rows the state replaces.
        self._beta_mean = [None] * len(self._beta_mean)
        self._delta_o_ratio = [None] * len(self._delta_o_ratio)

    @property
    def tokens_written(self) -> list[int]:
        """Per row, the tokens written into memory since the last reset (one host sync)."""
        return [] if self._written is None else [int(n) for n in self._written.tolist()]

    def set_tokens_written(self, counts: Sequence[int]) -> None:
        """Restore the per-row counters (with `set_state`, when resuming a saved session)."""
        self._written = torch.tensor(list(counts), dtype=torch.long, device=self.device)

    def diagnostics(self) -> dict[str, list[float]]:
        """Per row, averaged over layers: mean β of the last forward, ‖Δo‖/‖o‖ of the last forward, ‖S‖; and per
        layer `state_norm.<i>` (the i-th wrapped layer's ‖S‖), so a view can show where in depth the memory grows.

        Kept as device tensors during the forward; this reads them with one host sync, so call it once per turn.
        """
        norms = {f"state_norm.{index}": torch.linalg.vector_norm(state, dim=(-3, -2, -1)).float()
                 for index, state in enumerate(self._states) if state is not None}
        parts = {}
        for key, values in (("beta_mean", self._beta_mean), ("delta_o_ratio", self._delta_o_ratio),
                            ("state_norm", list(norms.values()))):
            present = [(v() if callable(v) else v).float() for v in values if v is not None]
            if present and all(p.shape == present[0].shape for p in present):
                parts[key] = torch.stack(present).mean(0)
        if not parts:
            return {}
        if "state_norm" in parts:
            parts.update(norms)
        values = torch.stack([v.to(self.device) for v in parts.values()]).tolist()   # the one host sync
        return dict(zip(parts, values))

    # ------------------------------------------------------------------------------------- adapters
    def adapter_state_dict(self) -> dict[str, Tensor]:
        """The adapter's tensors under the official keys, `model.layers.{i}.self_attn.{param}`."""
        out = {}
        for name, layer in zip(self.layer_names, self.layers):
            for param_name, param in layer.named_parameters():
                out[f"{name}.{param_name}"] = param.detach()
        return out

    def detach(self) -> nn.Module:
        """Remove every hook and return the untouched backbone (its attention back on plain SDPA)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        restore_sdpa(self.backbone)
        return self.backbone

    # ------------------------------------------------------------------------------------ not PEFT
    def merge_and_unload(self, *args: Any, **kwargs: Any) -> nn.Module:
        raise NotMergeableError(_MERGE_MESSAGE)

    def merge_adapter(self, *args: Any, **kwargs: Any) -> None:
        raise NotMergeableError(_MERGE_MESSAGE)

    def merge(self, *args: Any, **kwargs: Any) -> None:
        raise NotMergeableError(_MERGE_MESSAGE)
