"""Episodes to tensors, laid out so that one forward sees what the app sees.

The app writes every message into memory when it first reads it, with only the recent window as context, and asks
a question with the window plus the question in the prompt, writing the question and its answer as they are read.
One forward reproduces that: the whole episode, written token by token, under an attention mask that lets each
message (and the final question turn) attend only to the messages the app's window policy would have put in its
prompt. RoPE depends only on distances, so the scores match the app's rebuilt prompts; the one difference is that
the keys of older in-window messages were computed in their own windows rather than recomputed. The loss is on the
answer tokens (up to and including the end-of-turn token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from deltamem.context import ContextPolicy
from deltamem.rendering import ChatRenderer
from deltamem.train.episodes import Episode

IGNORE = -100


class TemplateError(ValueError):
    """The tokenizer's chat template does not render a conversation as its messages one after another."""


class Renderer:
    """Token ids of chat messages exactly as the app renders them, cached per message."""

    def __init__(self, tokenizer, cache_size: int = 200_000) -> None:
        self.tokenizer = tokenizer
        self.chat = ChatRenderer(tokenizer)       # the engine's renderer: training sees what the app sends
        self.cache_size = cache_size
        self._messages: dict[tuple[str, str], tuple[int, ...]] = {}
        self._turns: dict[tuple[str, str], tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def ids(self, messages: Sequence[dict[str, str]], generation_prompt: bool = False) -> list[int]:
        return self.chat.ids(messages, generation_prompt)

    def message(self, role: str, content: str) -> tuple[int, ...]:
        """One message on its own, as the engine measures it for the window."""
        key = (role, content)
        if key not in self._messages:
            if len(self._messages) >= self.cache_size:
                self._messages.clear()
            self._messages[key] = tuple(self.ids([{"role": role, "content": content}]))
        return self._messages[key]

    def turn(self, question: str, answer: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The question with the generation prompt, and the answer's tokens up to its end-of-turn token."""
        key = (question, answer)
        if key not in self._turns:
            if len(self._turns) >= self.cache_size:
                self._turns.clear()
            asked = [{"role": "user", "content": question}]
            prompt = self.ids(asked, generation_prompt=True)
            full = self.ids([*asked, {"role": "assistant", "content": answer}])
            if full[:len(prompt)] != prompt:
                raise TemplateError("the chat template renders an answered question differently from the prompt "
                                    "it was asked with, so the answer tokens cannot be located")
            reply = full[len(prompt):]
            eos = self.tokenizer.eos_token_id
            if eos in reply:
                reply = reply[:reply.index(eos) + 1]
            self._turns[key] = (tuple(prompt), tuple(reply))
        return self._turns[key]

    def check(self, episode: Episode) -> None:
        """Refuse a template under which the whole prompt is not the messages' renderings concatenated."""
        messages = [{"role": r, "content": c} for r, c in episode.messages]
        whole = self.ids([*messages, {"role": "user", "content": episode.question}], generation_prompt=True)
        pieces = [t for r, c in episode.messages for t in self.message(r, c)]
        if whole != pieces + list(self.turn(episode.question, episode.answer)[0]):
            raise TemplateError("this chat template does not render a conversation as its messages one after "
                                "another (it adds text that depends on the whole conversation), so the window "
                                "cannot be emulated by masking; use a ChatML-style template")


@dataclass(frozen=True)
class Encoded:
    """One episode as tokens: which segment (message) each token belongs to and what each segment may see."""

    ids: tuple[int, ...]
    segments: tuple[int, ...]                 # history messages 0..M-1, the question turn M
    sees: tuple[tuple[int, ...], ...] | None  # per segment, earlier segments in its window (None: all of them)
    answer: int                               # the last `answer` tokens are the answer


def encode(renderer: Renderer, episode: Episode, window: int | None) -> Encoded:
    """Tokens, segments and per-segment windows (the engine's policy; None = whole history in context)."""
    pieces = [renderer.message(r, c) for r, c in episode.messages]
    prompt, reply = renderer.turn(episode.question, episode.answer)
    ids = [t for piece in pieces for t in piece] + list(prompt) + list(reply)
    segments = [i for i, piece in enumerate(pieces) for _ in piece] + [len(pieces)] * (len(prompt) + len(reply))
    sees = None
    if window is not None:
        policy = ContextPolicy(window)
        lengths = [len(p) for p in pieces] + [len(renderer.message("user", episode.question))]
        roles = [r for r, _ in episode.messages] + ["user"]
        sees = tuple(tuple(policy.select(lengths[:i + 1], roles[:i + 1])[:-1]) for i in range(len(lengths)))
    return Encoded(tuple(ids), tuple(segments), sees, len(reply))


@dataclass
class Batch:
    """Model inputs (left-padded) and the answer labels of the last `keep` positions."""

    input_ids: Tensor
    attention_mask: Tensor       # [B, L] padding mask, or [B, 1, L, L] additive mask when a window applies
    position_ids: Tensor
    labels: Tensor               # [B, keep]
    keep: int

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                     self.labels.to(device), self.keep)


def collate(encoded: Sequence[Encoded], pad_id: int, dtype: torch.dtype = torch.float32) -> Batch:
    """Left-pad a list of encoded episodes into one batch."""
    length = max(len(e.ids) for e in encoded)
    keep = max(e.answer for e in encoded) + 1
    batch = len(encoded)
    ids = torch.full((batch, length), pad_id, dtype=torch.long)
    positions = torch.zeros(batch, length, dtype=torch.long)
    labels = torch.full((batch, keep), IGNORE, dtype=torch.long)
    windowed = any(e.sees is not None for e in encoded)
    if windowed:
        allowed = torch.zeros(batch, length, length, dtype=torch.bool)
    else:
        padding = torch.zeros(batch, length, dtype=torch.long)
    for row, e in enumerate(encoded):
        n = len(e.ids)
        start = length - n
        tokens = torch.tensor(e.ids)
        ids[row, start:] = tokens
        positions[row, start:] = torch.arange(n)
        targets = tokens[n - e.answer:]
        labels[row, keep - 1 - e.answer:keep - 1] = targets
        if not windowed:
            padding[row, start:] = 1
            continue
        segments = torch.tensor(e.segments)
        n_seg = int(segments[-1]) + 1
        visible = torch.ones(n_seg, n_seg, dtype=torch.bool)
        if e.sees is not None:
            visible = torch.eye(n_seg, dtype=torch.bool)
            for segment, seen in enumerate(e.sees):
                visible[segment, list(seen)] = True
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        allowed[row, start:, start:] = visible[segments][:, segments] & causal
    if windowed:
        mask = torch.zeros(batch, 1, length, length, dtype=dtype)
        mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)
    else:
        mask = padding
    return Batch(ids, mask, positions, labels, keep)


__all__ = ["IGNORE", "Batch", "Encoded", "Renderer", "TemplateError", "collate", "encode"]
