"""The screens' actions in the command palette (ctrl+p), offered only while they can run.

A screen lists its entries in `PALETTE` and sets `COMMANDS = {PaletteCommands}`; the palette asks the screen it was
opened on which of them it can run now (its `check_action`), and runs them there.
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

#: A palette entry: (palette name, the screen's action, help).
PaletteEntry = tuple[str, str, str]

#: Every view's: the memory panel (the frame's).
MEMORY_PANEL: PaletteEntry = ("Memory panel", "toggle_memory",
                              "Show or hide the memory over the turns: norms per layer, β, ‖Δo‖/‖o‖, writes (ctrl+g)")

#: The chat's entries, in the order they are listed.
CHAT_COMMANDS: tuple[PaletteEntry, ...] = (
    ("Stop generating", "cancel", "Cancel the reply being generated; its text so far stays, marked cancelled"),
    ("Reset memory", "reset_memory", "Empty the δ-mem memory and its write counter; the conversation stays"),
    ("New conversation", "new_conversation", "Forget both lanes' conversations and the memory"),
    ("Save session", "save_session", "Write the conversation and the memory to a folder"),
    ("Load session", "load_session", "Replace the conversation and the memory with a saved session"),
    ("Sessions", "sessions", "The session library: every chat saved after each turn, searched, reopened (ctrl+l)"),
    ("Export conversation", "export", "Write both lanes' messages to a Markdown file"),
    ("Read a document", "read_document", "Write a text or Markdown file into the memory without a reply (ctrl+d)"),
    ("Switch context policy", "switch_policy", "full history in the prompt, or a window of recent tokens"),
    ("Toggle frozen lane", "toggle_frozen", "Pause or resume the frozen lane (δ-mem alone is faster)"),
    MEMORY_PANEL,
)


class PaletteCommands(Provider):
    """The calling screen's `PALETTE` entries that it can run now."""

    def _available(self) -> list[PaletteEntry]:
        screen = self.screen
        return [entry for entry in getattr(screen, "PALETTE", ()) if screen.check_action(entry[1], ())]

    async def discover(self) -> Hits:
        for name, action, help_text in self._available():
            yield DiscoveryHit(name, partial(self.screen.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self._available():
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), partial(self.screen.run_action, action), help=help_text)
