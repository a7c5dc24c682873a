"""The bench's options, one table read by both of its command lines: `python -m deltamem.bench` (argparse) and
`deltamem-chat bench` (the app's Typer command). No torch here, so the app's `--help` starts at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from deltamem.shapes import SHAPES

DESCRIPTION = ("Measure what δ-mem costs next to the frozen backbone (random weights, no download). Every ratio in "
               "the summary is computed within this one run.")
MODES = ("prefill", "decode", "memory", "ab", "scan")
ATTENTIONS = ("sdpa", "eager", "flash_attention_2")
DTYPE_NAMES = ("float32", "bfloat16", "float16")
DEFAULT_SCAN_LENS = "512,1024,2048,4096,8192"

Kind = Literal["text", "count", "list", "choice", "file"]


def int_list(text: str) -> list[int]:
    """`512,4096` as [512, 4096]: comma-separated positive integers."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 512,4096, got {text!r}")
    return values


def count(minimum: int) -> Callable[[str], int]:
    """A parser of integers of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {text!r}")
        return value
    return parse


def quantizations(text: str) -> list[str]:
    """Some of the quantization modes, each once (their names live with the torch code, read when parsing)."""
    from deltamem.quantization import MODES as QUANTIZATIONS

    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in QUANTIZATIONS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(QUANTIZATIONS)} (each once), got {text!r}")
    return chosen


def modes(text: str) -> list[str]:
    """Some of `MODES`, in their own order."""
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown mode {unknown[0] if unknown else text!r}; "
                                         f"choose from {','.join(MODES)}")
    return [m for m in MODES if m in chosen]


@dataclass(frozen=True)
class BenchOption:
    """One option: its flag, its help, and what its value is.

    `kind`: text (any string), count (an integer of at least `minimum`), list (comma-separated, read by `parse`),
    choice (one of `choices`) or file (a path to write). `default` is written as on the command line; None means
    none, and the help says what happens then.
    """

    flag: str
    help: str
    kind: Kind = "text"
    default: str | None = None
    minimum: int = 0
    parse: Callable[[str], object] | None = None
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    hidden: bool = False

    @property
    def name(self) -> str:
        """The attribute the parsed value is stored under."""
        return self.flag.removeprefix("--").replace("-", "_")


OPTIONS: tuple[BenchOption, ...] = (
    BenchOption("--shape", "Backbone shape with random weights (default: cpu-bench, 8 layers of hidden 512).",
                "choice", "cpu-bench", choices=tuple(sorted(SHAPES))),
    BenchOption("--layers", "Decoder layers of the shape (default: the shape's own): a real width with a few layers "
                "measures the real model's per-layer cost on a small machine; the report states the shape used.",
                "count", minimum=1),
    BenchOption("--vocab", "Vocabulary size of the shape (default: the shape's own); the output head is read whole "
                "per decoded token, so it weighs in the decode figures.", "count", minimum=2),
    BenchOption("--quantize", "Weight-only quantization of the backbone, comma-separated from none, int8, int4 "
                "(torchao, CPU, bfloat16): each is its own copy of the same random model, its lanes interleaved with "
                "the others'; ratios between the lanes use the first (default: none).", "list", "none",
                parse=quantizations, metavar="Q,Q"),
    BenchOption("--prompt-lens", "Prompt lengths in tokens for prefill, decode, memory and ab (default: 512,4096); "
                "the summary uses the largest.", "list", "512,4096", parse=int_list, metavar="N,N"),
    BenchOption("--decode-len", "Tokens fed one at a time through the KV cache after the prompt (default: 64).",
                "count", "64", minimum=1),
    BenchOption("--prefill-chunk", "The most tokens one prefill forward computes, as the app feeds long prompts "
                "(default: 512); a number at least the prompt's length feeds it in one forward, to see what the "
                "spans save in memory and cost in time.", "count", "512", minimum=1),
    BenchOption("--message-len", "Tokens of the new message in the A/B follow-up turn, which finds the prompt already "
                "in the cache and memory (default: 32).", "count", "32", minimum=1),
    BenchOption("--scan-lens", f"Sequence lengths for the scan mode (default: {DEFAULT_SCAN_LENS}); the summary uses "
                "4096, or the largest when 4096 is not among them.", "list", DEFAULT_SCAN_LENS, parse=int_list,
                metavar="N,N"),
    BenchOption("--device", "auto (cuda when available, else cpu), cpu, cuda or cuda:N (default: auto).", "text",
                "auto"),
    BenchOption("--dtype", "Model dtype: auto is bfloat16 on cuda and float32 on cpu (bfloat16 there too with "
                "--quantize); the memory state is always float32 (default: auto).", "choice", "auto",
                choices=("auto", *DTYPE_NAMES)),
    BenchOption("--attn", "Attention implementation of the backbone (default: sdpa).", "choice", "sdpa",
                choices=ATTENTIONS),
    BenchOption("--repeats", "Timed runs per measurement; the report shows medians (default: 3).", "count", "3",
                minimum=1),
    BenchOption("--warmup", "Untimed runs before the timed ones (default: 1).", "count", "1"),
    BenchOption("--modes", "What to measure, comma-separated, from: prefill (prefill time per lane), decode (time per "
                "decoded token per lane), memory (peak memory per lane; on CPU one fresh process per lane), ab (an "
                "A/B first turn and follow-up turn, batched vs sequential vs single lane), scan (the three scan "
                "forms) (default: all).", "list", ",".join(MODES), parse=modes, metavar="M,M"),
    BenchOption("--threads", "Torch CPU threads (default: torch's choice, one per core); on a machine that other work "
                "keeps busy, 1 avoids every parallel kernel waiting for a descheduled thread.", "count", minimum=1),
    BenchOption("--seed", "Seed of the random weights and tokens (default: 0).", "count", "0"),
    BenchOption("--json", "Also write records, machine and summary as JSON to this file.", "file"),
    BenchOption("--markdown", "Also write the Markdown report to this file.", "file"),
    BenchOption("--_child", "The lane a memory measurement's fresh process runs (the bench starts it itself).",
                "choice", choices=("frozen", "delta"), hidden=True),
)


def add_to(parser: argparse.ArgumentParser) -> None:
    """Every option of the table on an argparse parser (the defaults parsed as if typed)."""
    for option in OPTIONS:
        kwargs: dict[str, object] = {"default": option.default,
                                     "help": argparse.SUPPRESS if option.hidden else option.help}
        if option.kind == "count":
            kwargs.update(type=count(option.minimum), metavar="N")
        elif option.kind == "list":
            kwargs.update(type=option.parse, metavar=option.metavar)
        elif option.kind == "choice":
            kwargs.update(choices=option.choices)
        elif option.kind == "file":
            kwargs.update(metavar="FILE")
        parser.add_argument(option.flag, **kwargs)  # type: ignore[arg-type]
