"""The terminal views: one app (`DeltaMemApp`) opening on the chat (`run_chat`) or a replay (`run_replay`), both
built on one frame (`LanesScreen`: the lanes, the meter, the engine's worker); the widgets are reusable."""

from __future__ import annotations

from pathlib import Path

from deltamem.context import ContextPolicy
from deltamem.runtime.contract import Engine, GenerationSettings, SessionIdentity
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel
from deltamem_chat.library import SessionLibrary
from deltamem_chat.tui.app import DeltaMemApp
from deltamem_chat.tui.chat import ChatScreen
from deltamem_chat.tui.frame import Job, LanesScreen
from deltamem_chat.tui.replay import ReplayScreen, run_replay
from deltamem_chat.tui.widgets import BudgetMeter, LanePane

__all__ = ["BudgetMeter", "ChatScreen", "DeltaMemApp", "Job", "LanePane", "LanesScreen", "ReplayScreen", "run_chat",
           "run_chat_on", "run_replay"]


def run_chat(loaded: LoadedModel, policy: ContextPolicy, settings: GenerationSettings, batched: bool = True,
             intro: str | None = None, read: Path | None = None) -> int:
    """Open the side-by-side chat on a loaded model (`intro` shown whenever a conversation starts empty, `read` a
    document read into memory at once); the conversation is autosaved into the session library after every turn;
    returns the process exit code."""
    engine = ABEngine(loaded.model, loaded.tokenizer, policy=policy, batched=batched)
    info = {"models": f"{loaded.base} + {loaded.adapter}", "device": loaded.choice.describe(), "policy": str(policy)}
    return run_chat_on(engine, info, SessionIdentity(loaded.base, loaded.adapter), settings, intro, read)


def run_chat_on(engine: Engine, info: dict[str, str], identity: SessionIdentity, settings: GenerationSettings,
                intro: str | None = None, read: Path | None = None) -> int:
    """Open the side-by-side chat on an engine (a local one, or a server's session)."""
    app = DeltaMemApp(ChatScreen(engine, title_info=info, identity=identity, settings=settings, intro=intro,
                                 read=read, library=SessionLibrary()))
    app.run()
    return app.return_code or 0
