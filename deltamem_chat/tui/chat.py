"""The side-by-side chat: one message line, every lane answering each message together, sessions and an export.

The frame (`LanesScreen`) shows the lanes, the meter and the streaming; the chat adds the message line and its
history, the intro, saving, loading and exporting, the context policy and pausing the frozen lane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from textual.binding import Binding
from textual.widget import Widget

from deltamem.context import ContextPolicy, PolicyError
from deltamem.files import atomic_write_text
from deltamem.runtime.contract import FROZEN, Engine, GenerationSettings, LaneDone, SessionIdentity, TurnDone
from deltamem_chat.documents import DocumentError, read_document
from deltamem_chat.library import SessionLibrary
from deltamem_chat.memory_trace import TraceError, points_from_saved, points_to_saved
from deltamem_chat.text import stamp
from deltamem_chat.transcripts.reading import document_text
from deltamem_chat.tui.commands import CHAT_COMMANDS, PaletteEntry
from deltamem_chat.tui.diff import word_diff
from deltamem_chat.tui.export import conversation_markdown
from deltamem_chat.tui.frame import Job, LanesScreen
from deltamem_chat.tui.messages import FeedItem
from deltamem_chat.tui.screens import ConfirmDialog, PromptDialog, SessionsScreen
from deltamem_chat.tui.votes import TurnVotes
from deltamem_chat.tui.widgets import ChatInput
from deltamem_chat.tui.widgets.chat_input import placeholder
from deltamem_chat.votes import VoteError, from_saved, to_saved

#: Actions that read or change the engine: unavailable while a turn runs.
ENGINE_ACTIONS = frozenset({"reset_memory", "new_conversation", "save_session", "load_session", "export",
                            "switch_policy", "toggle_frozen", "read_document", "regenerate", "edit_last", "vote",
                            "sessions"})

#: The key of a saved session's `extra` that holds the memory panel's turns.
MEMORY_PANEL = "memory_panel"

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


class ChatScreen(LanesScreen[Job]):
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
        super().__init__(engine, {"policy": str(engine.policy)} | dict(title_info))
        self.identity = identity
        self.settings = settings
        self.intro = intro
        self.frozen_on = True
        self._last_session: Path | None = None
        self._read_on_start = read
        self.library = library
        self.session_id: str | None = None   # the library session this conversation is autosaved as

        self.last_turn: LastTurn | None = None
        self._editing = False          # the box holds the last message, to be asked again instead of it
        self.unsaved = False           # a turn since the last save, load or new conversation
        self.diff_on = False
        self.votes = TurnVotes(self.titles)

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
        """Redraw the panes and the meter from the engine (at start, after a load or a reset)."""
        self.last_turn, self._editing = None, False
        turns = self._turn_number()
        for name, pane in self.panes.items():
            messages = self.engine.lane(name).messages
            pane.clear()
            if self.intro and not messages:
                pane.add_note(self.intro)
            replies = []
            for message in messages:
                if message["role"] == "user":
                    pane.add_user(message["content"])
                elif message["role"] == "assistant":
                    pane.add_assistant(message["content"])
                    replies.append(pane.latest)
            if len(replies) == turns:   # in a lane that missed turns, a reply's number is not its turn's
                for turn in sorted(turn for turn in self.votes.cast if turn <= turns):
                    self.votes.mark(turn, [(pane, replies[turn - 1])])
        status = self.status
        for name in self.lane_names:
            status.set_lane(name, None)
        status.set_info("policy", str(self.engine.policy))
        self._show_votes()
        self.show_budget(self.engine_written(), 0, {})
        self.memory_panel.clear()

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

    def _unless_unsaved(self, title: str, then: Callable[[], object]) -> None:
        """Run `then` at once, or after a yes when the conversation has turns that were never saved."""
        if not self.unsaved:
            then()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmDialog(title, "This conversation has not been saved (ctrl+s saves it): drop "
                                           "it?", yes="Drop it"), answered)

    # ------------------------------------------------------------------------------------------ files
    def _needs_identity(self) -> bool:
        if self.identity is None:
            self.notify("Sessions are unavailable: this chat was started without a model identity to check them "
                        "against.", severity="warning")
        return self.identity is None

    def action_save_session(self) -> None:
        if not self._needs_identity():
            self.app.push_screen(PromptDialog("Save session", "Folder for the conversation and the memory:",
                                              f"sessions/{stamp()}"), self._save)

    def _save(self, folder: str | None) -> None:
        if folder is None or self.identity is None:
            return
        try:
            path = self.engine.save(Path(folder).expanduser(), self.identity, self._extra())
        except Exception as exc:  # disk full, permissions, a file where the folder should be
            self.report_error("Could not save the session", exc)
            return
        self._last_session, self.unsaved = path, False
        self.notify(f"Saved to {path}", markup=False)

    def action_load_session(self) -> None:
        if not self._needs_identity():
            default = str(self._last_session) if self._last_session else "sessions/"
            self.app.push_screen(PromptDialog("Load session", "Session folder to load:", default), self._load)

    def _load(self, folder: str | None) -> None:
        if folder is None or self.identity is None:
            return
        before = self.engine.policy
        try:
            extra = self.engine.load(Path(folder).expanduser(), self.identity)
        except Exception as exc:  # SessionError says which file and field; anything else is shown as it is
            self.report_error("Could not load the session", exc)
            return
        self._last_session, self.unsaved = Path(folder), False
        self.session_id = None
        self._show_opened(extra)
        self.notify(f"Loaded {folder}", markup=False)
        if self.engine.policy != before:
            self.notify(f"The session's context policy {self.engine.policy} replaces {before} (ctrl+w changes it).",
                        title="Context policy changed", severity="warning", timeout=10)

    # ------------------------------------------------------------------------------------------ library
    def autosave(self) -> None:
        """Save the conversation into the library after a turn (atomic: a crash loses at most the next turn)."""
        if self.library is None or self.identity is None:
            return
        if not any(self.engine.lane(name).messages for name in self.lane_names):
            return
        try:
            self.session_id = self.library.save(self.engine, self.identity, self.session_id,
                                                extra=self._extra()).session_id
            self.unsaved = False
        except Exception as exc:  # a full disk, a folder that cannot be written: the chat goes on unsaved
            self.report_error("Could not autosave the conversation", exc)

    def action_sessions(self) -> None:
        if self.library is None:
            self.notify("The session library is off in this chat.", severity="warning")
        elif not self._needs_identity():
            self.app.push_screen(SessionsScreen(self.library, self.session_id), self._reopen)

    def _reopen(self, session_id: str | None) -> None:
        if session_id is None or self.library is None or self.identity is None or session_id == self.session_id:
            return
        try:
            extra = self.library.open(session_id, self.engine, self.identity)
        except Exception as exc:  # SessionError or LibraryError say which file and why
            self.report_error("Could not reopen the session", exc)
            return
        self.session_id, self.unsaved = session_id, False
        self._show_opened(extra)
        self.notify("Reopened the session: its conversation and memory are back.")

    def _extra(self) -> dict[str, object]:
        """What a saved session keeps beyond the engine's state: the votes and the memory panel's turns."""
        return {"votes": to_saved(self.votes.cast), MEMORY_PANEL: points_to_saved(self.memory_panel.trace.points)}

    def _show_opened(self, extra: Mapping[str, object]) -> None:
        """Show a session just loaded, with its votes and its memory panel's turns (a part that cannot be read is
        left out, and said so)."""
        self.votes.cast = {}
        try:
            self.votes.cast = from_saved(extra.get("votes"), self.votes.labels)
        except VoteError as exc:
            self.report_error("The session's votes were not read", exc)
        self._show_conversation()
        try:
            points = points_from_saved(extra.get(MEMORY_PANEL))
        except TraceError as exc:
            self.report_error("The session's memory panel was not read", exc)
            return
        self.memory_panel.restore(points)
        if points:   # the meter's diagnostics line too, as the last turn left it
            self.show_budget(self.engine_written(), 0, points[-1].diagnostics)

    def action_export(self) -> None:
        self.app.push_screen(PromptDialog("Export conversation", "Markdown file for both lanes' messages:",
                                          f"deltamem-chat-{stamp()}.md"), self._ask_overwrite)

    def _ask_overwrite(self, file: str | None) -> None:
        if file is None:
            return
        path = Path(file).expanduser()
        if not path.exists():
            self._export(path)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._export(path)

        self.app.push_screen(ConfirmDialog("Export conversation", f"{path} exists: replace it?", yes="Replace"),
                             answered)

    def _export(self, path: Path) -> None:
        lanes = {name: self.engine.lane(name) for name in self.lane_names}
        try:
            atomic_write_text(path, conversation_markdown(lanes, self.titles, self.status.info,
                                                          self.votes.labelled()))
        except OSError as exc:  # SaveError: the folder cannot be made, the disk is full
            self.report_error("Could not export", exc)
            return
        self.notify(f"Exported to {path}", markup=False)

    # ------------------------------------------------------------------------------------------ copy
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

    def _show_votes(self) -> None:
        self.status.set_note(self.votes.note())

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
