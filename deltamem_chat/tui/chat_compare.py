"""What the chat offers to compare its lanes' replies: copy (OSC 52), raw text or Markdown, the word diff, and the
votes' tally; the layer of the chat between the frame and its sessions."""

from __future__ import annotations

from collections.abc import Mapping

from deltamem.runtime.contract import Engine
from deltamem_chat.tui.diff import word_diff
from deltamem_chat.tui.export import conversation_markdown
from deltamem_chat.tui.frame import Job, LanesScreen
from deltamem_chat.tui.votes import TurnVotes


class ChatCompare(LanesScreen[Job]):
    """The lanes' replies side by side, copied, diffed and voted on."""

    def __init__(self, engine: Engine, info: Mapping[str, str]) -> None:
        super().__init__(engine, info)
        self.diff_on = False
        self.votes = TurnVotes(self.titles)

    def _focused_lane(self) -> str:
        """The lane whose pane holds the focus, else the meter's lane (the one with memory)."""
        for name, pane in self.panes.items():
            if pane.has_focus_within:
                return name
        return self.METER_LANE if self.METER_LANE in self.lane_names else self.lane_names[-1]

    def _copy(self, text: str, what: str) -> None:
        if not text:
            self.notify(f"Nothing to copy: {what} is empty.", severity="warning")
            return
        self.app.copy_to_clipboard(text)  # OSC 52: the terminal puts it on the clipboard, also over ssh
        self.notify(f"Copied {what} ({len(text):,} characters).")

    def action_copy_reply(self) -> None:
        lane = self._focused_lane()
        self._copy(self.panes[lane].last_reply, f"the {self.titles[lane]} reply")

    def action_copy_replies(self) -> None:
        replies = [f"## {self.titles[name]}\n\n{pane.last_reply}" for name, pane in self.panes.items()
                   if pane.last_reply]
        self._copy("\n\n".join(replies), "the last replies")

    def action_copy_conversation(self) -> None:
        lanes = {name: self.engine.lane(name) for name in self.lane_names}
        self._copy(conversation_markdown(lanes, self.titles, self.status.info, self.votes.labelled()),
                   "the conversation")

    # ------------------------------------------------------------------------------------------ compare
    def action_toggle_raw(self) -> None:
        raw = not next(iter(self.panes.values())).raw
        for pane in self.panes.values():
            pane.set_raw(raw)
        self.notify("Replies as raw text." if raw else "Replies as Markdown.")

    def action_toggle_diff(self) -> None:
        self.diff_on = not self.diff_on
        if self.diff_on:
            self._mark_diff()
        else:
            for pane in self.panes.values():
                pane.clear_marks()
        self.notify("Diff on: the words one lane said and the other did not are marked." if self.diff_on
                    else "Diff off.")

    def _mark_diff(self) -> None:
        """Mark, in each lane's latest reply, the words its neighbour's latest reply lacks."""
        panes = self.panes
        names = [name for name in self.lane_names if panes[name].last_reply]
        for index, name in enumerate(names):
            other = names[index - 1] if index else names[1] if len(names) > 1 else None
            marks = word_diff(panes[name].last_reply, panes[other].last_reply)[0] if other else []
            panes[name].mark_last(marks)

    def _turn_number(self) -> int:
        """How many turns the conversation has (the most replies any lane holds)."""
        return max(sum(m["role"] == "assistant" for m in self.engine.lane(name).messages)
                   for name in self.lane_names)

    def _show_votes(self) -> None:
        self.status.set_note(self.votes.note())
