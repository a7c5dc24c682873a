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
from deltamem.benchmarks.options import DESCRIPTION, DTYPE_NAMES, add_to
from deltamem.files import atomic_write_text
from deltamem.quantization import QuantizationError, check_runtime
from deltamem.runtime import kernels, prefill
from deltamem.shapes import describe, label

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


class UsageError(Exception):
    """A bad command line; the message is one sentence for the user."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m deltamem.bench`, from the option table that `deltamem-chat bench` reads too."""
    parser = _Parser(prog="python -m deltamem.bench", description=DESCRIPTION)
    add_to(parser)
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
                        vocab_size=args.vocab, prefill_chunk=args.prefill_chunk)
    threads, chunk = torch.get_num_threads(), prefill.PREFILL_CHUNK
    torch.set_num_threads(args.threads or threads)
    prefill.PREFILL_CHUNK = settings.prefill_chunk         # what the engine's prefill and this bench's turns use
    try:
        if args._child:
            return peak.child_main(settings, args._child, args.prompt_lens[0], args.decode_len, args.quantize[0])
        return _run(args, settings, list(sys.argv[1:] if argv is None else argv))
    except peak.ChildError as exc:
        print(f"deltamem.bench: {exc}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)
        prefill.PREFILL_CHUNK = chunk


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
           "prefill_chunk": settings.prefill_chunk,
           "scan_lens": args.scan_lens, "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed, "argv": argv,
           "load_average_1m": {"start": load_at_start, "end": _load_average()}}
    info = report.machine(device, settings.dtype, args.attn) | {"one_row_kernel": kernels.measurements()}
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
