"""The one app: it opens on the view it is given (the chat, a replay), and lets that view decide how to quit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App
from textual.widget import AwaitMount

from deltamem_chat.tui.frame import LanesScreen


class DeltaMemApp(App[None]):
    """A `LanesScreen` view as the app's default screen; dialogs and the replay's summary go on top of it."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere (the tests') find it too

    def __init__(self, view: LanesScreen[Any]) -> None:
        super().__init__()
        self.main = view
        self.title = view.TITLE or "deltamem-chat"

    def get_default_screen(self) -> LanesScreen[Any]:
        return self.main

    async def on_mount(self) -> None:
        """Keys are read once the app is mounted: by then the view has its focus (type-ahead reaches the chat's
        message line), as it had when the view was the app itself."""
        await AwaitMount(self.main, [self.main])

    async def action_quit(self) -> None:
        """ctrl+q and the palette's Quit go through the view: the replay stops its command and writes its report."""
        self.main.action_quit()
