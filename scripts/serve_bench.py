"""Throughput of `deltamem-chat serve` with many clients at once against one client at a time, and the latency per
token the server adds over the engine in this process, on the offline demo model.

    python scripts/serve_bench.py --clients 16 --turns 4 --cross-batch on

Each client holds its own session and says the user turns of one generated demo chat; replies are greedy, so the
concurrent run must answer exactly what the one-at-a-time run answered (the script checks it). `--cross-batch`
is the server's option: on, the decode steps of the sessions decoding at once share one forward.

The latency the server adds is measured on one client saying one conversation, `--repeats` times over: each time
on an engine in this process and through the server on loopback, one after the other, so the machine's noise falls
on both (the order alternates). The replies are the same, so their gaps between streamed tokens pair up, token by
token; the figure is the median of (gap through the server) less (the same gap in process) over all the pairs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

from deltamem.demo.data import conversation
from deltamem.runtime.contract import LaneDone, TokenEvent
from deltamem.runtime.engine import ABEngine
from deltamem_chat.aliases import resolve_models
from deltamem_chat.server.app import create_app
from deltamem_chat.server.background import running
from deltamem_chat.server.limits import ServerLimits
from deltamem_chat.server.sessions import SessionStore


def user_turns(client: int, turns: int) -> list[str]:
    return [t.content for t in conversation(client).turns if t.role == "user"][:turns]


def converse(url: str, session: str, texts: list[str], max_tokens: int) -> tuple[list[str], int, list[float]]:
    """One client's conversation, streamed: its replies, tokens and the gaps between text chunks."""
    replies, tokens, gaps = [], 0, []
    with httpx.Client(base_url=url, headers={"X-Session-Id": session}, timeout=600) as http:
        for text in texts:
            body = {"model": "delta", "max_tokens": max_tokens, "stream": True,
                    "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": text}]}
            pieces, last = [], None
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    event = json.loads(line[6:])
                    if event.get("usage"):
                        tokens += event["usage"]["completion_tokens"]
                    for choice in event["choices"]:
                        if choice["delta"].get("content"):
                            now = time.perf_counter()
                            if last is not None:
                                gaps.append(now - last)
                            last = now
                            pieces.append(choice["delta"]["content"])
            replies.append("".join(pieces))
    return replies, tokens, gaps


def local_gaps(loaded, policy, texts: list[str], max_tokens: int) -> tuple[list[str], list[float]]:
    """The same conversation on an engine in this process: its replies and the gaps between tokens."""
    from deltamem.runtime.contract import GenerationSettings

    engine = ABEngine(loaded.model, loaded.tokenizer, policy=policy)
    replies, gaps = [], []
    for text in texts:
        last = None
        for event in engine.turn(text, GenerationSettings(max_new_tokens=max_tokens), lanes=["delta"]):
            if isinstance(event, TokenEvent) and event.text:
                now = time.perf_counter()
                if last is not None:
                    gaps.append(now - last)
                last = now
            elif isinstance(event, LaneDone):
                replies.append(event.text)
    return replies, gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--cross-batch", choices=("on", "off"), default="on")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved runs of the latency measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); on a few "
                        "shared cores, 1 keeps the threads from spinning against other work")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from deltamem.runtime.loading import load

    models = resolve_models("demo", None)
    loaded = load(models.adapter, models.base, names=models.names, device="cpu")
    policy = models.context
    conversations = {f"c{n}": user_turns(n, args.turns) for n in range(args.clients)}
    with tempfile.TemporaryDirectory() as folder:
        store = SessionStore(loaded, Path(folder), ServerLimits(live_sessions=args.clients), policy,
                             cross_batch=args.cross_batch == "on")
        with running(create_app(store)) as url:
            converse(url, "warm-up", conversations["c0"][:1], args.max_tokens)
            start = time.perf_counter()
            one_by_one = {sid: converse(url, f"seq-{sid}", texts, args.max_tokens)
                          for sid, texts in conversations.items()}
            sequential = time.perf_counter() - start
            together: dict[str, tuple[list[str], int, list[float]]] = {}
            threads = [threading.Thread(target=lambda s=sid, t=texts: together.__setitem__(
                s, converse(url, f"par-{s}", t, args.max_tokens))) for sid, texts in conversations.items()]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            concurrent = time.perf_counter() - start
            joined = store.decoder.joined_steps if store.decoder is not None else 0
            local: list[float] = []
            served: list[float] = []
            added: list[float] = []
            alike = True
            for repeat in range(args.repeats):
                if repeat % 2 == 0:
                    local_replies, here = local_gaps(loaded, policy, conversations["c0"], args.max_tokens)
                served_replies, _, there = converse(url, f"latency-{repeat}", conversations["c0"], args.max_tokens)
                if repeat % 2 == 1:
                    local_replies, here = local_gaps(loaded, policy, conversations["c0"], args.max_tokens)
                alike = alike and local_replies == served_replies == one_by_one["c0"][0] and len(here) == len(there)
                local, served = local + here, served + there
                added += [b - a for a, b in zip(here, there)]
    same = all(one_by_one[sid][0] == together[sid][0] for sid in conversations)
    tokens = sum(result[1] for result in one_by_one.values())
    print(f"{args.clients} clients x {args.turns} turns, {tokens} reply tokens, demo model, window {policy}, "
          f"cross-batch {args.cross_batch}")
    print(f"one client at a time: {sequential:6.2f} s  {tokens / sequential:7.1f} tokens/s")
    print(f"all clients at once:  {concurrent:6.2f} s  {tokens / concurrent:7.1f} tokens/s "
          f"({sequential / concurrent:.2f}x, {joined} decode steps shared by sessions); replies identical: {same}")
    print(f"the server adds {statistics.median(added) * 1e3:.2f} ms per streamed token (median of {len(added)} "
          f"paired gaps, {args.repeats} interleaved repeats; in process {statistics.median(local) * 1e3:.2f} ms, "
          f"through the server {statistics.median(served) * 1e3:.2f} ms); replies identical: {alike}")


if __name__ == "__main__":
    main()
