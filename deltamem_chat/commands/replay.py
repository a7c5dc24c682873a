"""`deltamem-chat replay FILE`: feed a saved transcript to the lanes turn by turn and score its recall probes."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from deltamem.context import ContextPolicy
from deltamem.retrieval import RetrievalSettings
from deltamem.runtime.contract import DELTA, LANE_NAMES, Engine, GenerationSettings, SessionIdentity
from deltamem_chat.commands.options import (
    ApiKeyOpt,
    AttnOpt,
    BaseOpt,
    BatchingOpt,
    DatesOpt,
    DefaultAdapterOpt,
    DeviceOpt,
    DtypeOpt,
    LanesOpt,
    MaxTokensOpt,
    PolicyOpt,
    ProtocolOpt,
    QuantizeOpt,
    RetrievalOpt,
    SeedOpt,
    ServerOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    batching_mode,
    dates_on,
    fail,
    lanes_named,
    load_model,
    load_or_exit,
    policy_for,
    protocol_named,
    remote_or_exit,
    resolve_or_exit,
    retrieval_from,
    settings_from,
)
from deltamem_chat.outputs import STDOUT, check_output, is_stdout
from deltamem_chat.transcripts import Transcript, TranscriptError, load_transcript

if TYPE_CHECKING:
    from deltamem.runtime.loading import LoadedModel
    from deltamem.runtime.progress import Progress
    from deltamem_chat.replay import ReplayRunner


def runtime_of(loaded: LoadedModel) -> dict[str, str]:
    """What a report records of the model the replay ran on."""
    return {"base": loaded.base, "adapter": loaded.adapter, "device": loaded.choice.device,
            "dtype": str(loaded.choice.dtype).removeprefix("torch."), "attn": loaded.choice.attn}


def replay_config(transcript: Transcript, runtime: dict[str, str], policy: ContextPolicy,
                  settings: GenerationSettings, *, batched: bool, regenerate: bool, lanes: tuple[str, ...],
                  retrieval: RetrievalSettings, dates: bool, protocol: str) -> dict:
    """The `config` block of a replay report (`runtime`: the model's names and where it ran)."""
    return {
        "transcript": str(transcript.path), "title": transcript.meta.title,
        "base": runtime["base"], "adapter": runtime["adapter"], "context_policy": str(policy),
        "device": runtime["device"], "dtype": runtime["dtype"],
        "attn": runtime["attn"], "lanes": list(lanes),
        "batching": "batched" if batched else "sequential", "retrieval": str(retrieval),
        "assistant_turns": "regenerated" if regenerate else "teacher-forced", "dates": "on" if dates else "off",
        "protocol": protocol,
        "seed": settings.seed, "max_new_tokens": settings.max_new_tokens, "temperature": settings.temperature,
        "top_p": settings.top_p, "top_k": settings.top_k, "write_horizon": 8192,
    }


def register(app: typer.Typer) -> None:
    """Add the `replay` command."""

    @app.command()
    def replay(
        file: Annotated[Path, typer.Argument(help="Transcript (.jsonl) to replay; see docs/transcripts.md.")],
        ab: Annotated[bool, typer.Option("--ab/--delta-only", help="Run the frozen lane beside the δ-mem lane "
                                         "(without --ab only the δ-mem lane runs; --lanes chooses any).")] = False,
        headless: Annotated[bool, typer.Option("--headless", help="No screen: progress bar, table, reports.")] = False,
        report: Annotated[Path | None, typer.Option("--report", help="Write the JSON report here (- : standard "
                                                    "output, with --headless). A report that cannot be written "
                                                    "goes to the temporary folder, and the run says so.")] = None,
        markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown report here (- : "
                                                      "standard output, with --headless).")] = None,
        regenerate: Annotated[bool, typer.Option("--regenerate/--teacher-forced", help="Let each lane write its "
                                                 "own assistant turns instead of feeding the recorded ones.")] = False,
        adapter: DefaultAdapterOpt = None,
        base: BaseOpt = None,
        context: PolicyOpt = None,
        lanes: LanesOpt = None,
        batching: BatchingOpt = "batched",
        retrieval: RetrievalOpt = None,
        device: DeviceOpt = "auto",
        dtype: DtypeOpt = "auto",
        attn: AttnOpt = "auto",
        quantize: QuantizeOpt = "none",
        max_new_tokens: MaxTokensOpt = 64,
        temperature: TemperatureOpt = 0.0,
        top_p: TopPOpt = 1.0,
        top_k: TopKOpt = 0,
        seed: SeedOpt = 0,
        dates: DatesOpt = "on",
        protocol: ProtocolOpt = "ours",
        server: ServerOpt = None,
        api_key: ApiKeyOpt = None,
    ) -> None:
        """Replay a transcript turn by turn through the lanes (frozen and δ-mem, or those --lanes names) and score
        its recall probes."""
        try:
            transcript = load_transcript(file)
        except TranscriptError as exc:
            raise fail(str(exc)) from None
        for path, option in ((report, "--report"), (markdown, "--markdown")):
            if is_stdout(path) and not headless:
                raise fail(f"{option} {STDOUT} writes to standard output, which the replay screen uses: add --headless")
            problem = check_output(path, option)
            if problem:
                raise fail(problem)
        if is_stdout(report) and is_stdout(markdown):
            raise fail(f"--report and --markdown cannot both be {STDOUT}: name a file for one of them")
        batched = batching_mode(batching)
        names = lanes_named(lanes, LANE_NAMES if ab else (DELTA,))
        retrieved = retrieval_from(retrieval)
        with_dates = dates_on(dates)
        scoring = protocol_named(protocol)
        settings = settings_from(max_new_tokens, temperature, top_p, top_k, seed)
        from deltamem_chat.replay import ReplayRunner

        def parts(engine: Engine, runtime: dict[str, str], policy: ContextPolicy,
                  retrieved: RetrievalSettings) -> tuple[ReplayRunner, dict]:
            """The runner and its report's config, on an engine."""
            runner = ReplayRunner(engine, transcript, settings=settings, regenerate=regenerate, lanes=list(names),
                                  dates=with_dates, protocol=scoring)
            return runner, replay_config(transcript, runtime, policy, settings, batched=batched,
                                         regenerate=regenerate, lanes=names, retrieval=retrieved, dates=with_dates,
                                         protocol=scoring.name)

        if server is not None:
            policy = policy_for(context, transcript.meta.context)
            engine, identity = remote_or_exit(server, api_key, policy)
            missing = [name for name in names if name not in engine.lane_names]
            if missing:
                raise fail(f"--lanes: the server runs {', '.join(engine.lane_names)}, not {', '.join(missing)}")
            runtime = {**identity.to_dict(), "device": f"server {server}", "dtype": "", "attn": ""}
            runner, config = parts(engine, runtime, policy, retrieved)
            if headless:
                _headless(runner, config, report, markdown)
            from deltamem_chat.tui import run_replay

            raise typer.Exit(run_replay(runner, config, identity=identity, report_path=report,
                                        markdown_path=markdown))
        models = resolve_or_exit(adapter, base)
        policy = policy_for(context, transcript.meta.context, models.context)
        retrieved = retrieval_from(retrieval, models)
        if headless:
            loaded = load_or_exit(models, device, dtype, attn, quantize)
            _headless(*parts(_engine(loaded, policy, batched, names, retrieved), runtime_of(loaded), policy,
                             retrieved), report, markdown)
        from deltamem_chat.tui import Ready, ReplayScreen, run_replay_after

        def prepare(progress: Progress) -> Ready:
            loaded = load_model(models, device, dtype, attn, quantize, progress)
            runner, config = parts(_engine(loaded, policy, batched, names, retrieved), runtime_of(loaded), policy,
                                   retrieved)
            return Ready(partial(ReplayScreen, runner, config, identity=SessionIdentity(loaded.base, loaded.adapter),
                                 report_path=report, markdown_path=markdown), loaded.notes)

        raise typer.Exit(run_replay_after(prepare, models.label))


def _engine(loaded: LoadedModel, policy: ContextPolicy, batched: bool, names: tuple[str, ...],
            retrieved: RetrievalSettings) -> Engine:
    """The lanes on a model loaded here."""
    from deltamem.runtime.engine import ABEngine

    return ABEngine(loaded.model, loaded.tokenizer, policy=policy, batched=batched, lanes=names, retrieval=retrieved)


def _headless(runner: ReplayRunner, config: dict, report: Path | None, markdown: Path | None) -> NoReturn:
    """Replay without a screen (a progress bar, the table, the reports) and exit with how it went."""
    from deltamem_chat.replay import run_headless

    _, completed, problems = run_headless(runner, config, report_path=report, markdown_path=markdown,
                                          console=Console(stderr=True))
    for problem in problems[:-1]:
        fail(problem)
    if problems:
        raise fail(problems[-1], 130 if not completed else 2)
    raise typer.Exit(0 if completed else 130)
