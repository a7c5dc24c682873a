"""The replay's palette entries (see `deltamem_chat.tui.commands`)."""

from __future__ import annotations

from deltamem_chat.tui.commands import MEMORY_PANEL, PaletteEntry

#: The replay screen's entries, in the order they are listed.
REPLAY_COMMANDS: tuple[PaletteEntry, ...] = (
    ("Step", "step", "Replay the next item of the transcript (n or space)"),
    ("Play / pause", "play", "Replay items one after another until the end, or pause after the current one (p)"),
    ("Jump to item", "jump", "Replay up to item N; an earlier item restarts from the beginning (j)"),
    ("Restart", "restart", "Back to the first item with empty lanes and memory (r)"),
    ("Stop generating", "cancel", "Cancel the answer being generated and stop playing (Escape)"),
    ("Vote on the last answer", "vote", "Which lane answered the latest probe or generated turn better (f8)"),
    ("Summary", "summary", "Recall and F1 per lane, the memory written, the probes that differ first (s)"),
    ("Export report", "export", "Write the JSON and Markdown replay reports (e)"),
    MEMORY_PANEL,
)

#: The summary screen's: what it passes to the replay under it.
SUMMARY_COMMANDS = tuple(entry for entry in REPLAY_COMMANDS if entry[1] == "export")
