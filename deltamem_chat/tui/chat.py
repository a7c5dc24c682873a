"""The side-by-side chat: one message line, every lane answering each message together.

The frame (`LanesScreen`) shows the lanes, the meter and the streaming; `ChatCompare` copies, diffs and tallies the
replies; `ChatFiles` keeps the conversation (folders, the library, the export). The chat on top adds the message line
and its history, retry and edit, documents, the votes on the last turn, the context policy and pausing the frozen
lane.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from textual.binding import Binding
from textual.widget import Widget

from deltamem.context import ContextPolicy, PolicyError
from deltamem.runtime.contract import FROZEN, Engine, GenerationSettings, LaneDone, SessionIdentity, TurnDone
from deltamem_chat.documents import DocumentError, read_document
from deltamem_chat.library import SessionLibrary
from deltamem_chat.transcripts.reading import document_text
from deltamem_chat.tui.chat_files import ChatFiles
from deltamem_chat.tui.commands import CHAT_COMMANDS, PaletteEntry
from deltamem_chat.tui.frame import Job
from deltamem_chat.tui.messages import FeedItem
from deltamem_chat.tui.screens import PromptDialog
from deltamem_chat.tui.widgets import ChatInput
from deltamem_chat.tui.widgets.chat_input import placeholder

#: Actions that read or change the engine: unavailable while a turn runs.
ENGINE_ACTIONS = frozenset({"reset_memory", "new_conversation", "save_session", "load_session", "export",
                            "switch_policy", "toggle_frozen", "read_document", "regenerate", "edit_last", "vote",
                            "sessions"})

#: Actions that need a last turn to act on.
TURN_ACTIONS = frozenset({"regenerate", "edit_last", "vote"})


@dataclass
class LastTurn:
    """The latest turn, as it can be asked again: its message, its lanes, the engine's point before it and how many
    turns the memory panel had then."""

    text: str
    lanes: list[str]
    before: object
    panel_turns: int


@dataclass
class DocumentJob(Job):
    """Reading a document: what the panes say of it when it is done."""

    title: str = ""
    size: str = ""


class ChatScreen(ChatFiles):
    """A frozen LLM and the same LLM with δ-mem, side by side, answering each message together."""

    TITLE = "deltamem-chat"
    AUTO_FOCUS = "ChatInput"  # as soon as the screen is composed, before its first key
    PALETTE = CHAT_COMMANDS
    BUSY_ACTIONS = ENGINE_ACTIONS
    FAILURE_TITLE = "The turn failed"
    STATUS_CLASSES = "-clipped"
    BINDINGS = [
        # Priority: the message box binds many of these keys (ctrl+w, ctrl+e, ctrl+d) to editing. Each has an id, by
        # which a keys file rebinds it (deltamem_chat.tui.keys). The footer shows them in this order, so the ones a
        # narrow terminal must keep come first; the hidden ones are in the palette with their keys.
        Binding("ctrl+q", "quit", "quit", priority=True, id="quit"),
        Binding("escape", "cancel", "stop", id="stop"),
        Binding("ctrl+n", "new_conversation", "new", priority=True, id="new"),
        Binding("ctrl+s", "save_session", "save", priority=True, id="save"),
        Binding("ctrl+o", "load_session", "load", priority=True, id="load"),
        Binding("ctrl+f", "toggle_frozen", "frozen", priority=True, id="frozen"),
        Binding("ctrl+g", "regenerate", "retry", priority=True, id="regenerate"),
        Binding("f2", "copy_reply", "copy", priority=True, id="copy_reply"),
        Binding("f5", "toggle_diff", "diff", priority=True, id="diff"),
        Binding("f8", "vote", "vote", priority=True, id="vote"),
        Binding("ctrl+t", "edit_last", "edit last", show=False, priority=True, id="edit_last"),
        Binding("ctrl+r", "reset_memory", "reset memory", show=False, priority=True, id="reset_memory"),
        Binding("ctrl+e", "export", "export", show=False, priority=True, id="export"),
        Binding("ctrl+w", "switch_policy", "policy", show=False, priority=True, id="policy"),
        Binding("f3", "copy_replies", "copy both", show=False, priority=True, id="copy_replies"),
        Binding("f4", "copy_conversation", "copy all", show=False, priority=True, id="copy_conversation"),
        Binding("f9", "toggle_raw", "raw/Markdown", show=False, priority=True, id="raw"),
        Binding("ctrl+d", "read_document", "read a document", show=False, priority=True, id="read_document"),
        Binding("ctrl+l", "sessions", "sessions", show=False, priority=True, id="sessions"),
    ]

    def __init__(self, engine: Engine, *, title_info: Mapping[str, str], identity: SessionIdentity | None,
                 settings: GenerationSettings, intro: str | None = None, read: Path | None = None,
                 library: SessionLibrary | None = None) -> None:
        """`title_info` is shown in order in the status bar (models, device); its `policy` follows the engine's.

        Without an `identity`, saving and loading sessions are refused: nothing could check a session's model.
        `intro` is shown in every pane whenever a conversation starts empty (what the model is, what to try); `read`
        is a document read into memory as soon as the chat opens. With a `library`, the conversation is saved there
        after every turn (`autosave`) and the sessions screen (ctrl+l) lists and reopens what it holds.
        """
        # The policy first: the models' names are long, and a narrow status line ends in an ellipsis.
        super().__init__(engine, {"policy": str(engine.policy)} | dict(title_info), identity=identity,
                         library=library, intro=intro)
        self.settings = settings
        self.frozen_on = True
        self._read_on_start = read
        self.last_turn: LastTurn | None = None
        self._editing = False          # the box holds the last message, to be asked again instead of it

    def compose_controls(self) -> Iterator[Widget]:
        yield ChatInput(id="message")

    @property
    def chat_input(self) -> ChatInput:
        return self.query_one(ChatInput)

    def on_mount(self) -> None:
        self._show_conversation()
        self._show_lanes_asked()
        if self._read_on_start is not None:
            self._read(str(self._read_on_start))

    @property
    def active_lanes(self) -> list[str]:
        """The lanes a new message goes to."""
        return [name for name in self.lane_names if name != FROZEN or self.frozen_on]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in TURN_ACTIONS and self.last_turn is None:
            return None
        return super().check_action(action, parameters)

    def palette_entries(self) -> tuple[PaletteEntry, ...]:
        """The chat's entries, and a "regenerate" for each lane alone."""
        alone = tuple((f"Regenerate {title} only", f"regenerate('{name}')",
                       f"Ask the last message again in the {title} lane only; the others keep their replies")
                      for name, title in self.titles.items())
        return self.PALETTE + alone

    # ------------------------------------------------------------------------------------------ turns
    def on_chat_input_submitted(self, event: ChatInput.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.busy:
            self.notify("Still answering: wait for the replies, or press Escape to stop them.", severity="warning")
            return
        self.chat_input.remember(text)
        if self._editing and self.last_turn is not None:
            self._editing = False
            self._show_lanes_asked()
            self._ask_again(self.last_turn.lanes, text)
            return
        self.send(text)

    def send(self, text: str, lanes: list[str] | None = None, again: LastTurn | None = None) -> None:
        """Send a message to every active lane (or to `lanes`) and start streaming their replies; `again` is the
        turn this one asks again (its lanes and its point before)."""
        lanes = self.active_lanes if lanes is None else lanes
        self.last_turn = again or LastTurn(text, lanes, self.engine.checkpoint(), len(self.memory_panel.trace.points))
        panes = self.panes
        for name in lanes:
            panes[name].add_user(text)
            panes[name].start_reply()
        if self.METER_LANE in lanes:
            # Every generated token will be written; the prompt's writes are counted when the turn ends.
            self.show_budget(self.written, 0, estimated=True)
        self.start(Job(self.written, label=text), partial(self._turn, text, lanes))

    def action_regenerate(self, lane: str | None = None) -> None:
        """Ask the last message again: every lane of the turn, or `lane` alone (the others keep their replies)."""
        if self.last_turn is None:
            return
        if lane is not None and lane not in self.last_turn.lanes:
            self.notify(f"The {self.titles.get(lane, lane)} lane did not answer the last message.",
                        severity="warning")
            return
        self._ask_again([lane] if lane is not None else self.last_turn.lanes, self.last_turn.text)

    def action_edit_last(self) -> None:
        """Put the last message in the box; Enter then asks the edited one in its place."""
        if self.last_turn is None:
            return
        self._editing = True
        self.chat_input.value = self.last_turn.text
        self.chat_input.placeholder = "Edit the last message · Enter asks it again in its place"
        self.chat_input.focus()
        self.notify("Editing the last message: Enter asks it again in its place (its replies are replaced).")

    def _ask_again(self, lanes: list[str], text: str) -> None:
        """Roll every lane back to before the last turn (memory, cache and counters exactly), then ask `text` in
        `lanes`; a lane of the turn that is not asked again gets its message and reply back as they were."""
        assert self.last_turn is not None
        turn = self.last_turn
        kept = {name: self.engine.lane(name).messages[-2:] for name in turn.lanes if name not in lanes}
        self.engine.rollback(turn.before)
        before = self.engine.checkpoint()  # the same point, open again for the next retry
        panel = self.memory_panel
        panel.restore(panel.trace.points[:turn.panel_turns])   # the memory's turns as they were before it, too
        self.votes.cast.pop(self._turn_number() + 1, None)
        self._show_votes()
        panes = self.panes
        for name in turn.lanes:
            if name in lanes:
                panes[name].drop_last_turn()
        for name, messages in kept.items():
            for message in messages:
                self.engine.add_message(message["role"], message["content"], [name])
        self.written = self.engine_written()
        self.send(text, lanes, LastTurn(text, turn.lanes, before, turn.panel_turns))

    def _turn(self, text: str, lanes: list[str], job: Job) -> None:
        """On the worker thread: the engine's events, as they come (first, what kept lanes got back is read)."""
        kept = [name for name in self.last_turn.lanes if name not in lanes] if self.last_turn else []
        if kept:
            self.feed.put(self.engine.ingest(kept))
        for event in self.engine.turn(text, self.settings, lanes=lanes, cancel=job.cancel):
            self.feed.put(event)

    def apply(self, job: Job, item: FeedItem) -> None:
        if isinstance(item, LaneDone):
            self.panes[item.lane].finish_reply(item.stats, text=item.text)
        elif isinstance(item, TurnDone) and not isinstance(job, DocumentJob) and self.diff_on:
            self._mark_diff()
        elif isinstance(item, TurnDone) and isinstance(job, DocumentJob):
            for name, stats in item.stats.items():
                read = f"{stats.long_read:,} of {stats.long_total:,} tokens read into memory" if stats.long_total \
                    else f"{stats.written:,} tokens written"
                stopped = " (stopped: the rest was not read)" if stats.long_read < stats.long_total else ""
                self.panes[name].add_note(f"document {job.title} · {job.size} · {read}{stopped}")

    # ------------------------------------------------------------------------------------------ documents
    def action_read_document(self) -> None:
        self.app.push_screen(PromptDialog("Read a document", "Text or Markdown file to write into the memory (the "
                                          "frozen lane sees what the window gives it):", ""), self._read)

    def _read(self, path: str | None) -> None:
        if path is None:
            return
        try:
            document = read_document(path)
        except DocumentError as exc:
            self.report_error("Could not read the document", exc)
            return
        lanes = [name for name in self.lane_names if name != FROZEN or self.frozen_on]
        for name in lanes:
            self.panes[name].add_user(document_text(document.title, document.text))
        self.start(DocumentJob(self.written, label=f"document {document.title}", title=document.title,
                               size=document.size),
                   partial(self._read_into_memory, document_text(document.title, document.text), lanes))

    def _read_into_memory(self, text: str, lanes: list[str], job: Job) -> None:
        """On the worker thread: the document as a message without a reply, read (long ones in chunks)."""
        self.engine.add_message("user", text, lanes)
        for event in self.engine.read(lanes, job.cancel):
            self.feed.put(event)

    def job_failed(self, job: Job) -> None:
        """The meter as the engine's cleanup left it."""
        written = self.engine_written()
        self.show_budget(written, written - job.written_before)

    def job_ended(self, job: Job) -> None:
        self.unsaved = True
        self.autosave()

    # ------------------------------------------------------------------------------------------ memory
    def _show_conversation(self) -> None:
        self.last_turn, self._editing = None, False
        super()._show_conversation()

    def action_reset_memory(self) -> None:
        self.engine.reset_memory()
        self.last_turn = None  # a retry would bring the memory back
        panes = self.panes
        for name in self.lane_names:
            if self.engine.lane(name).memory:
                panes[name].add_note(f"memory reset: {self.titles[name]} continues from an empty state")
        self.show_budget(0, 0, {})
        self.notify("Memory reset: the conversation stays, the memory is empty.")

    def action_new_conversation(self) -> None:
        self._unless_unsaved("New conversation", self._new_conversation)

    def _new_conversation(self) -> None:
        self.engine.reset()
        self.session_id = None
        self.votes.cast, self.unsaved = {}, False
        self._show_conversation()
        self.notify("New conversation.")

    def action_quit(self) -> None:
        self._unless_unsaved("Quit", self.app.exit)

    # ------------------------------------------------------------------------------------------ votes
    def action_vote(self) -> None:
        if self.last_turn is None:
            return
        turn, lanes = self._turn_number(), self.last_turn.lanes

        def voted(choice: str) -> None:
            self.unsaved = True
            self._show_votes()
            panes = self.panes
            self.votes.mark(turn, ((panes[name], None) for name in lanes))
            self.autosave()
            self.notify(f"Turn {turn}: {self.votes.labels[choice]}.")

        self.votes.ask(self, turn, f"turn {turn}", voted)

    # ------------------------------------------------------------------------------------------ settings
    def action_switch_policy(self) -> None:
        question = ('"full": the whole history in both prompts; "window:N": only the newest N tokens, '
                    "so what δ-mem recalls beyond them comes from its memory.")
        self.app.push_screen(PromptDialog("Context policy", question, str(self.engine.policy)), self._set_policy)

    def _set_policy(self, text: str | None) -> None:
        if text is None:
            return
        try:
            policy = ContextPolicy.parse(text)
        except PolicyError as exc:
            self.report_error("Policy unchanged", exc)
            return
        self.engine.set_policy(policy)
        self.status.set_info("policy", str(policy))
        self.notify(f"Context policy: {policy}")

    def action_toggle_frozen(self) -> None:
        if FROZEN not in self.lane_names:
            return
        self.frozen_on = not self.frozen_on
        self.panes[FROZEN].set_paused(not self.frozen_on)
        self.status.set_paused(FROZEN, not self.frozen_on)
        self._show_lanes_asked()
        self.notify("Frozen lane on." if self.frozen_on else "Frozen lane paused: δ-mem answers alone.")

    def _show_lanes_asked(self) -> None:
        """The box's placeholder says which lanes a message goes to."""
        active = self.active_lanes
        self.chat_input.placeholder = placeholder([self.titles[name] for name in active],
                                                  [title for name, title in self.titles.items() if name not in active])
