"""Which tokens of a forward are real: token validity from whatever mask the caller or transformers gives.

The official code tests a 4D mask for `== 0`, which is right for eager's additive float mask and exactly wrong for
SDPA's boolean one (True = attend). We prefer the caller's 2D padding mask and read 4D masks by their dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_validity(mask: Tensor | None, batch: int, n_tok: int, device: torch.device) -> Tensor:
    """[B, T] bool: True where the token at that position is real (not padding).

    Accepts None (all valid), a 2D padding mask [B, ≥T] (non-zero = real), a 4D boolean mask (True = attend) or a
    4D additive float mask (0 = attend); for 4D masks a token is real when it may attend to itself.
    """
    if mask is None:
        return torch.ones(batch, n_tok, dtype=torch.bool, device=device)
    if mask.dim() == 2:
        return mask[:, -n_tok:].to(device) != 0
    if mask.dim() == 4:
        square = mask[:, 0, -n_tok:, -n_tok:]
        diagonal = torch.diagonal(square, dim1=-2, dim2=-1)
        valid = diagonal if diagonal.dtype == torch.bool else diagonal == 0
        return valid.expand(batch, n_tok).to(device)
    raise ValueError(f"attention mask of shape {tuple(mask.shape)}: expected a 2D or 4D mask")
