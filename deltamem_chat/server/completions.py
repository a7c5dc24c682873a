"""A chat completion on an engine: which messages are new, the turn itself, and OpenAI's response shapes.

A client may send the whole conversation or only its new messages: where the messages sent begin with everything
the session's lane holds, only what follows is added; otherwise every message sent is taken as new. Our own numbers
(memory written, re-read tokens, time to first token, the memory's diagnostics) travel under the `deltamem` key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from deltamem.rendering import common_prefix
from deltamem.runtime.contract import Event, GenerationSettings, LaneDone, TurnDone
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.long_inputs import PromptTooLong
from deltamem_chat.server.errors import ApiError

#: The key of our own fields in a response and its usage.
EXTENSION = "deltamem"


def new_messages(held: Sequence[dict[str, str]], sent: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The messages of `sent` the lane does not hold yet (the longest prefix it holds is dropped)."""
    held, sent = list(held), list(sent)
    return sent[len(held):] if held and common_prefix(held, sent) == len(held) else sent


def run_turn(engine: ABEngine, lane: str, messages: Sequence[dict[str, str]], settings: GenerationSettings,
             cancel: threading.Event | None = None) -> Iterator[Event]:
    """Append the new messages to the lane and stream its reply; refused prompts leave no message behind."""
    if not messages:
        raise ApiError(400, "the request adds no message to the session: send at least one new message",
                       param="messages")
    for message in messages:
        engine.add_message(message["role"], message["content"], [lane])
    try:
        yield from engine.respond(settings, lanes=[lane], cancel=cancel)
    except PromptTooLong as exc:
        del engine.lanes[lane].messages[-len(messages):]
        raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None


def usage(engine: ABEngine, lane: str, done: LaneDone, turn: TurnDone) -> dict[str, Any]:
    """OpenAI's token counts, and ours under `deltamem`."""
    state = engine.lanes[lane]
    closing = len(engine.renderer.closing(state.messages)) if state.processed else 0
    prompt = max(len(state.processed) - done.stats.tokens - closing, 0)
    ours = {**done.stats.to_dict(), "written_total": turn.written_total.get(lane, 0),
            "budget": engine.budget.status(turn.written_total.get(lane, 0)),
            "diagnostics": turn.diagnostics.get(lane, {})}
    return {"prompt_tokens": prompt, "completion_tokens": done.stats.tokens,
            "total_tokens": prompt + done.stats.tokens, EXTENSION: ours}


def finish_reason(done: LaneDone, settings: GenerationSettings) -> str:
    return "length" if done.stats.tokens >= settings.max_new_tokens or done.stats.cancelled else "stop"


def completion(request_id: str, lane: str, text: str, reason: str, used: dict[str, Any],
               session: str | None) -> dict[str, Any]:
    """A whole `chat.completion` object."""
    return {"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": lane,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason,
                         "logprobs": None}],
            "usage": used, EXTENSION: {"session": session}}


def chunk(request_id: str, lane: str, delta: dict[str, str], reason: str | None = None,
          used: dict[str, Any] | None = None) -> dict[str, Any]:
    """One `chat.completion.chunk` of a stream (the usage chunk has no choices)."""
    body: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": lane, "choices": [] if used is not None else
                            [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}]}
    if used is not None:
        body["usage"] = used
    return body
