"""Options shared by the commands that load a model (chat, replay, eval), and the one way they turn into a model.

Nothing here imports torch: every command's `--help` (and the commands that need no model) start at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from deltamem.context import ContextPolicy, PolicyError
from deltamem.retrieval import RetrievalError, RetrievalSettings
from deltamem.runtime.contract import ALL_LANES, LANE_NAMES, GenerationSettings, SessionIdentity, parse_lanes
from deltamem_chat.aliases import AliasError, Models, default_adapter, resolve_models
from deltamem_chat.text import error_line

if TYPE_CHECKING:
    from deltamem.runtime.loading import LoadedModel
    from deltamem.runtime.progress import Progress
    from deltamem_chat.remote.engine import RemoteEngine
    from deltamem_chat.scoring import ScoringProtocol

AdapterOpt = Annotated[str, typer.Option("--adapter", "-a", help="δ-mem adapter: an alias (see `deltamem-chat "
                                         "models`), a local folder or a hub id.")]
DefaultAdapterOpt = Annotated[str | None, typer.Option(
    "--adapter", "-a", show_default=False, help="δ-mem adapter: an alias (see `deltamem-chat models`), a local folder "
    "or a hub id (default: qwen3-4b when it is downloaded, else the offline demo).")]
BaseOpt = Annotated[str | None, typer.Option("--base", help="Base model: alias, folder or hub id (default: the "
                                             "adapter alias's base).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (bf16 on CUDA, float32 on CPU), bfloat16, float16 "
                                       "or float32.")]
QuantizeOpt = Annotated[str, typer.Option("--quantize", help="none, int8 or int4: the base model's weights quantized "
                                          "(torchao, weight-only) to run on a CPU in bfloat16, about 2x (int8) or "
                                          "3-4x (int4) less memory to read per token; δ-mem's own matrices are "
                                          "not quantized. Needs torchao (pip install 'deltamem-chat\\[cpu]').")]
AttnOpt = Annotated[str, typer.Option("--attn", help="auto (FlashAttention-2 if installed on CUDA, else SDPA), "
                                      "eager, sdpa or flash_attention_2.")]
PolicyOpt = Annotated[str | None, typer.Option("--context", "-c", help="Context policy: `full` (whole history "
                                               "in both prompts) or `window:N` (recent messages that fit N tokens; "
                                               "default: the transcript's or alias's suggestion, else window:1024).")]
LanesOpt = Annotated[str | None, typer.Option("--lanes", help="The lanes side by side, one to four of "
                                              f"{', '.join(ALL_LANES)} (rag: the messages the window dropped, "
                                              "retrieved back by BM25; default: frozen,delta).")]
BatchingOpt = Annotated[str, typer.Option("--batching", help="batched (the lanes as rows of one forward) or "
                                          "sequential (one lane after the other; the same tokens).")]
#: The retrieval lanes' settings unless `--retrieval` or the model's alias says otherwise.
RETRIEVAL_DEFAULT = "k=3,tokens=auto"
RetrievalOpt = Annotated[str | None, typer.Option("--retrieval", help="The retrieval lanes' top k messages and token "
                                                  "budget, e.g. k=3,tokens=256 (tokens=auto: a quarter of the "
                                                  f"window; default {RETRIEVAL_DEFAULT}, or the alias's own: the "
                                                  "demo's is k=3,tokens=24).")]

MaxTokensOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Longest reply per lane and turn.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy; above 0 samples.")]
TopPOpt = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (sampling only).")]
TopKOpt = Annotated[int, typer.Option("--top-k", min=0, help="Keep the k likeliest tokens (0 = all; sampling only).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Sampling seed (same seed, same text).")]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="Scoring: ours (hit and token F1, for our own "
                                          "transcripts), locomo (the official LoCoMo score and question wording) or "
                                          "mab (MemoryAgentBench's metrics).")]
DatesOpt = Annotated[str, typer.Option("--dates", help="on: each session's date (`DATE: …`) before its first "
                                       "message and a probe's date before its question, where the transcript has "
                                       "them; off: the texts alone.")]

ServerOpt = Annotated[str | None, typer.Option("--server", help="Run on a `deltamem-chat serve` server at this URL "
                                              "(a session of its own) instead of loading a model here.")]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="DELTAMEM_API_KEY", help="The server's API key "
                                               "(with --server).")]

DEFAULT_CONTEXT = "window:1024"

err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one sentence to stderr and return the exit to raise."""
    err.print(error_line(message), soft_wrap=True)
    return typer.Exit(code)


def policy_for(text: str | None, *fallbacks: ContextPolicy | str | None) -> ContextPolicy:
    """The first policy given among the option and its fallbacks, else the default window."""
    for candidate in (text, *fallbacks, DEFAULT_CONTEXT):
        if isinstance(candidate, ContextPolicy):
            return candidate
        if candidate:
            try:
                return ContextPolicy.parse(candidate)
            except PolicyError as exc:
                raise fail(str(exc)) from None
    raise AssertionError("unreachable: DEFAULT_CONTEXT is set")


def batching_mode(text: str) -> bool:
    """True for batched lanes."""
    if text not in ("batched", "sequential"):
        raise fail(f"--batching {text!r}: use batched or sequential")
    return text == "batched"


def lanes_named(text: str | None, default: tuple[str, ...] = LANE_NAMES) -> tuple[str, ...]:
    """The lanes `--lanes` names (`default` when not given), or a one-sentence exit."""
    if text is None:
        return default
    try:
        return parse_lanes(text)
    except ValueError as exc:
        raise fail(f"--lanes: {exc}") from None


def retrieval_from(text: str | None, models: Models | None = None) -> RetrievalSettings:
    """`--retrieval`'s settings (when not given: the alias's own, else the default), or a one-sentence exit."""
    if text is None:
        text = (models.alias.retrieval if models and models.alias else None) or RETRIEVAL_DEFAULT
    try:
        return RetrievalSettings.parse(text)
    except RetrievalError as exc:
        raise fail(f"--retrieval: {exc}") from None


def dates_on(text: str) -> bool:
    """True for `--dates on`."""
    if text not in ("on", "off"):
        raise fail(f"--dates {text!r}: use on or off")
    return text == "on"


def protocol_named(name: str) -> ScoringProtocol:
    """The scoring protocol called `name`, or a one-sentence exit."""
    from deltamem_chat.scoring import get_protocol

    try:
        return get_protocol(name)
    except ValueError as exc:
        raise fail(f"--protocol: {exc}") from None


def settings_from(max_new_tokens: int, temperature: float, top_p: float, top_k: int, seed: int) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                              seed=seed)


def resolve_or_exit(adapter: str | None, base: str | None) -> Models:
    """What `--adapter` and `--base` name (aliases resolved, once), or print why nothing and exit. No `--adapter`:
    the released model where it is downloaded, else the demo, with a note saying so."""
    if adapter is None:
        adapter, note = default_adapter()
        if note:
            err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    try:
        return resolve_models(adapter, base)
    except AliasError as exc:
        raise fail(str(exc)) from None


def remote_or_exit(url: str, api_key: str | None, policy: ContextPolicy | None
                   ) -> tuple[RemoteEngine, SessionIdentity]:
    """A new session on the server at `url` and the model it runs, or print why not and exit."""
    from deltamem_chat.remote.engine import RemoteEngine, RemoteError

    try:
        engine = RemoteEngine(url, api_key, policy=policy)
        return engine, engine.identity()
    except RemoteError as exc:
        raise fail(str(exc)) from None


def load_model(models: Models, device: str, dtype: str, attn: str, quantize: str = "none",
               progress: Progress | None = None) -> LoadedModel:
    """Load the model (`progress` hears each step), or raise a `LoadError` whose message is the sentence for the
    user: an alias that is not downloaded names its own download command."""
    from deltamem.hub import LoadError, OfflineError
    from deltamem.runtime.loading import load

    try:
        return load(models.adapter, models.base, device=device, dtype=dtype, attn=attn, names=models.names,
                    quantize=quantize, progress=progress)
    except OfflineError as exc:
        if models.alias is None:
            raise
        raise LoadError(f"{exc.what} {exc.repo} of {models.alias.name} is not downloaded and the hub cannot be "
                        f"reached: run `deltamem-chat download {models.alias.name}` where there is a network, or "
                        f"`deltamem-chat --adapter demo` for the offline demo") from None


def loader_for(models: Models, device: str, dtype: str, attn: str, quantize: str = "none"
               ) -> Callable[[Progress], LoadedModel]:
    """What the app runs on its loading screen: `load_model` with these options, given the screen's progress."""
    return partial(load_model, models, device, dtype, attn, quantize)


def load_or_exit(models: Models, device: str, dtype: str, attn: str, quantize: str = "none") -> LoadedModel:
    """Load the model under a console spinner (the commands without a screen), or print why not and exit
    non-zero."""
    from transformers.utils import logging as transformers_logging

    from deltamem.hub import LoadError

    # transformers' own "Loading weights" bar would stay in the terminal; the spinner says it.
    transformers_logging.disable_progress_bar()
    try:
        with err.status(f"loading {models.label} …"):
            loaded = load_model(models, device, dtype, attn, quantize)
    except LoadError as exc:
        raise fail(str(exc)) from None
    for note in loaded.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    return loaded
