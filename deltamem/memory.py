"""One δ-mem layer: the parameters beside one attention module, and the math from its input to its corrections.

The layer never calls the attention itself. It reads the attention input x, runs the memory, and hands back the
low-rank corrections Δq, Δk, Δv (added to the projection outputs, before q_norm/k_norm and RoPE) and Δo (added
after o_proj). `deltamem.model` wires those into the backbone with hooks.

Parameter names and shapes follow the official adapter file exactly, so `state_dict()` keys are the file's keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deltamem.config import BRANCHES, DeltaMemConfig
from deltamem.scan import coupled_update, scan, update

_T = TypeVar("_T")


@dataclass(frozen=True)
class AttentionShape:
    """The projection sizes of one attention module, read off the backbone (never guessed)."""

    hidden: int       # d: q_proj.in_features
    q_out: int        # n_heads · head_dim
    k_out: int        # n_kv · head_dim
    v_out: int
    o_out: int

    @classmethod
    def of(cls, attention: nn.Module) -> AttentionShape:
        q, k, o = attention.q_proj, attention.k_proj, attention.o_proj
        v = getattr(attention, "v_proj", None)
        return cls(hidden=q.in_features, q_out=q.out_features, k_out=k.out_features,
                   v_out=v.out_features if v is not None else k.out_features, o_out=o.out_features)

    def out_features(self, branch: str) -> int:
        return {"q": self.q_out, "k": self.k_out, "v": self.v_out, "o": self.o_out}[branch]


@dataclass
class MemoryOutput:
    """What one forward of a layer produced: corrections per active branch, the new state, and β of its writes.

    Mean β is a diagnostic, read at most once per turn, so the layer hands over its inputs (`masked_mean` reduces them
    on demand) instead of reducing them in every decode step.
    """

    corrections: dict[str, Tensor] | ReadCorrections
    state: Tensor
    beta: Tensor | None = None       # [B, T', H, r] β of the writes (T' = tokens, or segments for SSW)
    written: Tensor | None = None    # [B, T'] bool: which of them were written


@dataclass
class PendingWrite:
    """One decoded token's write, held back after its read so that the writes of all layers run as one batch.

    One layer's write has no leading dimension, a stack of layers has one.
    """

    state: Tensor     # [..., B, H, r, r] the state the token read, which the write updates
    product: Tensor   # [..., B·H, r, 2] S q and S k from that state (state dtype)
    qk: Tensor        # [..., B·H, r, 2] normalised q and k (state dtype)
    raw: Tensor       # [..., B, P] the fused projection's output, from which v and the gates come

    @classmethod
    def stack(cls, writes: list[PendingWrite]) -> PendingWrite:
        return cls(*(torch.stack([getattr(w, name) for w in writes]) for name in ("state", "product", "qk", "raw")))


@dataclass
class ReadCorrections:
    """Decode's corrections before their last product: each projection's hook adds reads · W_branchᵀ to its output
    with one `addmm`, instead of a GEMM for all branches, a split and an add per branch."""

    reads: Tensor                 # [B, R] in the model dtype
    weights: dict[str, Tensor]    # branch → [R, out], transposed, with α/r folded in
    deltas: dict[str, Tensor] | None = None    # branch → [B, out]: the corrections themselves (`float_products`)

    def add_to(self, branch: str, output: Tensor, rows: Any = None) -> Tensor:
        """output [B, 1, out] + the correction; in place when autograd is off (the output is the hook's own).

        `rows` (the model's selection of memory rows, or None for all) are the rows the reads belong to: the others
        are left untouched.
        """
        flat = output.view(-1, output.shape[-1])
        grad = torch.is_grad_enabled()
        if self.deltas is not None:                              # computed already: only the add is left
            delta = self.deltas[branch]
            if rows is not None:
                return rows.add(flat, delta).view(output.shape)
            return (flat + delta if grad else flat.add_(delta)).view(output.shape)
        weight = self.weights[branch]
        if rows is None:                                         # one fused addmm
            if grad:
                return torch.addmm(flat, self.reads, weight).view(output.shape)
            flat.addmm_(self.reads, weight)
            return output
        if rows.span is not None and not grad:
            flat[rows.span].addmm_(self.reads, weight)
            return output
        return rows.add(flat, self.reads @ weight).view(output.shape)

    def delta(self, branch: str) -> Tensor:
        if self.deltas is not None:
            return self.deltas[branch].unsqueeze(1)
        return (self.reads @ self.weights[branch]).unsqueeze(1)


class DecodeWeights(NamedTuple):
    """What decode multiplies by, fetched for all layers once per token."""

    projection: Tensor                   # the fused projection and its bias (float32 with `float_products`)
    bias: Tensor
    corrections: Tensor                  # the fused corrections [Σ out, R], α/r folded in
    branches: dict[str, Tensor] | None   # per branch, transposed for `addmm`, when nothing but the product stands
                                         # between the reads and the outputs (else None)
    stacked: Tensor | None = None        # `float_products` and a plain product: all branches transposed [R, Σ out]


class DeltaMemLayer(nn.Module):
    """The δ-mem parameters of one attention layer and its forward math."""

    def __init__(self, config: DeltaMemConfig, shape: AttentionShape) -> None:
        super().__init__()
        self.config = config
        self.shape = shape
        r_total, gates, d = config.read_dim, config.gate_dim, shape.hidden
        if config.trainable_delta_scale:
            size = 1 if config.delta_scale_granularity == "layer" else len(BRANCHES)
            self.delta_scale_raw = nn.Parameter(torch.empty(size))
        self.memory_q_proj = nn.Parameter(torch.empty(r_total, d))
        self.memory_k_proj = nn.Parameter(torch.empty(r_total, d))
        self.memory_v_proj = nn.Parameter(torch.empty(r_total, d))
        for branch in BRANCHES:
            setattr(self, f"delta_{branch}_proj", nn.Parameter(torch.empty(shape.out_features(branch), r_total)))
        if config.delta_o_rmsnorm:
            self.delta_o_rmsnorm_weight = nn.Parameter(torch.empty(shape.o_out))
        self.beta_proj = nn.Parameter(torch.empty(gates, d))
        self.beta_bias = nn.Parameter(torch.empty(gates))
        if not config.couple_lambda:
            self.lambda_proj = nn.Parameter(torch.empty(gates, d))
            self.lambda_bias = nn.Parameter(torch.empty(gates))
        self._cache: dict[str, tuple[tuple, Any]] = {}
        self.reset_parameters()

    # ------------------------------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self, attention: nn.Module | None = None) -> None:
        """The official initialisation; `attention` supplies the base weights for the base_slice inits."""
        cfg = self.config
        for name in ("memory_q_proj", "memory_k_proj", "memory_v_proj"):
            nn.init.kaiming_uniform_(getattr(self, name), a=math.sqrt(5))
        self.beta_proj.zero_()
        self.beta_bias.fill_(cfg.beta_bias_init)
        if not cfg.couple_lambda:
            self.lambda_proj.zero_()
            self.lambda_bias.fill_(-cfg.beta_bias_init)
        if cfg.delta_o_rmsnorm:
            self.delta_o_rmsnorm_weight.fill_(1.0)
        if cfg.trainable_delta_scale:
            p = cfg.delta_scale_init / cfg.delta_scale_max
            self.delta_scale_raw.fill_(math.log(p / (1 - p)))
        for branch in BRANCHES:
            weight = getattr(self, f"delta_{branch}_proj")
            weight.zero_()
            if branch not in cfg.delta_heads or cfg.output_init == "zero":
                continue
            if cfg.output_init == "random":
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
                weight.mul_(cfg.online_gain)
                continue
            base = getattr(attention, f"{branch}_proj", None) if attention is not None else None
            if base is None:
                continue
            width = min(cfg.rank, weight.shape[1], base.weight.shape[1])
            if cfg.output_init == "base_slice_fixed":
                width = min(width, cfg.base_slice_ref_width)
            cols = base.weight[:, :width].float()
            weight[:, :width] = (F.normalize(cols, dim=0) * cfg.online_gain).to(weight.dtype)

    # ---------------------------------------------------------------------------------------- pieces
    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """x [B, T, d] → qk [B, T, H, r, 2] (q and k side by side), v, β, λ [B, T, H, r] in x's dtype; λ is None
        when coupled (λ = 1 − β, left to `coefficients`, which decode does without).

        One GEMM gives q, k, v and the gate logits together (`fused_projection`, whose rows interleave q and k so
        that they come out side by side, the layout of decode's single product); tanh and the normalisation run
        on q and k at once. Same arithmetic as projecting each apart (official op order), fewer kernels.
        """
        out = self._project(x, *self.fused_projection(self.float_products))
        return self._qk(out), *self._values_and_gates(out)

    @property
    def float_products(self) -> bool:
        """Whether the memory's small products run in float32 although the model is in bf16 or fp16: on a CPU, where
        the half-precision GEMM kernels for these shapes (32 output columns; an inner dimension of 8) run 2 to 20
        times slower than float32's (oneDNN without native bf16 instructions). The products' inputs are the model
        dtype's values and their outputs are rounded back to it, so only the accumulation differs from a
        half-precision GEMM's (which accumulates in float32 too)."""
        weight = self._parameters["memory_q_proj"]
        return weight.device.type == "cpu" and weight.dtype in (torch.bfloat16, torch.float16)

    @staticmethod
    def _project(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """`F.linear`, in the weight's dtype (float32 for `float_products`), output in x's dtype."""
        if weight.dtype == x.dtype:
            return F.linear(x, weight, bias)
        return F.linear(x.to(weight.dtype), weight, bias).to(x.dtype)

    def _qk(self, out: Tensor, shape: tuple[int, ...] | None = None) -> Tensor:
        """The projection's output [..., P] → normalised q and k side by side [..., H, r, 2], or in `shape`."""
        cfg = self.config
        qk = out[..., :2 * cfg.read_dim]
        qk = qk.view(*out.shape[:-1], cfg.num_state_heads, cfg.rank, 2) if shape is None else qk.reshape(shape)
        if cfg.normalize_qk:             # F.normalize(tanh(·), eps=1e-6), without its Python wrapper
            qk = torch.tanh(qk)
            qk = qk / torch.linalg.vector_norm(qk, dim=-2, keepdim=True).clamp_min(1e-6)
        return qk

    def _values_and_gates(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The projection's output [..., P] → v, β, λ [..., H, r] (λ None when coupled)."""
        cfg = self.config
        width = cfg.read_dim
        v = out[..., width * 2:width * 3].unflatten(-1, (cfg.num_state_heads, cfg.rank))
        gates = torch.sigmoid(out[..., 3 * width:])
        if cfg.couple_lambda:
            beta, lam = self._gates_to_rows(gates), None
        else:
            beta, lam = (self._gates_to_rows(g) for g in gates.split(cfg.gate_dim, dim=-1))
        if cfg.state_update_mode == "no_lambda":
            lam = torch.ones_like(beta)
        return v, beta, lam

    def fused_projection(self, in_float: bool = False) -> tuple[Tensor, Tensor]:
        """The q, k, v and gate projections stacked into one weight (rows of q and k interleaved), with a bias that
        is zero except on the gates; `in_float`: a float32 copy (see `float_products`)."""
        params = self._parameters                 # not getattr: nn.Module's __getattr__ is slow, and this is per token
        weights = [params["memory_q_proj"], params["memory_k_proj"], params["memory_v_proj"], params["beta_proj"]]
        biases = [params["beta_bias"]]
        if not self.config.couple_lambda:
            weights.append(params["lambda_proj"])
            biases.append(params["lambda_bias"])

        def stack() -> tuple[Tensor, Tensor]:
            zeros = biases[0].new_zeros(3 * self.config.read_dim)
            qk = torch.stack(weights[:2], dim=1).flatten(0, 1)
            weight, bias = torch.cat([qk, *weights[2:]], dim=0), torch.cat([zeros, *biases])
            return (weight.float(), bias.float()) if in_float else (weight, bias)

        return self._cached("projection-float" if in_float else "projection", weights + biases, stack)

    def fused_corrections(self, in_float: bool = False) -> Tensor:
        """The active branches' output projections stacked into one weight, with α/r folded in: one GEMM for all;
        `in_float`: a float32 copy of it (see `float_products`)."""
        weights = [self._parameters[f"delta_{branch}_proj"] for branch in self.config.delta_heads]

        def stack() -> Tensor:
            stacked = torch.cat(weights, dim=0) * self.config.scaling
            return stacked.float() if in_float else stacked

        return self._cached("corrections-float" if in_float else "corrections", weights, stack)

    def _cached(self, name: str, params: list[Tensor], build: Callable[[], _T]) -> _T:
        """`build()`, kept between calls while none of `params` changed (decode would rebuild it per token).

        Every in-place update through torch (`copy_`, `load_state_dict`, an optimizer step) bumps a parameter's
        version and a new tensor changes its address, and either rebuilds it. (Writes through `param.data` bypass
        the version counter: don't.) When autograd records, it is rebuilt every call so that gradients reach the
        parameters.
        """
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return build()
        key = tuple((p.data_ptr(), p._version) for p in params)
        entry = self._cache.get(name)
        if entry is None or entry[0] != key:
            entry = self._cache[name] = (key, build())
        return entry[1]

    def _gates_to_rows(self, gate: Tensor) -> Tensor:
        """[.., G] → [.., H, r]: one gate per state row, broadcast when there is one per head."""
        cfg = self.config
        gate = gate.unflatten(-1, (cfg.num_state_heads, -1))
        return gate if cfg.rankwise_gates else gate.expand(*gate.shape[:-1], cfg.rank)

    def coefficients(self, beta: Tensor, lam: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(keep κ, erase ε, write ω) per row for the configured state-update mode (λ None: coupled, 1 − β)."""
        if lam is None:
            lam = 1 - beta
        if self.config.state_update_mode == "lambda_outside":
            return lam, lam * beta, beta
        return lam, beta, beta          # standard; no_lambda has λ = 1 already

    def branch_scale(self, branch: str, dtype: torch.dtype) -> Tensor | None:
        """c_n, the optional trainable multiplier of one correction (None when there is none)."""
        if not self.config.trainable_delta_scale:
            return None
        index = 0 if self.config.delta_scale_granularity == "layer" else BRANCHES.index(branch)
        return (torch.sigmoid(self.delta_scale_raw[index]) * self.config.delta_scale_max).to(dtype)

    def decode_weights(self) -> DecodeWeights:
        """`fused_projection`, `fused_corrections` and the latter per branch, transposed for `addmm`: decode
        fetches them for all layers once per token, then reads them per layer."""
        cfg = self.config

        in_float = self.float_products

        def build() -> DecodeWeights:
            projection, bias = self.fused_projection(in_float)
            corrections = self.fused_corrections(in_float)
            if cfg.trainable_delta_scale or cfg.delta_o_rmsnorm:
                return DecodeWeights(projection, bias, corrections, None)
            if in_float:
                return DecodeWeights(projection, bias, corrections, None, corrections.t().contiguous())
            sizes = [self.shape.out_features(branch) for branch in cfg.delta_heads]
            branches = {branch: weight.t().contiguous()
                        for branch, weight in zip(cfg.delta_heads, corrections.split(sizes, dim=0))}
            return DecodeWeights(projection, bias, corrections, branches)

        return self._cached("decode-float" if in_float else "decode", list(self._parameters.values()), build)

    def corrections(self, reads: Tensor, dtype: torch.dtype | None = None, weight: Tensor | None = None
                    ) -> dict[str, Tensor]:
        """Reads [B, T, R] (state dtype) → the low-rank corrections of every active branch in the model `dtype`
        (default: the layer's; views of one GEMM).

        The reads are rounded to the model dtype first (the official reads are), and the GEMM runs in it, or in
        float32 with its output rounded to it (`float_products`). `weight` is `fused_corrections()` (of the same
        precision) when the caller already has it.
        """
        cfg = self.config
        in_float = self.float_products
        dtype = dtype or self._parameters["memory_q_proj"].dtype
        weight = self.fused_corrections(in_float) if weight is None else weight
        rounded = reads.to(dtype)
        if in_float:
            stacked = F.linear(rounded.to(weight.dtype), weight).to(dtype)
        else:
            stacked = F.linear(rounded, weight)
        sizes = [self.shape.out_features(branch) for branch in cfg.delta_heads]
        out = {}
        for branch, delta in zip(cfg.delta_heads, stacked.split(sizes, dim=-1)):
            scale = self.branch_scale(branch, delta.dtype)
            if scale is not None:
                delta = delta * scale
            if branch == "o" and cfg.delta_o_rmsnorm:
                delta = F.rms_norm(delta.float(), (delta.shape[-1],), self.delta_o_rmsnorm_weight.float(),
                                   cfg.delta_o_rmsnorm_eps).to(dtype)
            out[branch] = delta
        return out

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: Tensor, state: Tensor, written: Tensor | None, readable: Tensor | None,
                segments: Tensor | None = None, *, all_written: bool = False) -> MemoryOutput:
        """Run the memory over one chunk.

        x: [B, T, d] attention input. state: [B, H, r, r] float32. written: [B, T] bool, the tokens that write into
        the memory, or None when no token writes (a read-only forward needs no scan); `all_written` says the caller
        knows it is all True, which spares decode its masking. readable: [B, T] bool, the tokens that read (the
        others' reads are set to zero, never multiplied by zero), or None when all of them do. segments: [B, T]
        long for SSW (-1 = not written), or None for one write per token.
        """
        batch, n_tok, _ = x.shape
        heads, rank = self.config.num_state_heads, self.config.rank
        if written is not None and segments is None and n_tok == 1:
            corrections, pending = self.read_token(x, state, readable)
            new_state, beta = self.write_tokens(pending, written, all_written)
            return MemoryOutput(corrections, new_state, beta.unsqueeze(1), written)
        qk, v, beta, lam = self.project(x)
        if written is None:
            new_state = state
            reads = torch.einsum("bhij,bthj->bthi", state, qk[..., 0].to(state.dtype))
            beta = None
        elif segments is None:
            keep, erase, write = self.coefficients(beta, lam)
            rows_written = written if heads == 1 else written.repeat_interleave(heads, dim=0)
            reads, new_state = scan(*_flat_heads(state.dtype, *qk.unbind(-1), v, keep, erase, write),
                                    rows_written, state.flatten(0, 1))
            reads = reads.unflatten(0, (batch, heads)).transpose(1, 2)        # [B, T, H, r]
        else:
            new_state, beta, written = self._segment_writes(x, state, segments)
            reads = torch.einsum("bhij,bthj->bthi", state, qk[..., 0].to(state.dtype))   # every token reads S_0
        if readable is not None:
            reads = reads.masked_fill(~readable[:, :, None, None], 0)
        corrections = self.corrections(reads.flatten(2), x.dtype)
        return MemoryOutput(corrections, new_state.view(batch, heads, rank, rank), beta, written)

    # ---------------------------------------------------------------------------------------- decode
    def read_token(self, x: Tensor, state: Tensor, readable: Tensor | None, weights: DecodeWeights | None = None
                   ) -> tuple[dict[str, Tensor] | ReadCorrections, PendingWrite]:
        """Decode's first half: one token's read and corrections now, its write handed back for later.

        The read takes the state before the token's write, so the write can wait; the model runs the writes of
        all layers together after the forward (`write_tokens` with a layer dimension in front), a handful of
        kernels per token instead of a handful per layer. x [B, 1, d], state [B, H, r, r]; readable [B, 1] or
        None; `weights` is `decode_weights()` when the caller already has it.
        """
        projection, bias, correction, branches, stacked = weights or self.decode_weights()
        batch, rank = x.shape[0], self.config.rank
        out = self._project(x, projection, bias).view(batch, -1)
        qk = self._qk(out, (-1, rank, 2))                      # [B·H, r, 2]
        if qk.dtype != state.dtype:
            qk = qk.to(state.dtype)
        product = torch.bmm(state.view(-1, rank, rank), qk)    # S q and S k at once
        reads = product[..., 0].reshape(batch, -1)             # [B, R], strided
        reads = reads.contiguous() if readable is None else reads.masked_fill(~readable, 0)
        pending = PendingWrite(state, product, qk, out)
        if stacked is not None:                 # float_products: one product for all branches, rounded once
            rounded = reads.to(x.dtype).to(stacked.dtype)
            deltas = (rounded @ stacked).to(x.dtype).split(self._branch_sizes(), dim=-1)
            return ReadCorrections(rounded, {}, dict(zip(self.config.delta_heads, deltas))), pending
        if not branches:
            return self.corrections(reads.unsqueeze(1), x.dtype, correction), pending
        if reads.dtype != x.dtype:
            reads = reads.to(x.dtype)           # rounded as the official reads are
        return ReadCorrections(reads, branches), pending

    def _branch_sizes(self) -> list[int]:
        return [self.shape.out_features(branch) for branch in self.config.delta_heads]

    def write_tokens(self, pending: PendingWrite, written: Tensor, all_written: bool) -> tuple[Tensor, Tensor]:
        """Decode's second half: the held-back writes → (new state [..., B, H, r, r], β [..., B, H, r]).

        Leading dimensions (layers) are free; every layer must share this layer's configuration. written [B, 1]
        bool; `all_written` says it is all True. The released update (coupled λ, standard mode) takes
        `coupled_update`'s shorter form, with unwritten rows masked through β.
        """
        state, dtype = pending.state, pending.state.dtype
        v, beta, lam = self._values_and_gates(pending.raw)
        v, beta = (t if t.dtype == dtype else t.to(dtype) for t in (v, beta))
        batch = pending.raw.shape[-2]
        sk, k = (t[..., 1].unflatten(-2, (batch, -1)) for t in (pending.product, pending.qk))
        if lam is None and self.config.state_update_mode == "standard":
            new = coupled_update(state, sk, k, v, beta)
            return (new if all_written else torch.where(written.view(-1, 1, 1, 1), new, state)), beta
        keep, erase, write = self.coefficients(beta, lam if lam is None or lam.dtype == dtype else lam.to(dtype))
        return update(state, sk, k, v, keep, erase, write, written.view(-1, 1)), beta

    def _segment_writes(self, x: Tensor, state: Tensor, segments: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """SSW: one write per segment (message or sentence), from the mean of its tokens, in id order.

        Returns the new state, β of the segment writes [B, S, H, r] and which segments each row has [B, S].
        """
        heads = self.config.num_state_heads
        active = segments >= 0
        ids, index = torch.unique(segments[active], sorted=True, return_inverse=True)
        n_seg = ids.numel()
        rows = active.nonzero()[:, 0]
        flat = rows * n_seg + index
        sums = x.new_zeros(x.shape[0] * n_seg, x.shape[-1]).index_add_(0, flat, x[active])
        counts = torch.zeros(x.shape[0] * n_seg, device=x.device).index_add_(0, flat, torch.ones_like(flat,
                                                                                                     dtype=torch.float))
        means = (sums / counts.clamp(min=1).unsqueeze(-1).to(x.dtype)).view(x.shape[0], n_seg, -1)
        present = (counts > 0).view(x.shape[0], n_seg)
        qk, v, beta, lam = self.project(means)
        keep, erase, write = self.coefficients(beta, lam)
        _, new_state = scan(*_flat_heads(state.dtype, *qk.unbind(-1), v, keep, erase, write),
                            present.repeat_interleave(heads, dim=0), state.flatten(0, 1))
        return new_state, beta, present


def _flat_heads(dtype: torch.dtype, *tensors: Tensor) -> list[Tensor]:
    """[B, T, H, r] → [B·H, T, r] in the state's dtype, the layout the scan takes (views, with one head)."""
    flat = [t.squeeze(2) if t.shape[2] == 1 else t.transpose(1, 2).flatten(0, 1) for t in tensors]
    return [t if t.dtype == dtype else t.to(dtype) for t in flat]


def masked_mean(beta: Tensor, mask: Tensor) -> Tensor:
    """Mean β per row over the masked tokens, without a host sync."""
    per_token = beta.float().mean(dim=(-1, -2))
    if mask.shape[-1] == 1:              # decode: the token's own β, or 0 when it is not written
        return per_token[:, 0] * mask[:, 0]
    total = (per_token * mask).sum(-1)
    return total / mask.sum(-1).clamp(min=1)
