"""The side-by-side chat: one input, a `frozen` pane and a `δ-mem` pane answering the same message, a write meter.

The engine runs in a thread worker; its events go through a `TurnFeed` that a UI timer drains once per frame, so
the panes refresh at most every `FRAME_S` however fast tokens come. Actions that touch the engine are disabled
while a turn runs (the footer dims them), so the UI never changes the engine under the worker's feet.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Input

from deltamem.context import ContextPolicy, PolicyError
from deltamem.files import atomic_write_text
from deltamem.runtime.contract import (
    DELTA,
    FROZEN,
    LANE_TITLES,
    Engine,
    GenerationSettings,
    LaneDone,
    SessionIdentity,
    TurnDone,
)
from deltamem_chat.text import stamp
from deltamem_chat.tui.commands import ChatCommands
from deltamem_chat.tui.export import conversation_markdown
from deltamem_chat.tui.feed import TextDelta, TurnFailed, TurnFeed
from deltamem_chat.tui.screens import PromptDialog
from deltamem_chat.tui.widgets import BudgetMeter, ChatInput, LanePane, StatusBar

#: How often streamed text reaches the screen (seconds): fast enough to look live, slow enough to keep typing smooth.
FRAME_S = 0.05

#: Actions that read or change the engine: unavailable while a turn runs.
ENGINE_ACTIONS = frozenset({"reset_memory", "new_conversation", "save_session", "load_session", "export",
                            "switch_policy", "toggle_frozen"})


@dataclass
class _Turn:
    """The turn in flight: which lanes run, how to stop it, and the live write estimate."""

    lanes: list[str]
    cancel: threading.Event
    written_before: int
    streamed: int = 0


class DeltaMemChatApp(App[None]):
    """A frozen LLM and the same LLM with δ-mem, side by side, answering each message together."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere find it too
    TITLE = "deltamem-chat"
    COMMANDS = App.COMMANDS | {ChatCommands}
    BINDINGS = [
        Binding("escape", "cancel", "stop"),
        # Priority: the message line binds some of these keys (ctrl+w, ctrl+e) to editing.
        Binding("ctrl+r", "reset_memory", "reset memory", priority=True),
        Binding("ctrl+n", "new_conversation", "new", priority=True),
        Binding("ctrl+s", "save_session", "save", priority=True),
        Binding("ctrl+o", "load_session", "load", priority=True),
        Binding("ctrl+e", "export", "export", priority=True),
        Binding("ctrl+w", "switch_policy", "policy", priority=True),
        Binding("ctrl+f", "toggle_frozen", "frozen on/off", priority=True),
        Binding("ctrl+q", "quit", "quit", priority=True),
    ]

    def __init__(self, engine: Engine, *, title_info: dict[str, str], identity: SessionIdentity | None,
                 settings: GenerationSettings, intro: str | None = None) -> None:
        """`title_info` is shown in order in the status bar (models, device); its `policy` follows the engine's.

        Without an `identity`, saving and loading sessions are refused: nothing could check a session's model.
        `intro` is shown in both panes whenever a conversation starts empty (what the model is, what to try).
        """
        super().__init__()
        self.engine = engine
        self.identity = identity
        self.settings = settings
        self.intro = intro
        self.info = dict(title_info) | {"policy": str(engine.policy)}
        self.frozen_on = True
        self._feed = TurnFeed()
        self._turn: _Turn | None = None
        self._last_session: Path | None = None

    # ------------------------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        titles = {name: LANE_TITLES.get(name, name) for name in self.engine.lane_names}
        yield StatusBar(self.info, titles, id="status")
        with Horizontal(id="lanes"):
            for name, title in titles.items():
                yield LanePane(name, title, memory=self.engine.lane(name).memory, id=f"lane-{name}")
        yield BudgetMeter(id="meter")
        yield ChatInput(id="message")
        yield Footer()

    def on_mount(self) -> None:
        self._pump = self.set_interval(FRAME_S, self._drain, pause=True)
        self._show_conversation()
        self.query_one(ChatInput).focus()

    @property
    def panes(self) -> dict[str, LanePane]:
        return {pane.lane: pane for pane in self.query(LanePane)}

    @property
    def busy(self) -> bool:
        """Whether a turn is running."""
        return self._turn is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.busy
        if action in ENGINE_ACTIONS and self.busy:
            return None
        return True

    # ------------------------------------------------------------------------------------------ turns
    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.busy:
            self.notify("Still answering: wait for the replies, or press Escape to stop them.", severity="warning")
            return
        self.query_one(ChatInput).remember(text)
        self.send(text)

    def send(self, text: str) -> None:
        """Send a message to every active lane and start streaming their replies."""
        lanes = [name for name in self.engine.lane_names if name != FROZEN or self.frozen_on]
        panes = self.panes
        for name in lanes:
            panes[name].add_user(text)
            panes[name].start_reply()
        self._turn = _Turn(lanes, threading.Event(), self._written())
        self.refresh_bindings()
        self._pump.resume()
        self._run_turn(text, lanes, self._turn.cancel)

    @work(thread=True, exclusive=True, group="turn", exit_on_error=False)
    def _run_turn(self, text: str, lanes: list[str], cancel: threading.Event) -> None:
        """Consume the engine's events off the UI thread; every failure becomes a feed item, never a crash."""
        try:
            for event in self.engine.turn(text, self.settings, lanes=lanes, cancel=cancel):
                self._feed.put(event)
        except Exception as exc:  # shown to the user; the engine's own cleanup has already run
            self._feed.put(TurnFailed(exc))

    def _drain(self) -> None:
        """Apply what the worker produced since the last frame."""
        turn = self._turn
        if turn is None:
            return
        panes = self.panes
        for item in self._feed.drain():
            if isinstance(item, TextDelta):
                panes[item.lane].append(item.text)
                if item.lane == DELTA:
                    turn.streamed += item.tokens
            elif isinstance(item, LaneDone):
                panes[item.lane].finish_reply(item.stats, text=item.text)
                self.query_one(StatusBar).set_lane(item.lane, item.stats)
            elif isinstance(item, TurnDone):
                self._end_turn(turn, item)
                return
            else:
                self._fail_turn(turn, item.error)
                return
        if DELTA in turn.lanes:
            # Every generated token is written; the prompt's writes are counted when the turn ends.
            self._show_budget(turn.written_before + turn.streamed, turn.streamed, estimated=True)

    def _end_turn(self, turn: _Turn, done: TurnDone | None) -> None:
        """Show the exact meter: from the turn's `TurnDone`, or, after a failure, as the engine's cleanup left it."""
        written = done.written_total.get(DELTA, turn.written_before) if done is not None else self._written()
        diagnostics = done.diagnostics.get(DELTA, {}) if done is not None else None
        self._show_budget(written, written - turn.written_before, diagnostics)
        self._turn = None
        self._pump.pause()
        self.refresh_bindings()

    def _fail_turn(self, turn: _Turn, error: Exception) -> None:
        for pane in self.panes.values():
            if pane.streaming:
                pane.finish_reply(None, verdict="failed")
                pane.mark("failed")
        self._report("The turn failed", error)
        self._end_turn(turn, None)

    def action_cancel(self) -> None:
        """Stop the generation after the current token; the partial replies stay, marked cancelled."""
        if self._turn is not None:
            self._turn.cancel.set()

    def on_unmount(self) -> None:
        """However the app ends (ctrl+q, an error), a running turn stops after its current token, not at its end."""
        self.action_cancel()

    # ------------------------------------------------------------------------------------------ memory
    def _written(self) -> int:
        return self.engine.lane(DELTA).written_total if DELTA in self.engine.lane_names else 0

    def _show_budget(self, written: int, increment: int, diagnostics: dict[str, float] | None = None, *,
                     estimated: bool = False) -> None:
        budget = self.engine.budget
        self.query_one(BudgetMeter).update(written, budget.horizon, increment, budget.status(written), diagnostics,
                                           estimated=estimated)

    def _show_conversation(self) -> None:
        """Redraw both panes and the meter from the engine (at start, after a load or a reset)."""
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
        status = self.query_one(StatusBar)
        for name in self.engine.lane_names:
            status.set_lane(name, None)
        status.set_info("policy", str(self.engine.policy))
        self._show_budget(self._written(), 0, {})

    def action_reset_memory(self) -> None:
        self.engine.reset_memory()
        if DELTA in self.panes:
            self.panes[DELTA].add_note("memory reset: δ-mem continues from an empty state")
        self._show_budget(0, 0, {})
        self.notify("Memory reset: the conversation stays, the memory is empty.")

    def action_new_conversation(self) -> None:
        self.engine.reset()
        self._show_conversation()
        self.notify("New conversation.")

    # ------------------------------------------------------------------------------------------ files
    def _report(self, title: str, error: Exception) -> None:
        """An error as a notification: the message is the user's to read, the app keeps running."""
        message = str(error) or type(error).__name__
        self.notify(f"{type(error).__name__}: {message}", title=title, severity="error", timeout=12, markup=False)

    def _needs_identity(self) -> bool:
        if self.identity is None:
            self.notify("Sessions are unavailable: this chat was started without a model identity to check them "
                        "against.", severity="warning")
        return self.identity is None

    def action_save_session(self) -> None:
        if not self._needs_identity():
            self.push_screen(PromptDialog("Save session", "Folder for the conversation and the memory:",
                                          f"sessions/{stamp()}"), self._save)

    def _save(self, folder: str | None) -> None:
        if folder is None or self.identity is None:
            return
        try:
            path = self.engine.save(Path(folder).expanduser(), self.identity)
        except Exception as exc:  # disk full, permissions, a file where the folder should be
            self._report("Could not save the session", exc)
            return
        self._last_session = path
        self.notify(f"Saved to {path}", markup=False)

    def action_load_session(self) -> None:
        if not self._needs_identity():
            default = str(self._last_session) if self._last_session else "sessions/"
            self.push_screen(PromptDialog("Load session", "Session folder to load:", default), self._load)

    def _load(self, folder: str | None) -> None:
        if folder is None or self.identity is None:
            return
        try:
            self.engine.load(Path(folder).expanduser(), self.identity)
        except Exception as exc:  # SessionError says which file and field; anything else is shown as it is
            self._report("Could not load the session", exc)
            return
        self._last_session = Path(folder)
        self._show_conversation()
        self.notify(f"Loaded {folder}", markup=False)

    def action_export(self) -> None:
        self.push_screen(PromptDialog("Export conversation", "Markdown file for both lanes' messages:",
                                      f"deltamem-chat-{stamp()}.md"), self._export)

    def _export(self, file: str | None) -> None:
        if file is None:
            return
        path = Path(file).expanduser()
        lanes = {name: self.engine.lane(name) for name in self.engine.lane_names}
        titles = {name: LANE_TITLES.get(name, name) for name in lanes}
        try:
            atomic_write_text(path, conversation_markdown(lanes, titles, self.query_one(StatusBar).info))
        except OSError as exc:  # SaveError: the folder cannot be made, the disk is full
            self._report("Could not export", exc)
            return
        self.notify(f"Exported to {path}", markup=False)

    # ------------------------------------------------------------------------------------------ settings
    def action_switch_policy(self) -> None:
        question = ('"full": the whole history in both prompts; "window:N": only the newest N tokens, '
                    "so what δ-mem recalls beyond them comes from its memory.")
        self.push_screen(PromptDialog("Context policy", question, str(self.engine.policy)), self._set_policy)

    def _set_policy(self, text: str | None) -> None:
        if text is None:
            return
        try:
            policy = ContextPolicy.parse(text)
        except PolicyError as exc:
            self._report("Policy unchanged", exc)
            return
        self.engine.set_policy(policy)
        self.query_one(StatusBar).set_info("policy", str(policy))
        self.notify(f"Context policy: {policy}")

    def action_toggle_frozen(self) -> None:
        if FROZEN not in self.panes:
            return
        self.frozen_on = not self.frozen_on
        self.panes[FROZEN].set_paused(not self.frozen_on)
        self.query_one(StatusBar).set_paused(FROZEN, not self.frozen_on)
        self.notify("Frozen lane on." if self.frozen_on else "Frozen lane paused: δ-mem answers alone.")
