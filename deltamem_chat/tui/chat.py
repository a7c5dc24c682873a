"""The side-by-side chat: one message line, every lane answering each message together, sessions and an export.

The frame (`LanesScreen`) shows the lanes, the meter and the streaming; the chat adds the message line and its
history, the intro, saving, loading and exporting, the context policy and pausing the frozen lane.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input

from deltamem.context import ContextPolicy, PolicyError
from deltamem.files import atomic_write_text
from deltamem.runtime.contract import FROZEN, Engine, GenerationSettings, LaneDone, SessionIdentity, TurnDone
from deltamem_chat.documents import DocumentError, read_document
from deltamem_chat.library import SessionLibrary
from deltamem_chat.text import stamp
from deltamem_chat.transcripts.reading import document_text
from deltamem_chat.tui.commands import CHAT_COMMANDS
from deltamem_chat.tui.export import conversation_markdown
from deltamem_chat.tui.frame import Job, LanesScreen
from deltamem_chat.tui.messages import FeedItem
from deltamem_chat.tui.screens import PromptDialog, SessionsScreen
from deltamem_chat.tui.widgets import ChatInput

#: Actions that read or change the engine: unavailable while a turn runs.
ENGINE_ACTIONS = frozenset({"reset_memory", "new_conversation", "save_session", "load_session", "export",
                            "switch_policy", "toggle_frozen", "read_document", "sessions"})


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
    BINDINGS = [
        # The footer lists keys in the order it meets them: the message line's own (ctrl+e, ctrl+w) first, then these.
        Binding("ctrl+q", "quit", "quit", priority=True),
        Binding("escape", "cancel", "stop"),
        # Priority: the message line binds some of these keys (ctrl+w, ctrl+e) to editing.
        Binding("ctrl+r", "reset_memory", "reset memory", priority=True),
        Binding("ctrl+n", "new_conversation", "new", priority=True),
        Binding("ctrl+s", "save_session", "save", priority=True),
        Binding("ctrl+o", "load_session", "load", priority=True),
        Binding("ctrl+e", "export", "export", priority=True),
        Binding("ctrl+w", "switch_policy", "policy", priority=True),
        Binding("ctrl+f", "toggle_frozen", "frozen on/off", priority=True),
        Binding("ctrl+d", "read_document", "read a document", show=False, priority=True),
        Binding("ctrl+l", "sessions", "sessions", show=False, priority=True),
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
        super().__init__(engine, dict(title_info) | {"policy": str(engine.policy)})
        self.identity = identity
        self.settings = settings
        self.intro = intro
        self.frozen_on = True
        self._last_session: Path | None = None
        self._read_on_start = read
        self.library = library
        self.session_id: str | None = None   # the library session this conversation is autosaved as

    def compose_controls(self) -> Iterator[Widget]:
        yield ChatInput(id="message")

    @property
    def chat_input(self) -> ChatInput:
        return self.query_one(ChatInput)

    def on_mount(self) -> None:
        self._show_conversation()
        if self._read_on_start is not None:
            self._read(str(self._read_on_start))

    # ------------------------------------------------------------------------------------------ turns
    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.busy:
            self.notify("Still answering: wait for the replies, or press Escape to stop them.", severity="warning")
            return
        self.chat_input.remember(text)
        self.send(text)

    def send(self, text: str) -> None:
        """Send a message to every active lane and start streaming their replies."""
        lanes = [name for name in self.lane_names if name != FROZEN or self.frozen_on]
        panes = self.panes
        for name in lanes:
            panes[name].add_user(text)
            panes[name].start_reply()
        if self.METER_LANE in lanes:
            # Every generated token will be written; the prompt's writes are counted when the turn ends.
            self.show_budget(self.written, 0, estimated=True)
        self.start(Job(self.written, label=text), partial(self._turn, text, lanes))

    def _turn(self, text: str, lanes: list[str], job: Job) -> None:
        """On the worker thread: the engine's events, as they come."""
        for event in self.engine.turn(text, self.settings, lanes=lanes, cancel=job.cancel):
            self.feed.put(event)

    def apply(self, job: Job, item: FeedItem) -> None:
        if isinstance(item, LaneDone):
            self.panes[item.lane].finish_reply(item.stats, text=item.text)
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

    def job_ended(self, job: Job) -> None:
        self.autosave()

    def job_failed(self, job: Job) -> None:
        """The meter as the engine's cleanup left it."""
        written = self.engine_written()
        self.show_budget(written, written - job.written_before)

    # ------------------------------------------------------------------------------------------ memory
    def _show_conversation(self) -> None:
        """Redraw the panes and the meter from the engine (at start, after a load or a reset)."""
        for name, pane in self.panes.items():
            messages = self.engine.lane(name).messages
            pane.clear()
            if self.intro and not messages:
                pane.add_note(self.intro)
            for message in messages:
                if message["role"] == "user":
                    pane.add_user(message["content"])
                elif message["role"] == "assistant":
                    pane.add_assistant(message["content"])
        status = self.status
        for name in self.lane_names:
            status.set_lane(name, None)
        status.set_info("policy", str(self.engine.policy))
        self.show_budget(self.engine_written(), 0, {})
        self.memory_panel.clear()

    def action_reset_memory(self) -> None:
        self.engine.reset_memory()
        panes = self.panes
        for name in self.lane_names:
            if self.engine.lane(name).memory:
                panes[name].add_note(f"memory reset: {self.titles[name]} continues from an empty state")
        self.show_budget(0, 0, {})
        self.notify("Memory reset: the conversation stays, the memory is empty.")

    def action_new_conversation(self) -> None:
        self.engine.reset()
        self.session_id = None
        self._show_conversation()
        self.notify("New conversation.")

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
            path = self.engine.save(Path(folder).expanduser(), self.identity)
        except Exception as exc:  # disk full, permissions, a file where the folder should be
            self.report_error("Could not save the session", exc)
            return
        self._last_session = path
        self.notify(f"Saved to {path}", markup=False)

    def action_load_session(self) -> None:
        if not self._needs_identity():
            default = str(self._last_session) if self._last_session else "sessions/"
            self.app.push_screen(PromptDialog("Load session", "Session folder to load:", default), self._load)

    def _load(self, folder: str | None) -> None:
        if folder is None or self.identity is None:
            return
        try:
            self.engine.load(Path(folder).expanduser(), self.identity)
        except Exception as exc:  # SessionError says which file and field; anything else is shown as it is
            self.report_error("Could not load the session", exc)
            return
        self._last_session = Path(folder)
        self.session_id = None
        self._show_conversation()
        self.notify(f"Loaded {folder}", markup=False)

    # ------------------------------------------------------------------------------------------ library
    def autosave(self) -> None:
        """Save the conversation into the library after a turn (atomic: a crash loses at most the next turn)."""
        if self.library is None or self.identity is None:
            return
        if not any(self.engine.lane(name).messages for name in self.lane_names):
            return
        try:
            self.session_id = self.library.save(self.engine, self.identity, self.session_id).session_id
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
            self.library.open(session_id, self.engine, self.identity)
        except Exception as exc:  # SessionError or LibraryError say which file and why
            self.report_error("Could not reopen the session", exc)
            return
        self.session_id = session_id
        self._show_conversation()
        self.notify("Reopened the session: its conversation and memory are back.")

    def action_export(self) -> None:
        self.app.push_screen(PromptDialog("Export conversation", "Markdown file for both lanes' messages:",
                                          f"deltamem-chat-{stamp()}.md"), self._export)

    def _export(self, file: str | None) -> None:
        if file is None:
            return
        path = Path(file).expanduser()
        lanes = {name: self.engine.lane(name) for name in self.lane_names}
        try:
            atomic_write_text(path, conversation_markdown(lanes, self.titles, self.status.info))
        except OSError as exc:  # SaveError: the folder cannot be made, the disk is full
            self.report_error("Could not export", exc)
            return
        self.notify(f"Exported to {path}", markup=False)

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
        self.notify("Frozen lane on." if self.frozen_on else "Frozen lane paused: δ-mem answers alone.")
