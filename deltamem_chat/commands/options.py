"""Options shared by the commands that load a model (chat, replay, eval), and the one way they turn into a model.

Nothing here imports torch: every command's `--help` (and the commands that need no model) start at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from deltamem.context import ContextPolicy, PolicyError
from deltamem.retrieval import RetrievalError, RetrievalSettings
from deltamem.runtime.contract import ALL_LANES, LANE_NAMES, GenerationSettings, parse_lanes
from deltamem_chat.aliases import AliasError, Models, resolve_models

if TYPE_CHECKING:
    from deltamem.runtime.loading import LoadedModel
    from deltamem_chat.scoring import ScoringProtocol

AdapterOpt = Annotated[str, typer.Option("--adapter", "-a", help="δ-mem adapter: an alias (see `deltamem-chat "
                                         "models`), a local folder or a hub id.")]
BaseOpt = Annotated[str | None, typer.Option("--base", help="Base model: alias, folder or hub id (default: the "
                                             "adapter alias's base).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (bf16 on CUDA, float32 on CPU), bfloat16, float16 "
                                       "or float32.")]
QuantizeOpt = Annotated[str, typer.Option("--quantize", help="none, int8 or int4: the base model's weights quantized "
                                          "(torchao, weight-only) to run on a CPU in bfloat16, about 2x (int8) or "
                                          "3-4x (int4) less memory to read per token; δ-mem's own matrices are "
                                          "not quantized. Needs torchao (pip install 'deltamem-chat[cpu]').")]
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
RetrievalOpt = Annotated[str, typer.Option("--retrieval", help="The retrieval lanes' top k messages and token budget, "
                                           "e.g. k=3,tokens=256 (tokens=auto: a quarter of the window).")]

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

DEFAULT_CONTEXT = "window:1024"

err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one sentence to stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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


def retrieval_from(text: str) -> RetrievalSettings:
    """`--retrieval`'s settings, or a one-sentence exit."""
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


def resolve_or_exit(adapter: str, base: str | None) -> Models:
    """What `--adapter` and `--base` name (aliases resolved, once), or print why nothing and exit."""
    try:
        return resolve_models(adapter, base)
    except AliasError as exc:
        raise fail(str(exc)) from None


def load_or_exit(models: Models, device: str, dtype: str, attn: str, quantize: str = "none") -> LoadedModel:
    """Load the model, or print why not and exit non-zero."""
    from deltamem.runtime.loading import LoadError, load

    try:
        with err.status(f"loading {models.alias.name if models.alias else models.adapter} …"):
            loaded = load(models.adapter, models.base, device=device, dtype=dtype, attn=attn, names=models.names,
                          quantize=quantize)
    except LoadError as exc:
        raise fail(str(exc)) from None
    for note in loaded.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    return loaded
