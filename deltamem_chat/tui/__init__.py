"""The terminal views: one app (`DeltaMemApp`) opening on the chat (`run_chat`) or a replay (`run_replay`), both
built on one frame (`LanesScreen`: the lanes, the meter, the engine's worker); the widgets are reusable.

Nothing here imports torch: the app starts at once, on its loading screen, and the model loads behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from deltamem.context import ContextPolicy
from deltamem.retrieval import RetrievalSettings
from deltamem.runtime.contract import LANE_HAS, LANE_NAMES, LANE_TITLES, Engine, GenerationSettings, SessionIdentity
from deltamem.runtime.progress import LoadStep
from deltamem_chat.library import SessionLibrary
from deltamem_chat.tui.app import DeltaMemApp, run_app
from deltamem_chat.tui.chat import ChatScreen
from deltamem_chat.tui.frame import Job, LanesScreen
from deltamem_chat.tui.loading import LoadingScreen, Ready
from deltamem_chat.tui.replay import ReplayScreen, run_replay, run_replay_after
from deltamem_chat.tui.widgets import BudgetMeter, LanePane

if TYPE_CHECKING:
    from deltamem.runtime.loading import LoadedModel
    from deltamem.runtime.progress import Progress

__all__ = ["BudgetMeter", "ChatScreen", "DeltaMemApp", "Job", "LanePane", "LanesScreen", "LoadingScreen", "Ready",
           "ReplayScreen", "panes_intro", "run_chat", "run_chat_on", "run_replay", "run_replay_after"]


def panes_intro(lanes: tuple[str, ...]) -> str:
    """What each pane has, one line per lane, for the chat's introduction."""
    return "\n".join(f"{LANE_TITLES[name]}: {LANE_HAS[name]}." for name in lanes)


def run_chat(load: Callable[[Progress], LoadedModel], policy: ContextPolicy, settings: GenerationSettings,
             batched: bool = True, intro: str | None = None, read: Path | None = None, *,
             lanes: tuple[str, ...] = LANE_NAMES, retrieval: RetrievalSettings | None = None,
             label: str = "the model") -> int:
    """Open the side-by-side chat on the model `load` loads (on the loading screen, `label` naming it), with
    `intro` shown whenever a conversation starts empty, after what each pane has, and `read` a document read into
    memory at once; the conversation is autosaved into the session library after every turn; returns the process
    exit code."""
    intro = "\n\n".join(part for part in (panes_intro(lanes), intro) if part)

    def prepare(progress: Progress) -> Ready:
        progress(LoadStep("starting the runtime", "torch and transformers"))
        from deltamem.runtime.engine import ABEngine

        loaded = load(progress)
        engine = ABEngine(loaded.model, loaded.tokenizer, policy=policy, batched=batched, lanes=lanes,
                          retrieval=retrieval)
        info = {"models": f"{loaded.base} + {loaded.adapter}", "device": loaded.choice.describe(),
                "policy": str(policy)}
        return Ready(partial(chat_screen, engine, info, SessionIdentity(loaded.base, loaded.adapter), settings,
                             intro, read), loaded.notes)

    return run_app(LoadingScreen(prepare, ChatScreen.TITLE, label))


def chat_screen(engine: Engine, info: dict[str, str], identity: SessionIdentity, settings: GenerationSettings,
                intro: str | None = None, read: Path | None = None) -> ChatScreen:
    """The chat on an engine, its conversations kept in the session library."""
    return ChatScreen(engine, title_info=info, identity=identity, settings=settings, intro=intro, read=read,
                      library=SessionLibrary())


def run_chat_on(engine: Engine, info: dict[str, str], identity: SessionIdentity, settings: GenerationSettings,
                intro: str | None = None, read: Path | None = None) -> int:
    """Open the side-by-side chat on an engine that is ready (a server's session)."""
    return run_app(chat_screen(engine, info, identity, settings, intro, read))
