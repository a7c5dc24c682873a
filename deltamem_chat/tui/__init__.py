"""The terminal views: one app (`DeltaMemApp`) opening on the chat (`run_chat`) or a replay (`run_replay`), both
built on one frame (`LanesScreen`: the lanes, the meter, the engine's worker); the widgets are reusable."""

from __future__ import annotations

from pathlib import Path

from deltamem.context import ContextPolicy
from deltamem.retrieval import RetrievalSettings
from deltamem.runtime.contract import LANE_HAS, LANE_NAMES, LANE_TITLES, Engine, GenerationSettings, SessionIdentity
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel
from deltamem_chat.library import SessionLibrary
from deltamem_chat.tui.app import DeltaMemApp
from deltamem_chat.tui.chat import ChatScreen
from deltamem_chat.tui.frame import Job, LanesScreen
from deltamem_chat.tui.replay import ReplayScreen, run_replay
from deltamem_chat.tui.widgets import BudgetMeter, LanePane

__all__ = ["BudgetMeter", "ChatScreen", "DeltaMemApp", "Job", "LanePane", "LanesScreen", "ReplayScreen", "panes_intro",
           "run_chat", "run_chat_on", "run_replay"]


def panes_intro(lanes: tuple[str, ...]) -> str:
    """What each pane has, one line per lane, for the chat's introduction."""
    return "\n".join(f"{LANE_TITLES[name]}: {LANE_HAS[name]}." for name in lanes)


def run_chat(loaded: LoadedModel, policy: ContextPolicy, settings: GenerationSettings, batched: bool = True,
             intro: str | None = None, read: Path | None = None, *, lanes: tuple[str, ...] = LANE_NAMES,
             retrieval: RetrievalSettings | None = None) -> int:
    """Open the side-by-side chat on a loaded model (`intro` shown whenever a conversation starts empty, after what
    each pane has; `read` a document read into memory at once); the conversation is autosaved into the session
    library after every turn; returns the process exit code."""
    engine = ABEngine(loaded.model, loaded.tokenizer, policy=policy, batched=batched, lanes=lanes,
                      retrieval=retrieval)
    intro = "\n\n".join(part for part in (panes_intro(lanes), intro) if part)
    info = {"models": f"{loaded.base} + {loaded.adapter}", "device": loaded.choice.describe(), "policy": str(policy)}
    return run_chat_on(engine, info, SessionIdentity(loaded.base, loaded.adapter), settings, intro, read)


def run_chat_on(engine: Engine, info: dict[str, str], identity: SessionIdentity, settings: GenerationSettings,
                intro: str | None = None, read: Path | None = None) -> int:
    """Open the side-by-side chat on an engine (a local one, or a server's session)."""
    app = DeltaMemApp(ChatScreen(engine, title_info=info, identity=identity, settings=settings, intro=intro,
                                 read=read, library=SessionLibrary()))
    app.run()
    return app.return_code or 0
