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

import math

import torch
from torch import Tensor

#: Below this many tokens the one-token step in a loop is cheaper than the chunked form's bookkeeping.
CHUNKED_MIN_TOKENS = 32


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


def step(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
         written: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One token for every sequence at once (decode); inputs as above with T = 1 squeezed away: [N, r]."""
    read = torch.einsum("nij,nj->ni", state, q)
    sk = torch.einsum("nij,nj->ni", state, k)
    coeff = erase * sk - write * v                      # [N, r]: s_i ← κ_i s_i − (ε_i s_i·k − ω_i v_i) k
    updated = keep.unsqueeze(-1) * state - coeff.unsqueeze(-1) * k.unsqueeze(-2)
    return read, torch.where(written[:, None, None], updated, state)


def stepwise_scan(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
                  written: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """`step` applied token after token: the form a decode loop gives, used for short chunks."""
    reads = []
    for t in range(q.shape[1]):
        read, state = step(q[:, t], k[:, t], v[:, t], keep[:, t], erase[:, t], write[:, t], written[:, t], state)
        reads.append(read)
    return torch.stack(reads, dim=1), state


def chunked_scan(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
                 written: Tensor, state: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """Prefill in O(C + T/C) sequential steps instead of O(T).

    The sequence is cut into chunks of C tokens that are all processed at once. Within a chunk, every row's
    state is affine in the chunk's start state: s_i(t) = s_i(start) · P_i(<t) + L_i(<t), where P_i is the
    product of the per-token transitions κ_i I − ε_i k kᵀ and L_i the state reached from zero. One pass over the
    C positions (all chunks in parallel) records P_i(<t)·q_t and L_i(<t)·q_t; one pass over the chunks chains
    the start states; the reads then follow with one batched product.
    """
    n_seq, n_tok, rank = q.shape
    if chunk is None:
        chunk = max(8, int(math.sqrt(n_tok)))
    n_chunks = -(-n_tok // chunk)
    pad = n_chunks * chunk - n_tok
    if pad:
        def padded(x: Tensor) -> Tensor:
            return torch.nn.functional.pad(x, (0, 0, 0, pad))
        q, k, v, keep, erase, write = map(padded, (q, k, v, keep, erase, write))
        written = torch.nn.functional.pad(written, (0, pad), value=False)

    def chunks(x: Tensor) -> Tensor:
        return x.reshape(n_seq, n_chunks, chunk, *x.shape[2:])

    q, k, v, keep, erase, write, written = map(chunks, (q, k, v, keep, erase, write, written))
    # A token that is not written is the identity transition with no input.
    keep = torch.where(written.unsqueeze(-1), keep, torch.ones_like(keep))
    erase = erase * written.unsqueeze(-1)
    write = write * written.unsqueeze(-1)

    eye = torch.eye(rank, dtype=q.dtype, device=q.device)
    local = q.new_zeros(n_seq, n_chunks, rank, rank)                          # L: rows i, columns j
    trans = eye.expand(n_seq, n_chunks, rank, rank, rank).clone()             # P: [.., row i, r, r]
    local_reads = q.new_empty(n_seq, n_chunks, chunk, rank)
    trans_q = q.new_empty(n_seq, n_chunks, chunk, rank, rank)
    for c in range(chunk):
        qc, kc = q[:, :, c], k[:, :, c]                                       # [N, nc, r]
        kap, eps, omg, vc = keep[:, :, c], erase[:, :, c], write[:, :, c], v[:, :, c]
        local_reads[:, :, c] = torch.einsum("ncij,ncj->nci", local, qc)
        trans_q[:, :, c] = torch.einsum("ncijk,nck->ncij", trans, qc)
        lk = torch.einsum("ncij,ncj->nci", local, kc)
        local = kap.unsqueeze(-1) * local - (eps * lk - omg * vc).unsqueeze(-1) * kc.unsqueeze(-2)
        pk = torch.einsum("ncijk,nck->ncij", trans, kc)
        trans = kap[..., None, None] * trans - (eps.unsqueeze(-1) * pk).unsqueeze(-1) * kc[:, :, None, None, :]

    starts = []
    s = state
    for c in range(n_chunks):
        starts.append(s)
        s = torch.einsum("nij,nijk->nik", s, trans[:, c]) + local[:, c]
    start = torch.stack(starts, dim=1)                                          # [N, nc, r, r]
    reads = torch.einsum("ncij,nctij->ncti", start, trans_q) + local_reads
    return reads.reshape(n_seq, n_chunks * chunk, rank)[:, :n_tok], s


def scan(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, erase: Tensor, write: Tensor,
         written: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """Pick the fastest exact form for the length: a step loop for short inputs, chunked for long ones."""
    if q.shape[1] < CHUNKED_MIN_TOKENS:
        return stepwise_scan(q, k, v, keep, erase, write, written, state)
    return chunked_scan(q, k, v, keep, erase, write, written, state)
