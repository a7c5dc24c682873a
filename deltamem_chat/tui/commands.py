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
                              "Show or hide the memory over the turns: norms per layer, β, ‖Δo‖/‖o‖, writes (f7)")

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
    ("Regenerate the last turn", "regenerate", "Ask the last message again; the memory is rolled back first"),
    ("Edit the last message", "edit_last", "Put it in the box; Enter asks the edited message in its place"),
    ("Copy the reply", "copy_reply", "The focused pane's last reply (else δ-mem's), to the clipboard"),
    ("Copy both replies", "copy_replies", "Every lane's last reply, to the clipboard"),
    ("Copy the conversation", "copy_conversation", "The whole conversation as Markdown, to the clipboard"),
    ("Toggle diff", "toggle_diff", "Mark the words each lane said and the other did not"),
    ("Toggle raw text", "toggle_raw", "Replies as raw text, or as Markdown"),
    ("Vote on the last turn", "vote", "Which lane answered better: kept in the session and the export"),
)


class PaletteCommands(Provider):
    """The calling screen's palette entries that it can run now, each with the key that runs it (as rebound)."""

    def _available(self) -> list[PaletteEntry]:
        screen = self.screen
        entries = screen.palette_entries() if hasattr(screen, "palette_entries") else ()
        keys = {active.binding.action: self.app.get_key_display(active.binding)
                for active in screen.active_bindings.values()}
        shown = []
        for name, action, help_text in entries:
            if screen.check_action(action.partition("(")[0], ()):
                key = keys.get(action)
                shown.append((name, action, f"{help_text} ({key})" if key else help_text))
        return shown

    async def discover(self) -> Hits:
        for name, action, help_text in self._available():
            yield DiscoveryHit(name, partial(self.screen.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self._available():
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), partial(self.screen.run_action, action), help=help_text)
