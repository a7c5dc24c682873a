"""The chat's sessions: saving and loading a folder, the library's autosave and reopening, the export, and the
question before an unsaved conversation is dropped; the layer of the chat between its comparisons and its turns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from deltamem.files import atomic_write_text
from deltamem.runtime.contract import Engine, SessionIdentity
from deltamem_chat.library import SessionLibrary
from deltamem_chat.memory_trace import TraceError, points_from_saved, points_to_saved
from deltamem_chat.text import stamp
from deltamem_chat.tui.chat_compare import ChatCompare
from deltamem_chat.tui.export import conversation_markdown
from deltamem_chat.tui.screens import ConfirmDialog, PromptDialog, SessionsScreen
from deltamem_chat.votes import VoteError, from_saved, to_saved

#: The key of a saved session's `extra` that holds the memory panel's turns.
MEMORY_PANEL = "memory_panel"


class ChatFiles(ChatCompare):
    """A conversation that is kept: in a folder, in the library after every turn, in a Markdown export."""

    def __init__(self, engine: Engine, info: Mapping[str, str], *, identity: SessionIdentity | None,
                 library: SessionLibrary | None, intro: str | None) -> None:
        super().__init__(engine, info)
        self.identity = identity
        self.library = library
        self.intro = intro
        self.session_id: str | None = None   # the library session this conversation is autosaved as
        self.unsaved = False                 # a turn since the last save, load or new conversation
        self._last_session: Path | None = None

    def _show_conversation(self) -> None:
        """Redraw the panes and the meter from the engine (at start, after a load or a reset)."""
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
