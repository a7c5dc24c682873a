"""The one app: it opens on the view it is given (the chat, a replay), and lets that view decide how to quit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App
from textual.widget import AwaitMount

from deltamem_chat.tui.frame import LanesScreen
from deltamem_chat.tui.keys import KeymapError, read_keymap


class DeltaMemApp(App[None]):
    """A `LanesScreen` view as the app's default screen; dialogs and the replay's summary go on top of it.

    `keys` is a keys file (`deltamem_chat.tui.keys`) rebinding the view's keys; None keeps the defaults.
    """

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere (the tests') find it too

    def __init__(self, view: LanesScreen[Any], keys: Path | None = None) -> None:
        super().__init__()
        self.main = view
        self.title = view.TITLE or "deltamem-chat"
        self._keys_file = keys

    def get_default_screen(self) -> LanesScreen[Any]:
        return self.main

    async def on_mount(self) -> None:
        """Keys are read once the app is mounted: by then the view has its focus (type-ahead reaches the chat's
        message line), as it had when the view was the app itself."""
        if self._keys_file is not None:
            known = {binding.id for binding in type(self.main).BINDINGS if getattr(binding, "id", None)}
            try:
                self.set_keymap(read_keymap(self._keys_file, known))  # type: ignore[arg-type]
            except KeymapError as exc:
                self.notify(f"{exc}; the default keys stay.", title="Keys not changed", severity="warning",
                            timeout=12, markup=False)
        await AwaitMount(self.main, [self.main])

    async def action_quit(self) -> None:
        """ctrl+q and the palette's Quit go through the view: the replay stops its command and writes its report."""
        self.main.action_quit()
