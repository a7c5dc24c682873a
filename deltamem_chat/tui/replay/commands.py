"""The replay's actions in the command palette (ctrl+p), offered only while they can run."""

from __future__ import annotations

from deltamem_chat.tui.commands import ChatCommands

#: (palette name, app action, help), in the order they are listed.
REPLAY_COMMANDS = (
    ("Step", "step", "Replay the next item of the transcript (n or space)"),
    ("Play / pause", "play", "Replay items one after another until the end, or pause after the current one (p)"),
    ("Jump to item", "jump", "Replay up to item N; an earlier item restarts from the beginning (j)"),
    ("Restart", "restart", "Back to the first item with empty lanes and memory (r)"),
    ("Stop generating", "cancel", "Cancel the answer being generated and stop playing (Escape)"),
    ("Summary", "summary", "Recall and F1 per lane, the memory written, the probes that differ first (s)"),
    ("Export report", "export", "Write the JSON and Markdown replay reports (e)"),
)


class ReplayCommands(ChatCommands):
    """Palette entries for the replay's key-bound actions; the search and listing are the chat's."""

    def _available(self) -> list[tuple[str, str, str]]:
        return [entry for entry in REPLAY_COMMANDS if self.app.check_action(entry[1], ())]
