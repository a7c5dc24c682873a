"""Key-to-echo latency of the chat's message box while both demo lanes stream at full speed.

    python scripts/tui_latency.py [--keys 60] [--tokens 400]

Opens the chat on the offline demo model in a headless terminal (120x40), sends a message whose replies decode
`--tokens` tokens in both lanes (EOS ignored, so they stream the whole time), and while they stream types one key
every 50 ms into the box, timing each from the key's arrival to the box holding it. Prints the median, the 95th
percentile and the worst, in milliseconds, and how many tokens streamed meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from deltamem.runtime.contract import DELTA, GenerationSettings, SessionIdentity
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import load
from deltamem_chat.aliases import resolve_models
from deltamem_chat.tui import ChatScreen, DeltaMemApp


async def measure(app: DeltaMemApp, chat: ChatScreen, keys: int) -> list[float]:
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press(*"tell me a story", "enter")
        while not chat.panes[DELTA].last_reply:  # streaming has started
            await asyncio.sleep(0.01)
        box = chat.chat_input
        for index in range(keys):
            if not chat.busy:
                break
            before = len(box.text)
            started = time.perf_counter()
            app.post_message(_key("abcdefghij"[index % 10]))
            while len(box.text) == before:
                await asyncio.sleep(0.0005)
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
        chat.action_cancel()
        while chat.busy:
            await asyncio.sleep(0.01)
    return latencies


def _key(character: str):  # noqa: ANN202 - a Textual event
    from textual import events

    return events.Key(character, character)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=60, help="keys to type while the lanes stream")
    parser.add_argument("--tokens", type=int, default=400, help="tokens each lane decodes")
    args = parser.parse_args()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    models = resolve_models("demo", None)
    loaded = load(models.adapter, models.base, device="cpu", names=models.names)
    engine = ABEngine(loaded.model, loaded.tokenizer, policy=models.context or models.alias.context)  # type: ignore[union-attr]
    settings = GenerationSettings(max_new_tokens=args.tokens, stop_at_eos=False)
    chat = ChatScreen(engine, title_info={"models": "demo"}, identity=SessionIdentity(loaded.base, loaded.adapter),
                      settings=settings)
    app = DeltaMemApp(chat)
    latencies = asyncio.run(measure(app, chat, args.keys))
    streamed = sum(stats.tokens for stats in engine.lanes[DELTA].turns)
    ordered = sorted(latencies)
    print(f"{len(latencies)} keys while both lanes streamed ({streamed} tokens per lane): key-to-echo median "
          f"{statistics.median(ordered):.1f} ms, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms, "
          f"worst {ordered[-1]:.1f} ms")


if __name__ == "__main__":
    main()
