"""The replay screen: `run_replay` opens a `ReplayRunner` in the terminal, its lanes side by side; `run_replay_after`
opens it once the model has loaded on the loading screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deltamem.runtime.contract import SessionIdentity
from deltamem_chat.replay import ReplayRunner
from deltamem_chat.tui.app import run_app
from deltamem_chat.tui.keys import keymap_path
from deltamem_chat.tui.loading import LoadingScreen, Prepare
from deltamem_chat.tui.replay.screen import ReplayScreen
from deltamem_chat.tui.replay.summary import SummaryScreen, SummaryView

__all__ = ["ReplayScreen", "SummaryScreen", "SummaryView", "run_replay", "run_replay_after"]


def run_replay(runner: ReplayRunner, config: dict[str, Any], *, identity: SessionIdentity,
               report_path: Path | None, markdown_path: Path | None) -> int:
    """Open the replay screen; returns the exit code (1 when it crashed, or quit without its requested report)."""
    return run_app(ReplayScreen(runner, config, identity=identity, report_path=report_path,
                                markdown_path=markdown_path), keys=keymap_path())


def run_replay_after(prepare: Prepare, label: str) -> int:
    """Open the loading screen, then the replay screen that `prepare` makes once the model is loaded."""
    return run_app(LoadingScreen(prepare, ReplayScreen.TITLE, label), keys=keymap_path())
