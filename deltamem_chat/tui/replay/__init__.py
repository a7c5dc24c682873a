"""The replay screen: `run_replay` opens a `ReplayRunner` in the terminal, its lanes side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deltamem.runtime.contract import SessionIdentity
from deltamem_chat.replay import ReplayRunner
from deltamem_chat.tui.app import DeltaMemApp
from deltamem_chat.tui.keys import keymap_path
from deltamem_chat.tui.replay.screen import ReplayScreen
from deltamem_chat.tui.replay.summary import SummaryScreen, SummaryView

__all__ = ["ReplayScreen", "SummaryScreen", "SummaryView", "run_replay"]


def run_replay(runner: ReplayRunner, config: dict[str, Any], *, identity: SessionIdentity,
               report_path: Path | None, markdown_path: Path | None) -> int:
    """Open the replay screen; returns the exit code (1 when it crashed, or quit without its requested report)."""
    app = DeltaMemApp(ReplayScreen(runner, config, identity=identity, report_path=report_path,
                                   markdown_path=markdown_path), keys=keymap_path())
    app.run()
    return app.return_code or 0
