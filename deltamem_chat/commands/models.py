"""`models`, `download` and `inspect`: what can be loaded, fetching it ahead of time, and what an adapter holds."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deltamem.hub import ADAPTER_FILES, MODEL_FILES, LoadError, OfflineError, download, is_cached
from deltamem_chat.aliases import ALIASES
from deltamem_chat.commands.options import fail


def models() -> None:
    """List the model aliases and whether each is already here (in the hub cache, or shipped in the package)."""
    out = Console()
    table = Table(title="Aliases (use with --adapter)")
    for column in ("alias", "base model", "adapter", "cached"):
        table.add_column(column, overflow="fold")
    table.add_column("note", ratio=1)
    for alias in ALIASES.values():
        sources = [alias.base] + ([alias.adapter] if alias.adapter else [])
        if alias.labels:                     # shipped in the package: local folders, named rather than shown
            here = "in package" if all(Path(f).is_dir() for f in sources) else "missing"
            table.add_row(alias.name, alias.labels[0], alias.labels[1], here, alias.note)
            continue
        cached = "yes" if all(is_cached(r) for r in sources) else "no"
        table.add_row(alias.name, alias.base, alias.adapter or "—", cached, alias.note)
    out.print(table)

def download_command(
    alias: Annotated[str, typer.Argument(help="Alias to fetch (base model and adapter) into the hub cache.")],
) -> None:
    """Fetch an alias's base model and adapter now, so the app later starts offline."""
    if alias not in ALIASES:
        raise fail(f"unknown alias {alias!r}: choose one of {', '.join(ALIASES)}")
    entry = ALIASES[alias]
    out = Console()
    if entry.labels:
        out.print(f"{alias} ships inside the package: there is nothing to download")
        return
    try:
        if entry.adapter:
            out.print(f"adapter {entry.adapter}: {download(entry.adapter, 'adapter', ADAPTER_FILES)}")
        out.print(f"base model {entry.base}: {download(entry.base, 'base model', MODEL_FILES)}")
    except OfflineError as exc:
        raise fail(f"{exc.what} {exc.repo} cannot be downloaded: the hub cannot be reached from here (no network, "
                   f"or HF_HUB_OFFLINE is set); run `deltamem-chat download {alias}` again where there is a "
                   "network") from None
    except LoadError as exc:
        raise fail(str(exc)) from None

def inspect(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder (delta_mem_config.json + tensors).")],
) -> None:
    """Check an adapter as loading would, and show its config, its tensors and shapes, and the base it fits.

    Every check loading runs that needs no base is run here, with loading's words: the config, the file, every key
    the config calls for and nothing else, shapes, floating-point and finite weights. What only a base can show (its
    layer count and sizes) is listed. The exit status is 2 when loading would fail for a reason seen here.
    """
    from deltamem.adapter import AdapterError, adapter_file, check_without_base, read_tensors
    from deltamem.config import ConfigError, DeltaMemConfig, OffTrainedDefaultsWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OffTrainedDefaultsWarning)
            config = DeltaMemConfig.load(adapter)
        path = adapter_file(adapter)
        tensors = read_tensors(path)
    except (ConfigError, AdapterError) as exc:
        raise fail(str(exc)) from None
    out = Console()
    settings = Table(title=f"{adapter} — config", show_header=False)
    for key in ("rank", "alpha", "num_state_heads", "memory_write_granularity", "delta_heads", "state_update_mode",
                "couple_lambda", "rankwise_gates", "target_layers", "delta_o_rmsnorm", "trainable_delta_scale"):
        settings.add_row(key, str(getattr(config, key)))
    out.print(settings)
    for warning in caught:
        out.print(f"[yellow]note:[/] {warning.message}", highlight=False)
    shapes = Counter((key.rsplit(".", 1)[-1], tuple(t.shape), str(t.dtype).removeprefix("torch."))
                     for key, t in tensors.items())
    numbers = sum(t.numel() for t in tensors.values())
    table = Table(title=f"{path.name}: {len(tensors)} tensors, {numbers:,} numbers")
    for column in ("parameter", "shape", "dtype", "layers"):
        table.add_column(column)
    for (name, shape, dtype), count in sorted(shapes.items()):
        table.add_row(name, str(list(shape)), dtype, str(count))
    out.print(table)
    kinds = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()})
    if kinds != ["float32"]:
        out.print(f"[yellow]note:[/] the weights are {' and '.join(kinds)}; loading converts them to the dtype the "
                  "model runs in (by default float32 on CPU, bfloat16 on CUDA) and says so", highlight=False)
    try:
        check = check_without_base(config, tensors, str(path))
    except AdapterError as exc:
        raise fail(str(exc)) from None
    out.print("checks: config, keys (both ways), shapes, dtypes and finite values pass")
    out.print("loading also checks, with the base: " + "; ".join(check.needs_base), highlight=False)
    out.print(f"fits: {check.made_for}")


def register(app: typer.Typer) -> None:
    """Add the `models`, `download` and `inspect` commands."""
    app.command()(models)
    app.command(name="download")(download_command)
    app.command()(inspect)
