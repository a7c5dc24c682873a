"""One δ-mem layer: the parameters beside one attention module, and the math from its input to its corrections.

The layer never calls the attention itself. It reads the attention input x, runs the memory, and hands back the
low-rank corrections Δq, Δk, Δv (added to the projection outputs, before q_norm/k_norm and RoPE) and Δo (added
after o_proj). `deltamem.model` wires those into the backbone with hooks.

Parameter names and shapes follow the official adapter file exactly, so `state_dict()` keys are the file's keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deltamem.config import BRANCHES, DeltaMemConfig
from deltamem.scan import scan


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
    """What one forward of a layer produced: corrections per active branch, the new state, diagnostics."""

    corrections: dict[str, Tensor]
    state: Tensor
    beta_mean: Tensor | None   # [B] mean β over the tokens each row wrote (None: nothing was written)


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
    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x [B, T, d] → q, k, v [B, T, H, r] and β, λ [B, T, H, r] in x's dtype (official op order)."""
        cfg = self.config
        heads, rank = cfg.num_state_heads, cfg.rank
        packed = torch.cat([self.memory_q_proj, self.memory_k_proj, self.memory_v_proj], dim=0)
        q, k, v = F.linear(x, packed).split(cfg.read_dim, dim=-1)
        q, k, v = (t.unflatten(-1, (heads, rank)) for t in (q, k, v))
        if cfg.normalize_qk:
            q = F.normalize(torch.tanh(q), dim=-1, eps=1e-6)
            k = F.normalize(torch.tanh(k), dim=-1, eps=1e-6)
        if cfg.couple_lambda:
            beta = torch.sigmoid(F.linear(x, self.beta_proj) + self.beta_bias)
            lam = 1 - beta
        else:
            both = F.linear(x, torch.cat([self.beta_proj, self.lambda_proj], dim=0))
            a_beta, a_lam = both.split(cfg.gate_dim, dim=-1)
            beta = torch.sigmoid(a_beta + self.beta_bias)
            lam = torch.sigmoid(a_lam + self.lambda_bias)
        if cfg.state_update_mode == "no_lambda":
            lam = torch.ones_like(beta)
        beta, lam = (self._gates_to_rows(g) for g in (beta, lam))
        return q, k, v, beta, lam

    def _gates_to_rows(self, gate: Tensor) -> Tensor:
        """[.., G] → [.., H, r]: one gate per state row, broadcast when there is one per head."""
        cfg = self.config
        gate = gate.unflatten(-1, (cfg.num_state_heads, -1))
        return gate.expand(*gate.shape[:-1], cfg.rank)

    def coefficients(self, beta: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(keep κ, erase ε, write ω) per row for the configured state-update mode."""
        if self.config.state_update_mode == "lambda_outside":
            return lam, lam * beta, beta
        return lam, beta, beta          # standard; no_lambda has λ = 1 already

    def branch_scale(self, branch: str, dtype: torch.dtype) -> Tensor | None:
        """c_n, the optional trainable multiplier of one correction (None when there is none)."""
        if not self.config.trainable_delta_scale:
            return None
        index = 0 if self.config.delta_scale_granularity == "layer" else BRANCHES.index(branch)
        return (torch.sigmoid(self.delta_scale_raw[index]) * self.config.delta_scale_max).to(dtype)

    def corrections(self, reads: Tensor) -> dict[str, Tensor]:
        """Reads [B, T, R] (model dtype) → the low-rank corrections of every active branch."""
        out = {}
        for branch in self.config.delta_heads:
            delta = F.linear(reads, getattr(self, f"delta_{branch}_proj")) * self.config.scaling
            scale = self.branch_scale(branch, delta.dtype)
            if scale is not None:
                delta = delta * scale
            if branch == "o" and self.config.delta_o_rmsnorm:
                delta = F.rms_norm(delta.float(), (delta.shape[-1],), self.delta_o_rmsnorm_weight.float(),
                                   self.config.delta_o_rmsnorm_eps).to(reads.dtype)
            out[branch] = delta
        return out

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: Tensor, state: Tensor, written: Tensor | None, readable: Tensor,
                segments: Tensor | None = None) -> MemoryOutput:
        """Run the memory over one chunk.

        x: [B, T, d] attention input. state: [B, H, r, r] float32. written / readable: [B, T] bool, the tokens
        that write into / read from the memory; written is None when no token writes (a read-only forward needs
        no scan). segments: [B, T] long for SSW (-1 = not written), or None for one write per token.
        """
        batch, n_tok, _ = x.shape
        heads, rank = self.config.num_state_heads, self.config.rank
        q, k, v, beta, lam = self.project(x)
        if written is None:
            new_state = state
            reads = torch.einsum("bhij,bthj->bthi", state, q.to(state.dtype))
            beta_mean = None
        elif segments is None:
            keep, erase, write = self.coefficients(beta, lam)
            reads, new_state = scan(*_flat_heads(state.dtype, q, k, v, keep, erase, write),
                                    written.repeat_interleave(heads, dim=0), state.flatten(0, 1))
            reads = reads.unflatten(0, (batch, heads)).transpose(1, 2)        # [B, T, H, r]
            beta_mean = _masked_mean(beta, written)
        else:
            new_state, beta_mean = self._segment_writes(x, state, segments)
            reads = torch.einsum("bhij,bthj->bthi", state, q.to(state.dtype))   # every token reads S_0
        reads = reads * readable[:, :, None, None]
        corrections = self.corrections(reads.flatten(2).to(x.dtype))
        return MemoryOutput(corrections, new_state.view(batch, heads, rank, rank), beta_mean)

    def _segment_writes(self, x: Tensor, state: Tensor, segments: Tensor) -> tuple[Tensor, Tensor]:
        """SSW: one write per segment (message or sentence), from the mean of its tokens, in id order."""
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
        q, k, v, beta, lam = self.project(means)
        keep, erase, write = self.coefficients(beta, lam)
        _, new_state = scan(*_flat_heads(state.dtype, q, k, v, keep, erase, write),
                            present.repeat_interleave(heads, dim=0), state.flatten(0, 1))
        return new_state, _masked_mean(beta, present)


def _flat_heads(dtype: torch.dtype, *tensors: Tensor) -> list[Tensor]:
    """[B, T, H, r] → [B·H, T, r] in the state's dtype, the layout the scan takes."""
    return [t.transpose(1, 2).flatten(0, 1).to(dtype) for t in tensors]


def _masked_mean(beta: Tensor, mask: Tensor) -> Tensor:
    """Mean β per row over the masked tokens, without a host sync."""
    per_token = beta.float().mean(dim=(-1, -2))
    total = (per_token * mask).sum(-1)
    return total / mask.sum(-1).clamp(min=1)
