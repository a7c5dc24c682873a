"""`deltamem-chat serve`: the lanes behind an OpenAI-compatible HTTP API, with a memory per session."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deltamem_chat.commands.options import (
    AdapterOpt,
    AttnOpt,
    BaseOpt,
    BatchingOpt,
    DeviceOpt,
    DtypeOpt,
    LanesOpt,
    PolicyOpt,
    QuantizeOpt,
    RetrievalOpt,
    batching_mode,
    err,
    fail,
    lanes_named,
    load_or_exit,
    policy_for,
    resolve_or_exit,
    retrieval_from,
)


def register(app: typer.Typer) -> None:
    """Add the `serve` command."""

    @app.command()
    def serve(
        adapter: AdapterOpt = "qwen3-4b",
        base: BaseOpt = None,
        host: Annotated[str, typer.Option("--host", help="Address to bind; any but loopback needs an API key.")]
        = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
        api_key: Annotated[str | None, typer.Option("--api-key", envvar="DELTAMEM_API_KEY", help="Key every request "
                                                    "must send (Authorization: Bearer KEY); on a non-loopback "
                                                    "address one is generated and printed if none is given.")] = None,
        sessions_dir: Annotated[Path, typer.Option("--sessions-dir", help="Folder of the saved sessions, one "
                                                   "session folder each (the chat's format).")]
        = Path("deltamem-sessions"),
        live_sessions: Annotated[int, typer.Option("--live-sessions", min=1, help="Sessions kept in memory; the "
                                                   "least recently used beyond are dropped (they are saved).")] = 16,
        max_sessions: Annotated[int, typer.Option("--max-sessions", min=1, help="Most sessions in all.")] = 10_000,
        max_tokens: Annotated[int, typer.Option("--max-tokens-limit", min=1, help="Longest reply a request may "
                                                "ask for.")] = 4096,
        max_body: Annotated[int, typer.Option("--max-body-bytes", min=1024, help="Largest request body.")]
        = 8 * 2**20,
        context: PolicyOpt = None,
        lanes: LanesOpt = None,
        batching: BatchingOpt = "batched",
        retrieval: RetrievalOpt = None,
        device: DeviceOpt = "auto",
        dtype: DtypeOpt = "auto",
        attn: AttnOpt = "auto",
        quantize: QuantizeOpt = "none",
        cross_batch: Annotated[str, typer.Option("--cross-batch", help="on: while turns of several sessions decode "
                                                 "at once, their steps run as one batched forward (the same tokens "
                                                 "as alone); off: one session's turn at a time.")] = "on",
    ) -> None:
        """Serve the lanes (frozen and δ-mem unless --lanes says others) as OpenAI-compatible models named for
        them, with sessions."""
        from deltamem_chat.server.security import is_loopback, new_key

        batched = batching_mode(batching)
        if cross_batch not in ("on", "off"):
            raise fail(f"--cross-batch {cross_batch!r}: use on or off")
        names = lanes_named(lanes)
        retrieval_from(retrieval)          # checked before anything loads
        if sessions_dir.exists() and not sessions_dir.is_dir():
            raise fail(f"--sessions-dir {sessions_dir}: not a folder")
        api_key = api_key or None                # an empty key is no key
        if api_key is None and not is_loopback(host):
            api_key = new_key()
            err.print(f"API key (send it as Authorization: Bearer KEY): {api_key}", highlight=False, soft_wrap=True)
        models = resolve_or_exit(adapter, base)
        policy = policy_for(context, models.context)
        retrieved = retrieval_from(retrieval, models)
        loaded = load_or_exit(models, device, dtype, attn, quantize)
        import uvicorn

        from deltamem_chat.server.app import create_app
        from deltamem_chat.server.limits import ServerLimits
        from deltamem_chat.server.sessions import SessionStore

        limits = ServerLimits(max_body_bytes=max_body, max_tokens=max_tokens,
                              default_max_tokens=min(256, max_tokens), live_sessions=live_sessions,
                              max_sessions=max_sessions)
        store = SessionStore(loaded, sessions_dir, limits, policy, batched=batched, lanes=names, retrieval=retrieved,
                             cross_batch=cross_batch == "on")
        err.print(f"serving {', '.join(names)} of {loaded.base} + {loaded.adapter} ({policy}) on "
                  f"http://{host}:{port}/v1 · "
                  f"{len(store.ids)} saved sessions in {sessions_dir}", highlight=False, soft_wrap=True)
        uvicorn.run(create_app(store, api_key), host=host, port=port, log_level="warning")
