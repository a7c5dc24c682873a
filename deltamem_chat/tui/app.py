"""The one app: it opens on the view it is given (the chat, a replay), or on the loading screen that makes the view,
and lets that view decide how to quit."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.app import App
from textual.screen import Screen
from textual.widget import AwaitMount

from deltamem_chat.tui.frame import LanesScreen
from deltamem_chat.tui.keys import KeymapError, read_keymap
from deltamem_chat.tui.loading import LoadingScreen


class DeltaMemApp(App[None]):
    """A `LanesScreen` view as the app's default screen (or a `LoadingScreen` until it has made the view); dialogs
    and the replay's summary go on top of it.

    `keys` is a keys file (`deltamem_chat.tui.keys`) rebinding the view's keys; None keeps the defaults.
    """

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere (the tests') find it too

    def __init__(self, first: LanesScreen[Any] | LoadingScreen, keys: Path | None = None) -> None:
        super().__init__()
        self.first = first
        #: The view, once there is one (at once, or when loading has made it).
        self.main: LanesScreen[Any] | None = first if isinstance(first, LanesScreen) else None
        self.title = (first.view_title if isinstance(first, LoadingScreen) else first.TITLE) or "deltamem-chat"
        self._keys_file = keys

    def get_default_screen(self) -> Screen[Any]:
        return self.main if self.main is not None else super().get_default_screen()

    async def on_mount(self) -> None:
        """Keys are read once the app is mounted: by then the view has its focus (type-ahead reaches the chat's
        message line), as it had when the view was the app itself. A loading screen goes on top of the blank
        default screen, so that the view can replace it (the default screen itself cannot be switched)."""
        if self.main is None:
            await self.push_screen(self.first)
            return
        self._read_keys(self.main)
        await AwaitMount(self.main, [self.main])

    async def on_loading_screen_loaded(self, message: LoadingScreen.Loaded) -> None:
        await self.open_view(message.ready.view(), message.ready.notes)

    async def open_view(self, view: LanesScreen[Any], notes: Iterable[str] = ()) -> None:
        """The view in place of the loading screen, with the loader's notes (an adapter converted to another
        dtype) as notifications."""
        self.main = view
        self.title = view.TITLE or "deltamem-chat"
        await self.switch_screen(view)
        self._read_keys(view)
        for note in notes:
            self.notify(note, title="Note", severity="warning", timeout=12, markup=False)

    def _read_keys(self, view: LanesScreen[Any]) -> None:
        if self._keys_file is None:
            return
        known = {binding.id for binding in type(view).BINDINGS if getattr(binding, "id", None)}
        try:
            self.set_keymap(read_keymap(self._keys_file, known))  # type: ignore[arg-type]
        except KeymapError as exc:
            self.notify(f"{exc}; the default keys stay.", title="Keys not changed", severity="warning",
                        timeout=12, markup=False)

    async def action_quit(self) -> None:
        """ctrl+q and the palette's Quit go through the view: the replay stops its command and writes its report
        (while loading, the loading screen quits)."""
        (self.main or self.first).action_quit()


def run_app(first: LanesScreen[Any] | LoadingScreen, keys: Path | None = None) -> int:
    """Run the app on its first screen; returns the process exit code."""
    app = DeltaMemApp(first, keys)
    app.run()
    return app.return_code or 0
