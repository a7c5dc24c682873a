"""`deltamem-chat eval`: a benchmark through the A/B lanes under context conditions, resumable and shardable."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deltamem.files import SaveError, atomic_write_text
from deltamem_chat.commands.options import (
    AdapterOpt,
    AttnOpt,
    BaseOpt,
    BatchingOpt,
    DatesOpt,
    DeviceOpt,
    DtypeOpt,
    LanesOpt,
    QuantizeOpt,
    RetrievalOpt,
    batching_mode,
    dates_on,
    fail,
    lanes_named,
    load_or_exit,
    protocol_named,
    resolve_or_exit,
    retrieval_from,
)
from deltamem_chat.eval.plan import EvalError, EvalSettings, find_transcripts, parse_shard, plan_units, shard_units
from deltamem_chat.eval.store import append_result, collect, open_run, read_results, results_name
from deltamem_chat.outputs import write_output
from deltamem_chat.scoring.locomo import LocomoProtocol

#: The generation settings of the official protocols (`--official`): LoCoMo's as the δ-mem authors ran it.
OFFICIAL = {"locomo": {"max_new_tokens": 50, "temperature": 0.4, "top_p": 0.9, "top_k": 10},
            "mab": {"max_new_tokens": 50, "temperature": 0.0, "top_p": 1.0, "top_k": 0}}
GREEDY = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "top_k": 0}


def _conditions(text: str) -> tuple[str, ...]:
    from deltamem.context import ContextPolicy, PolicyError

    conditions = []
    for part in (p.strip() for p in text.split(",")):
        try:
            conditions.append(str(ContextPolicy.parse(part)))
        except PolicyError as exc:
            raise fail(f"--conditions: {exc}") from None
    if len(set(conditions)) != len(conditions):
        raise fail(f"--conditions {text!r} names a condition twice")
    return tuple(conditions)


def _generation(protocol: str, official: bool, given: dict[str, float | int | None]) -> dict[str, float | int]:
    if not official:
        return {key: given[key] if given[key] is not None else value for key, value in GREEDY.items()}
    if protocol not in OFFICIAL:
        raise fail(f"--official has settings for the {' and '.join(OFFICIAL)} protocols, not {protocol!r}")
    chosen = [f"--{key.replace('_', '-')}" for key, value in given.items() if value is not None]
    if chosen:
        raise fail(f"--official fixes the generation settings: drop {', '.join(chosen)}")
    return dict(OFFICIAL[protocol])


def _summarise(results: list[dict], settings: EvalSettings, out: Path, stem: str, console: Console) -> None:
    from deltamem_chat.eval.table import summarise_results, summary_table, to_markdown
    from deltamem_chat.scoring import get_protocol

    summary = summarise_results(results, settings, get_protocol(settings.protocol).category_names)
    title = f"eval: {len(settings.transcripts)} transcripts, protocol {settings.protocol}"
    notes = [f"base `{settings.base}`, adapter `{settings.adapter}`",
             f"generation: {settings.max_new_tokens} new tokens, temperature {settings.temperature}, top-p "
             f"{settings.top_p}, top-k {settings.top_k}, seed {settings.seed}"
             + (" (official settings)" if settings.official else ""),
             f"dates {'on' if settings.dates else 'off'}, lanes {', '.join(settings.lanes)} ({settings.batching}), "
             f"retrieval {settings.retrieval}",
             f"units: {len(results)} of {len(settings.transcripts) * len(settings.conditions)}"]
    console.print(summary_table(summary, title))
    written, problems = [], []
    for path, text in ((out / f"{stem}.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n"),
                       (out / f"{stem}.md", to_markdown(summary, title, notes))):
        where, problem = write_output(path, text, "summary", "--out", "the same command writes it once there is room")
        written += [where] if where else []
        problems += [problem] if problem else []
    if not problems:
        console.print(f"summary: {written[0]} and {written[1]}")
    for problem in problems[:-1]:
        fail(problem)
    if problems:
        raise fail(f"{problems[-1]} (the results themselves are kept in {out}; the same command writes the summary "
                   "again)")


def _merge(folders: list[Path], out: Path, console: Console) -> None:
    settings, results = collect(folders)
    order = [f"{t} @ {c}" for t in settings.transcripts for c in settings.conditions]
    by_unit = {r["unit"]: r for r in results}
    missing = [key for key in order if key not in by_unit]
    if missing:
        raise EvalError(f"the shards lack {len(missing)} of {len(order)} units (first: {missing[0]}): run the "
                        "missing shards, or rerun the interrupted ones, before merging")
    open_run(out, settings)
    target = out / results_name(None)
    if target.exists() and read_results(target) and {r["unit"] for r in read_results(target)} != set(order):
        raise EvalError(f"{target} already holds other results: merge into an empty folder")
    atomic_write_text(target, "".join(json.dumps(by_unit[key], ensure_ascii=False) + "\n" for key in order))
    console.print(f"merged {len(order)} units from {len(folders)} folders into {target}")
    _summarise([by_unit[key] for key in order], settings, out, "summary", console)


def register(app: typer.Typer) -> None:
    """Add the `eval` command."""

    @app.command(name="eval")
    def eval_command(
        paths: Annotated[list[Path], typer.Argument(help="Transcripts (.jsonl files, or folders of them); with "
                                                    "--merge, the eval folders to join.")],
        conditions: Annotated[str, typer.Option("--conditions", help="Context conditions, comma-separated: `full` "
                                                "and/or `window:N`.")] = "full,window:1024",
        protocol: Annotated[str, typer.Option("--protocol", help="Scoring: ours (hit and F1), locomo (the "
                                              "official LoCoMo score) or mab (MemoryAgentBench's metrics).")] = "ours",
        official: Annotated[bool, typer.Option("--official/--greedy", help="The protocol's official generation "
                                               "settings (LoCoMo: temperature 0.4, top-k 10, top-p 0.9, 50 new "
                                               "tokens, questions inside the official answer instruction), or "
                                               "greedy.")] = False,
        out: Annotated[Path, typer.Option("--out", help="Folder for the run: settings, results (appended as "
                                          "units finish), summary. Rerun with the same folder to continue.")]
        = Path("eval-results"),
        shard: Annotated[str | None, typer.Option("--shard", help="Run shard K of N (K/N) of the units.")] = None,
        merge: Annotated[bool, typer.Option("--merge", help="Join the results of the eval folders given as PATHS "
                                            "(shards) into --out.")] = False,
        adapter: AdapterOpt = "qwen3-4b",
        base: BaseOpt = None,
        device: DeviceOpt = "auto",
        dtype: DtypeOpt = "auto",
        attn: AttnOpt = "auto",
        quantize: QuantizeOpt = "none",
        lanes: LanesOpt = None,
        batching: BatchingOpt = "batched",
        retrieval: RetrievalOpt = None,
        dates: DatesOpt = "on",
        max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1, help="Longest answer "
                                                           "(default 64; --official sets it).")] = None,
        temperature: Annotated[float | None, typer.Option("--temperature", min=0.0, help="0 = greedy "
                                                          "(default).")] = None,
        top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus mass.")] = None,
        top_k: Annotated[int | None, typer.Option("--top-k", min=0, help="Keep the k likeliest tokens.")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    ) -> None:
        """Run a benchmark of transcripts through both lanes under each context condition and print its table.

        Results are appended as each transcript finishes under a condition: Ctrl-C or a crash loses at most the one
        in progress, and the same command continues where it stopped.
        """
        console, err = Console(), Console(stderr=True)
        try:
            if merge:
                _merge(paths, out, console)
                return
            scoring = protocol_named(protocol)
            if official and isinstance(scoring, LocomoProtocol):
                scoring = replace(scoring, instructed=True)
            chosen = _conditions(conditions)
            part = parse_shard(shard)
            transcripts = find_transcripts(paths)
            generation = _generation(protocol, official, {"max_new_tokens": max_new_tokens,
                                                          "temperature": temperature, "top_p": top_p, "top_k": top_k})
            batched = batching_mode(batching)
            names, retrieved = lanes_named(lanes), retrieval_from(retrieval)
            with_dates = dates_on(dates)
        except (EvalError, ValueError, SaveError) as exc:
            raise fail(str(exc)) from None
        loaded = load_or_exit(resolve_or_exit(adapter, base), device, dtype, attn, quantize)
        settings = EvalSettings(
            transcripts=tuple(p.stem for p in transcripts), conditions=chosen, protocol=scoring.name,
            official=official, base=loaded.base, adapter=loaded.adapter, lanes=names,
            batching="batched" if batched else "sequential", retrieval=str(retrieved), dates=with_dates, seed=seed,
            **generation)
        results_file = out / results_name(part)
        try:
            open_run(out, settings)
            done = {r["unit"] for r in read_results(results_file, repair=True)}
        except (EvalError, OSError) as exc:
            raise fail(str(exc)) from None
        units = shard_units(plan_units(transcripts, chosen), part)
        todo = [unit for unit in units if unit.key not in done]
        if done:
            err.print(f"continuing {out}: {len(units) - len(todo)} of {len(units)} units already done")
        from deltamem_chat.eval.run import run_units

        try:
            run_units(loaded, todo, settings, scoring, lambda result: append_result(results_file, result), err)
        except OSError as exc:
            kept = len(read_results(results_file))
            raise fail(f"could not add a result to {results_file} ({exc.strerror or exc}): the {kept} units finished "
                       "before are kept there; make room and run the same command to continue") from None
        except KeyboardInterrupt:
            left = len(todo) - (len(read_results(results_file)) - len(done))
            err.print(f"[yellow]Interrupted: {left} of {len(units)} units left; the same command continues.[/]")
            raise typer.Exit(130) from None
        stem = "summary" if part is None else f"summary-{part[0]}-of-{part[1]}"
        _summarise(read_results(results_file), settings, out, stem, console)
