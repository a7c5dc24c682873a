"""The `deltamem-chat` command line: the side-by-side chat by default, and sub-commands for replay and tools.

The command modules import torch and transformers only when a command runs, so `--help`, `import`, `score` and
`models` start at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deltamem_chat import __version__
from deltamem_chat.commands import bench, demo, evaluate, importing, models, replay, score, serve, train
from deltamem_chat.commands.help_style import CommandLine
from deltamem_chat.commands.options import (
    ApiKeyOpt,
    AttnOpt,
    BaseOpt,
    BatchingOpt,
    DefaultAdapterOpt,
    DeviceOpt,
    DtypeOpt,
    LanesOpt,
    MaxTokensOpt,
    PolicyOpt,
    QuantizeOpt,
    RetrievalOpt,
    SeedOpt,
    ServerOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    batching_mode,
    fail,
    lanes_named,
    loader_for,
    policy_for,
    remote_or_exit,
    resolve_or_exit,
    retrieval_from,
    settings_from,
)

app = CommandLine(
    name="deltamem-chat",
    help="See what δ-mem remembers: a frozen LLM and the same LLM with δ-mem, side by side.",
    add_completion=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"deltamem-chat {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def chat(
    ctx: typer.Context,
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
    max_new_tokens: MaxTokensOpt = 512,
    temperature: TemperatureOpt = 0.0,
    top_p: TopPOpt = 1.0,
    top_k: TopKOpt = 0,
    seed: SeedOpt = 0,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    read: Annotated[Path | None, typer.Option("--read", help="A text or Markdown file to write into the memory as "
                                              "soon as the chat opens (a document, without a reply).")] = None,
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Chat with the frozen model and its δ-mem twin side by side (when no sub-command is given)."""
    if ctx.invoked_subcommand is not None:
        return
    batched = batching_mode(batching)
    names = lanes_named(lanes)
    retrieval_from(retrieval)          # checked before anything loads
    if read is not None:
        from deltamem_chat.documents import DocumentError, read_document

        try:
            read_document(read)        # checked before the model loads; the chat reads it again when it opens
        except DocumentError as exc:
            raise fail(str(exc)) from None
    settings = settings_from(max_new_tokens, temperature, top_p, top_k, seed)
    if server is not None:
        engine, identity = remote_or_exit(server, api_key, policy_for(context) if context else None)
        from deltamem_chat.tui import run_chat_on

        info = {"models": f"{identity.base} + {identity.adapter}", "device": f"server {server}",
                "policy": str(engine.policy)}
        raise typer.Exit(run_chat_on(engine, info, identity, settings, read=read))
    models = resolve_or_exit(adapter, base)
    policy = policy_for(context, models.context)
    retrieved = retrieval_from(retrieval, models)
    from deltamem_chat.tui import run_chat

    intro = models.alias.intro_for(policy) if models.alias is not None else None
    raise typer.Exit(run_chat(loader_for(models, device, dtype, attn, quantize), policy, settings, batched, intro,
                              read, lanes=names, retrieval=retrieved, label=models.label))


bench.register(app)
importing.register(app)
models.register(app)
replay.register(app)
evaluate.register(app)
demo.register(app)
train.register(app)
score.register(app)
serve.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

