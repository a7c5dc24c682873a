"""The app opens at once on its loading screen: each step and its bar, then the chat; a failure in one sentence; a
quit while loading; and no transformers bar left on the terminal by the real loader."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import ProgressBar, Static

from deltamem.context import ContextPolicy
from deltamem.hub import LoadError
from deltamem.runtime.contract import GenerationSettings
from deltamem.runtime.loading import LoadedModel, choose_runtime
from deltamem.runtime.progress import LoadStep, Progress
from deltamem_chat.aliases import resolve_models
from deltamem_chat.commands.options import loader_for
from deltamem_chat.tui import ChatScreen, DeltaMemApp, LoadingScreen, run_chat
from tests.conftest import make_engine
from tests.tui_harness import (
    RecordingApp,
    one_torch_thread,  # noqa: F401 (an autouse fixture)
    run,
    until,
)


def tiny_loaded() -> LoadedModel:
    engine = make_engine()
    return LoadedModel(engine.model, engine.tokenizer, "tiny base", "tiny adapter", choose_runtime("cpu"),
                       notes=("adapter tiny adapter: its weights were converted to float32",))


def chat_loading(monkeypatch: pytest.MonkeyPatch, load: Any) -> LoadingScreen:
    """The loading screen `run_chat` opens the app on, for a pilot to run in an app that keeps its notes."""
    started: list[DeltaMemApp] = []
    monkeypatch.setattr(DeltaMemApp, "run", lambda app: started.append(app))
    run_chat(load, ContextPolicy(64), GenerationSettings(max_new_tokens=2))
    assert isinstance(started[0].first, LoadingScreen)
    return started[0].first


def text(app: DeltaMemApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def test_the_loading_screen_shows_each_step_then_opens_the_chat(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def load(progress: Progress) -> LoadedModel:
        progress(LoadStep("reading the tokenizer", "models/tiny"))
        progress(LoadStep("loading the weights", "models/tiny · Loading weights", done=3, total=12))
        release.wait(20)
        return tiny_loaded()

    app = RecordingApp(chat_loading(monkeypatch, load))  # type: ignore[arg-type]

    async def scenario(pilot: Pilot) -> None:
        await until(pilot, lambda: text(app, "#step") == "loading the weights")
        assert isinstance(app.screen, LoadingScreen) and app.main is None
        assert text(app, "#detail") == "models/tiny · Loading weights"
        bar = app.screen.query_one(ProgressBar)
        assert (bar.progress, bar.total) == (3, 12)
        release.set()
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        assert app.main is app.screen and app.title == "deltamem-chat"
        assert app.main.info["models"] == "tiny base + tiny adapter"
        await until(pilot, lambda: bool(app.notes))
        assert ("adapter tiny adapter: its weights were converted to float32", "warning") in app.notes

    run(app, scenario)


def test_a_step_that_cannot_count_has_an_indeterminate_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def load(progress: Progress) -> LoadedModel:
        progress(LoadStep("loading the weights", "models/tiny", done=5, total=10))
        progress(LoadStep("attaching the δ-mem adapter", "adapters/tiny"))
        release.wait(20)
        return tiny_loaded()

    app = RecordingApp(chat_loading(monkeypatch, load))  # type: ignore[arg-type]

    async def scenario(pilot: Pilot) -> None:
        await until(pilot, lambda: text(app, "#step") == "attaching the δ-mem adapter")
        assert app.screen.query_one(ProgressBar).total is None
        release.set()
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))

    run(app, scenario)


def test_a_failed_load_shows_its_sentence_and_quits_non_zero_on_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    sentence = "adapter adapters/tiny: delta_mem_config.json is missing"

    def load(progress: Progress) -> LoadedModel:
        progress(LoadStep("finding the adapter", "adapters/tiny"))
        raise LoadError(sentence)

    app = RecordingApp(chat_loading(monkeypatch, load))  # type: ignore[arg-type]

    async def scenario(pilot: Pilot) -> None:
        await until(pilot, lambda: sentence in text(app, "#failure"))
        assert app.screen.has_class("-failed") and app.main is None
        await pilot.press("space")

    run(app, scenario)
    assert app.return_code == 2


def test_an_unexpected_error_is_one_line_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(progress: Progress) -> LoadedModel:
        raise ValueError("bad magic number\n  at offset 12")

    app = RecordingApp(chat_loading(monkeypatch, load))  # type: ignore[arg-type]

    async def scenario(pilot: Pilot) -> None:
        await until(pilot, lambda: "Press any key" in text(app, "#failure"))
        assert "loading stopped unexpectedly (ValueError: bad magic number)" in text(app, "#failure")
        assert "offset" not in text(app, "#failure") and "Traceback" not in text(app, "#failure")

    run(app, scenario)


@pytest.mark.parametrize("key", ["ctrl+c", "ctrl+q"])
def test_quitting_while_loading_ends_the_app_at_once(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    release = threading.Event()

    def load(progress: Progress) -> LoadedModel:
        progress(LoadStep("loading the weights", "models/huge"))
        release.wait(20)                   # a load that would take long
        raise LoadError("not reached while the test runs")

    app = RecordingApp(chat_loading(monkeypatch, load))  # type: ignore[arg-type]

    async def scenario(pilot: Pilot) -> None:
        await until(pilot, lambda: text(app, "#step") == "loading the weights")
        await pilot.press(key)

    try:
        run(app, scenario)
    finally:
        release.set()
    assert app.return_code == 130 and app.main is None


def test_the_real_loader_reports_the_weights_instead_of_drawing_a_bar(tiny_model_dirs: tuple[Path, Path],
                                                                      capfd: pytest.CaptureFixture) -> None:
    from transformers.utils import logging as transformers_logging

    from deltamem.runtime.loading import load

    base, adapter = tiny_model_dirs
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.enable_progress_bar()        # as in a fresh process
    try:
        load(str(adapter), str(base), device="cpu")
        assert "Loading weights" in capfd.readouterr().err, "without progress, transformers draws its bar"
        steps: list[LoadStep] = []
        loaded = loader_for(resolve_models(str(adapter), str(base)), "cpu", "auto", "auto")(steps.append)
        assert capfd.readouterr().err == ""
    finally:
        if not was_enabled:
            transformers_logging.disable_progress_bar()
    assert loaded.base == str(base)
    weights = [step for step in steps if step.total]
    assert weights and weights[-1].step == "loading the weights" and weights[-1].done == weights[-1].total > 0
    assert [step.step for step in steps][:2] == ["finding the adapter", "finding the base model"]


def test_a_wrong_adapter_fails_in_one_sentence_through_the_real_loader(tiny_model_dirs: tuple[Path, Path],
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = tiny_model_dirs
    wrong = tmp_path / "not-an-adapter"
    wrong.mkdir()
    app = RecordingApp(chat_loading(monkeypatch, loader_for(resolve_models(str(wrong), str(base)), "cpu", "auto",
                                                            "auto")))  # type: ignore[arg-type]

    async def scenario(pilot: Pilot) -> None:
        await until(pilot, lambda: "Press any key" in text(app, "#failure"), timeout=60)
        assert f"adapter {wrong}" in text(app, "#failure")
        await pilot.press("enter")

    run(app, scenario)
    assert app.return_code == 2


def test_the_app_starts_without_torch() -> None:
    """Torch and transformers load behind the loading screen, not before the app can show it."""
    import subprocess
    import sys

    code = ("import sys, deltamem_chat.tui; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'torch', 'transformers'}))")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True).stdout
    assert out.strip() == "[]"
