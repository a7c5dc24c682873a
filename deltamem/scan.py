"""The δ-mem recurrence in three forms that agree: a naive reference, a one-token step, and a chunked prefill.

Each state row i is a vector s_i ∈ R^r that takes, for every written token t,

    s_i ← κ_i s_i − ε_i (s_i · k_t) k_t + ω_i v_i k_t,

and the token's read is taken before its write: o_i = s_i · q_t. The per-row scalars (keep κ, erase ε, write ω)
come from the gates (see `deltamem.memory`); a token that is not written leaves the state untouched. Every
tensor here is float32 (or float64 in tests): the state is carried in full precision whatever the model dtype.

Shapes: q, k, v, keep, erase, write are [N, T, r] (N = batch × state heads), `written` is [N, T] bool, the state
is [N, r, r] with rows indexing value coordinates and columns key coordinates. Each form returns
(reads [N, T, r], final state [N, r, r]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Below this many tokens the one-token step in a loop is cheaper than the chunked form's bookkeeping.
CHUNKED_MIN_TOKENS = 8

#: Tokens per chunk: the intra-chunk work grows with C, the sequential chain of chunks with T / C.
CHUNK = 16

#: Bound on the elements of the chunked form's largest transients (8 MiB each in float32).
PASS_ELEMENTS = 1 << 21


def naive_scan(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
               written: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """The test oracle: the matrix form S ← diag(κ)S − diag(ε)(S k)kᵀ + diag(ω) v kᵀ, one sequence at a time."""
    n_seq, n_tok, _ = q.shape
    reads = torch.zeros_like(q)
    final = state.clone()
    for n in range(n_seq):
        s = final[n]
        for t in range(n_tok):
            reads[n, t] = s @ q[n, t]
            if not bool(written[n, t]):
                continue
            kt = k[n, t]
            s = (torch.diag(keep[n, t]) @ s
                 - torch.diag(erase[n, t]) @ torch.outer(s @ kt, kt)
                 + torch.diag(write[n, t]) @ torch.outer(v[n, t], kt))
        final[n] = s
    return reads, final


def step(qk: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor, written: Tensor,
         state: Tensor) -> tuple[Tensor, Tensor]:
    """One token for every sequence at once: q and k side by side as qk [..., r, 2], the rest as above with T = 1
    squeezed away ([..., r]), state [..., r, r], written [...]. Returns (S q, the new state).

    Any leading dimensions work, so a caller need not reshape. S q and S k come from one product.
    """
    product = torch.matmul(state, qk)
    return product[..., 0], update(state, product[..., 1], qk[..., 1], v, keep, erase, write, written)


def update(state: Tensor, sk: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
           written: Tensor) -> Tensor:
    """The write of one token given S·k: s_i ← κ_i s_i − (ε_i s_i·k − ω_i v_i) k, where `written` [...] is True.

    Leading dimensions as in `step`; decode calls it once for all layers, with a layer dimension in front.
    """
    minus_coeff = torch.addcmul(write * v, erase, sk, value=-1)
    updated = torch.addcmul(keep.unsqueeze(-1) * state, minus_coeff.unsqueeze(-1), k.unsqueeze(-2))
    return torch.where(written[..., None, None], updated, state)


def coupled_update(state: Tensor, sk: Tensor, k: Tensor, v: Tensor, beta: Tensor) -> Tensor:
    """`update` for the released mode (λ = 1 − β, standard), in two fused products instead of four and a select.

    s_i ← (1 − β_i) s_i − β_i (s_i·k − v_i) k  is  s_i − β_i (s_i + (s_i·k − v_i) k). A caller keeps the state of
    rows that write nothing by selecting it (`torch.where`): a zero β would multiply whatever NaN the row holds.
    """
    inner = torch.addcmul(state, (sk - v).unsqueeze(-1), k.unsqueeze(-2))
    return torch.addcmul(state, beta.unsqueeze(-1), inner, value=-1)


def stepwise_scan(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
                  written: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """`step` applied token after token: the form a decode loop gives, used for short chunks."""
    reads = []
    qk = torch.stack([q, k], dim=-1)
    for t in range(q.shape[1]):
        read, state = step(qk[:, t], v[:, t], keep[:, t], erase[:, t], write[:, t], written[:, t], state)
        reads.append(read)
    return torch.stack(reads, dim=1), state


def chunked_scan(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
                 written: Tensor, state: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """Prefill with matrix products: the sequential part is one small affine map per chunk of C tokens.

    Tokens are taken in passes of whole chunks, so that the transient [N, chunks, r, C, C] tensors of a long
    prompt stay under `PASS_ELEMENTS` elements (a few MB) instead of growing with the prompt.
    """
    n_seq, n_tok, rank = q.shape
    chunk = min(chunk or CHUNK, n_tok)
    n_chunks = -(-n_tok // chunk)
    n_passes = -(-n_chunks * n_seq * rank * chunk * chunk // PASS_ELEMENTS)
    per_pass = -(-n_chunks // n_passes) * chunk
    reads = []
    for start in range(0, n_tok, per_pass):
        part = slice(start, start + per_pass)
        read, state = _chunked_pass(q[:, part], k[:, part], v[:, part], keep[:, part], erase[:, part],
                                    write[:, part], written[:, part], state, chunk)
        reads.append(read)
    return (reads[0] if len(reads) == 1 else torch.cat(reads, dim=1)), state


def _chunked_pass(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
                  written: Tensor, state: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """The UT-transform form of the recurrence (as in gated DeltaNet), with every state row its own "head".

    For one row s within a chunk, write the token update as s_t = κ_t s_{t−1} − u_t k_t with the scalar
    u_t = ε_t (s_{t−1}·k_t) − ω_t v_t. Unrolled from the chunk's start state s_0, the u of the chunk solve one unit
    lower-triangular system

        u_t + Σ_{τ<t} ε_t between(t, τ) (k_t·k_τ) u_τ = ε_t decay(t) (k_t·s_0) − ω_t v_t,

    where decay(t) is the product of κ over the chunk's tokens before t and between(t, τ) over those strictly
    between τ and t. Solving it for the right-hand sides [ε_t decay(t) k_t | −ω_t v_t] makes u affine in s_0; the
    reads s_{t−1}·q_t and the end state are then affine in s_0 too (matrix products), and the only sequential work
    left is chaining the chunks' r×r affine maps. Products of κ come from cumulative products, never a division,
    so a keep of exactly 0 is exact.
    """
    n_seq, n_tok, rank = q.shape
    n_chunks = -(-n_tok // chunk)
    pad = n_chunks * chunk - n_tok
    # A token that is not written is the identity: keep 1, nothing erased, nothing written.
    mask = written.unsqueeze(-1)
    keep = torch.where(mask, keep, 1.0)
    erase = torch.where(mask, erase, 0.0)           # selected, not multiplied: NaN in a skipped token stays there
    inject = torch.where(mask, write * v, 0.0)
    if pad:
        q, k, erase, inject = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, erase, inject))
        keep = F.pad(keep, (0, 0, 0, pad), value=1.0)
    q, k = (x.reshape(n_seq, n_chunks, chunk, rank) for x in (q, k))                    # [N, n, C, r]: all rows
    keep, erase, inject = (x.reshape(n_seq, n_chunks, chunk, rank).transpose(-1, -2)
                           for x in (keep, erase, inject))                                 # [N, n, row, C]

    keep_before = F.pad(keep[..., :-1], (1, 0), value=1.0)                              # κ_{t−1}, 1 at t = 0
    decay = keep_before.cumprod(-1)                                                     # κ before token t
    decay_end = decay[..., -1] * keep[..., -1]                                          # the whole chunk
    tail = F.pad(keep[..., 1:].flip(-1).cumprod(-1), (1, 0), value=1.0).flip(-1)        # κ after token τ
    apart = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril(-2)       # τ < t − 1
    between = torch.where(apart, keep_before.unsqueeze(-1), 1.0).cumprod(dim=-2)        # [N, n, row, C, C]

    kt = k.transpose(-1, -2)                                                            # [N, n, r, C]
    kk = (k @ kt).tril(-1).unsqueeze(2)                           # k_t·k_τ for τ < t, shared by the rows
    qk = (q @ kt).tril(-1).unsqueeze(2)
    system = between * kk * erase.unsqueeze(-1)
    # One right-hand side per coefficient of s_0 and one for the constant part, as rows: [N, n, row, r+1, C].
    rhs = torch.cat([(erase * decay).unsqueeze(-2) * kt.unsqueeze(2), -inject.unsqueeze(-2)], dim=-2)
    u = _solve_unit_lower(system, rhs).transpose(-1, -2)          # [N, n, row, C, r+1]: u_t = u_t[:r]·s_0 + u_t[r]
    del system, rhs
    seen = (between * qk) @ u                                     # what the chunk's earlier writes add to reads
    read_map = decay.unsqueeze(-1) * q.unsqueeze(2) - seen[..., :rank]                  # read_t = map_t·s_0 + off_t
    read_off = -seen[..., rank]
    written_out = (kt.unsqueeze(2) * tail.unsqueeze(-2)) @ u                            # [N, n, row, r, r+1]
    trans = torch.diag_embed(decay_end.unsqueeze(-1).expand(*decay_end.shape, rank)) - written_out[..., :rank]
    offset = -written_out[..., rank:]

    # Chain the chunks: s_end = trans · s_0 + offset for every row, one small product per chunk.
    trans = trans.transpose(0, 1).reshape(n_chunks, n_seq * rank, rank, rank).unbind(0)
    offset = offset.transpose(0, 1).reshape(n_chunks, n_seq * rank, rank, 1).unbind(0)
    s = state.reshape(n_seq * rank, rank, 1)
    starts = []
    for chunk_trans, chunk_offset in zip(trans, offset):
        starts.append(s)
        s = torch.baddbmm(chunk_offset, chunk_trans, s)
    start = torch.stack(starts, dim=1).view(n_seq, rank, n_chunks, rank).transpose(1, 2)  # [N, n, row, r]
    reads = (read_map @ start.unsqueeze(-1)).squeeze(-1) + read_off                       # [N, n, row, C]
    reads = reads.transpose(-1, -2).reshape(n_seq, n_chunks * chunk, rank)[:, :n_tok]
    return reads, s.view(n_seq, rank, rank)


def _solve_unit_lower(lower: Tensor, rhs: Tensor) -> Tensor:
    """Solve (I + L) x = b for strictly lower-triangular L [..., C, C] and right-hand sides as rows b [..., m, C].

    Forward substitution, one position of every system per step, with elementwise products over contiguous rows:
    the systems are many and tiny, and batched matmuls spend their time per system (torch.linalg.solve_triangular
    makes a LAPACK call, and a thread-pool round trip, per system: with another process on the cores, seconds per
    layer). In place when no gradient is recorded; out of place, a third slower, when autograd trains through it.
    """
    if torch.is_grad_enabled() and (lower.requires_grad or rhs.requires_grad):
        solved = [rhs[..., 0]]
        for t in range(1, lower.shape[-1]):
            solved.append(rhs[..., t] - (torch.stack(solved, dim=-1) * lower[..., None, t, :t]).sum(-1))
        return torch.stack(solved, dim=-1)
    x = rhs.clone()
    for t in range(1, lower.shape[-1]):
        x[..., t] -= (x[..., :t] * lower[..., None, t, :t]).sum(-1)
    return x


def scan(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
         written: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """Pick the fastest exact form for the length: a step loop for short inputs, chunked for long ones."""
    if q.shape[1] < CHUNKED_MIN_TOKENS:
        return stepwise_scan(q, k, v, keep, erase, write, written, state)
    return chunked_scan(q, k, v, keep, erase, write, written, state)
