"""The three forms of the recurrence agree: naive reference, one-token step loop, chunked prefill."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deltamem.scan import chunked_scan, naive_scan, scan, stepwise_scan


def _inputs(n_seq: int, n_tok: int, rank: int, seed: int, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(n_seq, n_tok, rank, generator=g, dtype=dtype), dim=-1)
    k = F.normalize(torch.randn(n_seq, n_tok, rank, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(n_seq, n_tok, rank, generator=g, dtype=dtype)
    beta = torch.rand(n_seq, n_tok, rank, generator=g, dtype=dtype)
    lam = torch.rand(n_seq, n_tok, rank, generator=g, dtype=dtype)
    written = torch.rand(n_seq, n_tok, generator=g) > 0.25
    state = torch.randn(n_seq, rank, rank, generator=g, dtype=dtype)
    return q, k, v, lam, lam * beta, beta, written, state


@pytest.mark.parametrize("n_tok", [1, 7, 64, 257])
@pytest.mark.parametrize("chunk", [None, 5, 16])
def test_three_forms_agree_in_float64(n_tok: int, chunk: int | None) -> None:
    args = _inputs(3, n_tok, 8, seed=n_tok)
    ref_reads, ref_state = naive_scan(*args)
    for reads, state in (stepwise_scan(*args), chunked_scan(*args, chunk=chunk), scan(*args)):
        assert (reads - ref_reads).abs().max() < 1e-10
        assert (state - ref_state).abs().max() < 1e-10


def test_reads_come_before_the_write() -> None:
    q, k, v, keep, erase, write, _, _ = _inputs(1, 1, 4, seed=0)
    written = torch.ones(1, 1, dtype=torch.bool)
    reads, state = naive_scan(q, k, v, keep, erase, write, written, torch.zeros(1, 4, 4, dtype=torch.float64))
    assert torch.count_nonzero(reads) == 0, "a token must not read its own write"
    assert torch.count_nonzero(state) > 0


def test_unwritten_tokens_leave_the_state_alone() -> None:
    args = list(_inputs(2, 40, 8, seed=1))
    args[6] = torch.zeros(2, 40, dtype=torch.bool)
    for form in (naive_scan, stepwise_scan, chunked_scan):
        _, state = form(*args)
        assert torch.equal(state, args[7])


def test_chunked_matches_naive_in_float32_at_length() -> None:
    args = _inputs(2, 2048, 8, seed=2, dtype=torch.float32)
    ref_reads, ref_state = stepwise_scan(*args)
    reads, state = chunked_scan(*args)
    assert torch.allclose(reads, ref_reads, atol=1e-4)
    assert torch.allclose(state, ref_state, atol=1e-4)


def test_chunked_agrees_across_passes_and_with_a_keep_of_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v, keep, erase, write, written, state = _inputs(2, 300, 8, seed=3)
    keep[:, ::7] = 0.0                      # a full reset: exact in the cumulative-product spans
    args = (q, k, v, keep, erase, write, written, state)
    ref_reads, ref_state = naive_scan(*args)
    monkeypatch.setattr("deltamem.scan.PASS_ELEMENTS", 2 * 8 * 16 * 16 * 3)     # three chunks of 16 per pass
    reads, final = chunked_scan(*args, chunk=16)
    assert (reads - ref_reads).abs().max() < 1e-10
    assert (final - ref_state).abs().max() < 1e-10


def test_chunked_gradients_equal_the_stepwise_ones() -> None:
    args = list(_inputs(2, 70, 8, seed=4))
    wrt = [args[i].requires_grad_() for i in (0, 1, 2, 3, 4, 5, 7)]      # all but the written mask
    grads = []
    for form in (stepwise_scan, chunked_scan):
        reads, state = form(*args)
        grads.append(torch.autograd.grad(reads.pow(2).sum() + state.pow(2).sum(), wrt))
    for ref, got in zip(*grads):
        assert (ref - got).abs().max() < 1e-10
