"""`python -m deltamem.bench`: what δ-mem costs next to the frozen backbone, every ratio measured in one run.

Random weights of a named shape (no download). Modes: prefill and decode time of the frozen and δ-mem lanes, their
peak memory, an A/B turn three ways, and the three scan forms. Prints a Markdown report; `--json` / `--markdown`
write it to files. `main(argv)` is also what `deltamem-chat bench` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import torch

from deltamem.benchmarks import lanes, peak, report, scans
from deltamem.benchmarks.common import Settings, build_models
from deltamem.files import atomic_write_text
from deltamem.quantization import MODES as QUANTIZATIONS
from deltamem.quantization import QuantizationError, check_runtime
from deltamem.shapes import SHAPES, describe, label

MODES = ("prefill", "decode", "memory", "ab", "scan")
ATTENTIONS = ("sdpa", "eager", "flash_attention_2")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_SCAN_LENS = "512,1024,2048,4096,8192"


class UsageError(Exception):
    """A bad command line; the message is one sentence for the user."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 512,4096, got {text!r}")
    return values


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {text!r}")
        return value
    return parse


def _quantizations(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in QUANTIZATIONS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(QUANTIZATIONS)} (each once), got {text!r}")
    return chosen


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode {unknown[0] if unknown else text!r}; "
                                         f"choose from {','.join(MODES)}")
    return [m for m in MODES if m in modes]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m deltamem.bench",
        description="Measure what δ-mem costs next to the frozen backbone (random weights, no download). Every "
                    "ratio in the summary is computed within this one run.",
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="cpu-bench",
                        help="backbone shape with random weights (default: cpu-bench, 8 layers of hidden 512)")
    parser.add_argument("--layers", type=_count(1), metavar="N",
                        help="decoder layers of the shape (default: the shape's own): a real width with a few "
                             "layers measures the real model's per-layer cost on a small machine; the report states "
                             "the shape used")
    parser.add_argument("--vocab", type=_count(2), metavar="N",
                        help="vocabulary size of the shape (default: the shape's own); the output head is read "
                             "whole per decoded token, so it weighs in the decode figures")
    parser.add_argument("--quantize", type=_quantizations, default=["none"], metavar="Q,Q",
                        help="weight-only quantization of the backbone, comma-separated from none, int8, int4 "
                             "(torchao, CPU, bfloat16): each is its own copy of the same random model, its lanes "
                             "interleaved with the others'; ratios between the lanes use the first (default: none)")
    parser.add_argument("--prompt-lens", type=_int_list, default=[512, 4096], metavar="N,N",
                        help="prompt lengths in tokens for prefill, decode, memory and ab (default: 512,4096); the "
                             "summary uses the largest")
    parser.add_argument("--decode-len", type=_count(1), default=64, metavar="N",
                        help="tokens fed one at a time through the KV cache after the prompt (default: 64)")
    parser.add_argument("--message-len", type=_count(1), default=32, metavar="N",
                        help="tokens of the new message in the A/B follow-up turn, which finds the prompt already in "
                             "the cache and memory (default: 32)")
    parser.add_argument("--scan-lens", type=_int_list, default=_int_list(DEFAULT_SCAN_LENS), metavar="N,N",
                        help=f"sequence lengths for the scan mode (default: {DEFAULT_SCAN_LENS}); the summary uses "
                             "4096, or the largest when 4096 is not among them")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                        help="model dtype: auto is bfloat16 on cuda and float32 on cpu (bfloat16 there too with "
                             "--quantize); the memory state is always float32 (default: auto)")
    parser.add_argument("--attn", choices=ATTENTIONS, default="sdpa",
                        help="attention implementation of the backbone (default: sdpa)")
    parser.add_argument("--repeats", type=_count(1), default=3, metavar="N",
                        help="timed runs per measurement; the report shows medians (default: 3)")
    parser.add_argument("--warmup", type=_count(0), default=1, metavar="N",
                        help="untimed runs before the timed ones (default: 1)")
    parser.add_argument("--modes", type=_modes, default=list(MODES), metavar="M,M",
                        help="what to measure, comma-separated, from: prefill (prefill time per lane), decode (time "
                             "per decoded token per lane), memory (peak memory per lane; on CPU one fresh process "
                             "per lane), ab (an A/B first turn and follow-up turn, batched vs sequential vs single "
                             "lane), scan (the three scan forms) (default: all)")
    parser.add_argument("--threads", type=_count(1), metavar="N",
                        help="torch CPU threads (default: torch's choice, one per core); on a machine that other "
                             "work keeps busy, 1 avoids every parallel kernel waiting for a descheduled thread")
    parser.add_argument("--seed", type=_count(0), default=0, metavar="N",
                        help="seed of the random weights and tokens (default: 0)")
    parser.add_argument("--json", metavar="FILE", help="also write records, machine and summary as JSON to FILE")
    parser.add_argument("--markdown", metavar="FILE", help="also write the Markdown report to FILE")
    parser.add_argument("--_child", choices=("frozen", "delta"), help=argparse.SUPPRESS)
    return parser


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"argument --device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"argument --device: only cpu and cuda are supported, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"argument --device: {name} was asked for but this torch {torch.__version__} sees no CUDA "
                         "device")
    return device


def _dtype(name: str, device: torch.device, quantize: Sequence[str] = ("none",)) -> torch.dtype:
    """auto: bfloat16 on CUDA, and on a CPU when a quantized copy is measured (its kernels compute in bfloat16, and
    its unquantized twin is then the bfloat16 model); float32 otherwise."""
    if name == "auto":
        quantized = any(mode != "none" for mode in quantize)
        return torch.bfloat16 if device.type == "cuda" or quantized else torch.float32
    return DTYPES[name]


def _check(args: argparse.Namespace, device: torch.device) -> None:
    if args.attn == "flash_attention_2":
        import importlib.util

        if device.type != "cuda" or importlib.util.find_spec("flash_attn") is None:
            raise UsageError("argument --attn: flash_attention_2 needs a CUDA device and the flash-attn package")
    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"argument {option}: the folder of {path} does not exist")
    try:
        for mode in args.quantize:
            check_runtime(mode, device, _dtype(args.dtype, device, args.quantize))
    except QuantizationError as exc:
        raise UsageError(f"argument --quantize: {exc}") from None
    longest = max(args.prompt_lens) + args.decode_len
    if longest > 40960:
        raise UsageError(f"argument --prompt-lens: prompt plus decode is {longest} tokens, more than the 40960 "
                         "positions of the bench shapes")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; returns the process exit code (2 for a bad command line)."""
    try:
        args = build_parser().parse_args(argv)
        device = _device(args.device)
        _check(args, device)
    except UsageError as exc:
        print(f"deltamem.bench: {exc} (see --help)", file=sys.stderr)
        return 2
    except SystemExit as exc:          # --help
        return int(exc.code or 0)

    settings = Settings(shape=args.shape, device=device, dtype=_dtype(args.dtype, device, args.quantize),
                        attn=args.attn, repeats=args.repeats, warmup=args.warmup, seed=args.seed, layers=args.layers,
                        vocab_size=args.vocab)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    try:
        if args._child:
            return peak.child_main(settings, args._child, args.prompt_lens[0], args.decode_len, args.quantize[0])
        return _run(args, settings, list(sys.argv[1:] if argv is None else argv))
    except peak.ChildError as exc:
        print(f"deltamem.bench: {exc}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, settings: Settings, argv: list[str]) -> int:
    """Measure the chosen modes, then print and write the report."""
    load_at_start = _load_average()
    records: list[report.Record] = []
    modes, device = args.modes, settings.device
    models = {}
    shape = settings.backbone_shape
    if {"prefill", "decode", "ab"} & set(modes) or ("memory" in modes and device.type == "cuda"):
        _say(f"building a random {label(shape, args.shape)} model on {device} in "
             f"{str(settings.dtype).removeprefix('torch.')}"
             + (f", quantized {', '.join(args.quantize)}" if args.quantize != ["none"] else ""))
        models = build_models(settings, args.quantize)
    if {"prefill", "decode"} & set(modes):
        _say("timing prefill and decode of the frozen and δ-mem lanes")
        records += lanes.lane_records(models, settings, args.prompt_lens, args.decode_len, modes)
    if "ab" in modes:
        _say("timing the A/B turn: batched, sequential, single lane")
        records += lanes.ab_records(models[args.quantize[0]], settings, args.prompt_lens, args.decode_len,
                                    args.message_len)
    if "memory" in modes:
        _say("measuring peak memory" + (" (one fresh process per lane and length)" if device.type == "cpu" else ""))
        records += peak.memory_records(settings, args.prompt_lens, args.decode_len, args.quantize, models)
    if "scan" in modes:
        _say("timing the scan forms")
        records += scans.scan_records(settings, args.scan_lens)

    run = {"shape": args.shape, "shape_label": label(shape, args.shape), "shape_details": describe(shape, args.shape),
           "quantize": args.quantize, "modes": modes,
           "prompt_lens": args.prompt_lens, "decode_len": args.decode_len, "message_len": args.message_len,
           "scan_lens": args.scan_lens, "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed, "argv": argv,
           "load_average_1m": {"start": load_at_start, "end": _load_average()}}
    info = report.machine(device, settings.dtype, args.attn)
    text = report.markdown(records, run, info)
    print(text)
    if args.markdown:
        atomic_write_text(args.markdown, text + "\n")
    if args.json:
        report.write_json(args.json, report.to_json(records, run, info))
    return 0


def _load_average() -> float | None:
    """The 1-minute load average: on a shared machine, other work that ran beside the bench shows up here."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _say(message: str) -> None:
    print(f"[bench] {message} …", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
