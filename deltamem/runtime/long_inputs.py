"""Messages longer than the window: read whole into memory in bounded chunks, seen by the prompts as their cut tail.

Under a window of N tokens a message that alone exceeds what the window can give it would make the frozen lane read
it all (the comparison is void) and the cache grow without bound. Instead every lane's prompt holds only the tail
that fits, after a marker that says the message was cut (`CUT_MARKER`), and each δ-mem lane first reads the whole
message into its memory in chunks (`read_into_memory`), each attending to at most the window's worth of tokens before
it, so device memory stays bounded whatever the length and every token is written once.
Nothing here ever feeds more positions than the model has: `check_fits` refuses a prompt that would, in one sentence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from deltamem.compat import cache_argument
from deltamem.kv_cache import new_cache
from deltamem.model import DeltaMemModel
from deltamem.rendering import ChatRenderer
from deltamem.runtime import prefill
from deltamem.runtime.contract import ReadProgress
from deltamem.runtime.loading import free_memory

#: Put on its own line before the tail of a message cut to fit the window: short, so small windows keep text.
CUT_MARKER = "[…]\n"

#: A cut message keeps at least this many tokens, however small what the window leaves.
MIN_TAIL = 16


class PromptTooLong(ValueError):
    """A prompt the model or the device cannot hold; the message says how long it is and what fits."""


@dataclass(frozen=True)
class LongRead:
    """How much of a long message a lane read into memory."""

    done: int
    total: int


def cut_message(renderer: ChatRenderer, message: dict[str, str], allowed: int) -> dict[str, str]:
    """The message with only the tail of its content that fits `allowed` tokens, after `CUT_MARKER`."""
    allowed = max(allowed, MIN_TAIL)
    content = renderer.encode(message["content"])
    frame = renderer.length({**message, "content": CUT_MARKER})
    keep = max(1, allowed - frame)
    while True:
        tail = renderer.tokenizer.decode(content[-keep:], skip_special_tokens=True)
        cut = {**message, "content": CUT_MARKER + tail}
        excess = renderer.length(cut) - allowed
        if excess <= 0 or keep == 1:
            return cut
        keep = max(1, keep - excess)


def read_into_memory(model: DeltaMemModel, ids: list[int], span: int, *, state: dict[str, torch.Tensor],
                     written: int, allows_writes: Callable[[int], bool], cancel: threading.Event | None,
                     lane: str) -> Iterator[ReadProgress | LongRead]:
    """Write `ids` into one lane's memory (`state`, `written` so far) in chunks, each attending to at most `span`
    tokens; yields progress after each chunk and ends with the `LongRead`. The caller reloads the model's rows.

    Chunks go through one cache while it holds at most `span` tokens, so a text that fits is read exactly as in one
    forward. Past that, each chunk starts a fresh cache after the `span` tokens before it, re-read without writing
    as context: positions never pass `span`, memory stays bounded. `allows_writes(written)` is the write budget's
    stop rule; a cancel stops between chunks, keeping what was written.
    """
    device, argument = model.device, cache_argument(model)
    if state:
        model.set_state(state)
    else:
        model.reset()
    model.set_tokens_written([written])
    chunk = max(1, min(prefill.PREFILL_CHUNK, span // 2))
    cache, held, done = None, 0, 0
    with torch.no_grad():
        for start in range(0, len(ids), chunk):
            if cancel is not None and cancel.is_set():
                break
            piece = ids[start:start + chunk]
            if cache is None or held + len(piece) > span:
                cache, held = new_cache(model), 0
                context = ids[max(0, start - (span - len(piece))):start]
                if context:
                    with model.rows(memory=[True], writes=[False]):
                        prefill.chunked_forward(model, input_ids=torch.tensor([context], device=device),
                                                cache_kw=argument, cache=cache)
                    held = len(context)
            positions = torch.arange(held, held + len(piece), device=device).unsqueeze(0)
            with model.rows(memory=[True], writes=[allows_writes(model.tokens_written[0])]):
                model(input_ids=torch.tensor([piece], device=device), position_ids=positions, use_cache=True,
                      **{argument: cache})
            held += len(piece)
            done += len(piece)
            yield ReadProgress(lane, done, len(ids))
    yield LongRead(done, len(ids))


def check_fits(model: DeltaMemModel, prompt: int, new_tokens: int, rows: int) -> None:
    """Refuse, before any forward, a prompt (plus the reply it may grow by) beyond the model's positions or the
    memory its KV cache would take."""
    config = model.backbone.config
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and prompt + new_tokens > positions:
        raise PromptTooLong(f"the prompt is {prompt:,} tokens and the reply may add {new_tokens:,}, beyond the "
                            f"model's {positions:,} positions: use a window (--context window:N with N at most "
                            f"{max(1, positions - new_tokens):,}) or send a shorter message")
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.tensor([], dtype=model.backbone.dtype).element_size()
    needed = 2 * config.num_hidden_layers * heads * head_dim * element * rows * (prompt + new_tokens)
    free = free_memory(model.device)
    if free is not None and needed > free:
        raise PromptTooLong(f"the prompt is {prompt:,} tokens: its cache would take {needed / 2**30:.1f} GiB, more "
                            f"than the {free / 2**30:.1f} GiB free: use a smaller window (--context window:N)")

