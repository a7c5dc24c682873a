"""The chat's actions in the command palette (ctrl+p), offered only while they can run."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

#: (palette name, app action, help), in the order they are listed.
CHAT_COMMANDS = (
    ("Stop generating", "cancel", "Cancel the reply being generated; its text so far stays, marked cancelled"),
    ("Reset memory", "reset_memory", "Empty the δ-mem memory and its write counter; the conversation stays"),
    ("New conversation", "new_conversation", "Forget both lanes' conversations and the memory"),
    ("Save session", "save_session", "Write the conversation and the memory to a folder"),
    ("Load session", "load_session", "Replace the conversation and the memory with a saved session"),
    ("Export conversation", "export", "Write both lanes' messages to a Markdown file"),
    ("Switch context policy", "switch_policy", "full history in the prompt, or a window of recent tokens"),
    ("Toggle frozen lane", "toggle_frozen", "Pause or resume the frozen lane (δ-mem alone is faster)"),
)


class ChatCommands(Provider):
    """Palette entries for the chat's key-bound actions."""

    def _available(self) -> list[tuple[str, str, str]]:
        return [entry for entry in CHAT_COMMANDS if self.app.check_action(entry[1], ())]

    async def discover(self) -> Hits:
        for name, action, help_text in self._available():
            yield DiscoveryHit(name, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self._available():
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), partial(self.app.run_action, action), help=help_text)
