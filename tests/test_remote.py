"""`RemoteEngine`: the engine contract on a server's session answers what the engine in this process answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deltamem.context import ContextPolicy
from deltamem.runtime.contract import (
    ALL_LANES,
    Engine,
    GenerationSettings,
    LaneDone,
    SessionIdentity,
    TokenEvent,
    TurnDone,
)
from deltamem.runtime.engine import ABEngine
from deltamem.runtime.loading import LoadedModel
from deltamem_chat.remote.engine import RemoteEngine, RemoteError
from deltamem_chat.replay import ReplayRunner
from deltamem_chat.transcripts import load_transcript
from tests.server_harness import (
    FACTS,
    POLICY,
    RETRIEVAL,
    ROOT,
    SETTINGS,
    SMALL_WINDOW,
    live_server,
    store,
    tiny_loaded,
)


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return tiny_loaded()


@pytest.fixture
def url(loaded: LoadedModel, tmp_path: Path) -> Iterator[str]:
    with live_server(store(loaded, tmp_path / "server")) as base:
        yield base


def summary(events: list[Any]) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
    """Each lane's streamed text, its final text and the written totals: what must match across engines."""
    streamed: dict[str, str] = {}
    for event in events:
        if isinstance(event, TokenEvent):
            streamed[event.lane] = streamed.get(event.lane, "") + event.text
    finals = {e.lane: e.text for e in events if isinstance(e, LaneDone)}
    assert isinstance(events[-1], TurnDone)
    return streamed, finals, events[-1].written_total


def test_turns_stream_what_the_local_engine_streams(loaded: LoadedModel, url: str) -> None:
    remote = RemoteEngine(url, policy=POLICY)
    local = ABEngine(loaded.model, loaded.tokenizer, policy=POLICY)
    assert isinstance(remote, Engine) and remote.lane_names == local.lane_names and remote.batched
    for text in ("my name is Ada", "what is my name?"):
        assert summary(list(remote.turn(text, SETTINGS))) == summary(list(local.turn(text, SETTINGS)))
    assert remote.lane("delta") == local.lane("delta")
    point = remote.checkpoint()
    list(remote.turn("a probe", SETTINGS))
    remote.rollback(point)
    assert remote.lane("delta") == local.lane("delta")
    remote.reset_memory()
    assert remote.lane("delta").written_total == 0 and remote.lane("delta").messages == local.lane("delta").messages


@pytest.mark.parametrize("lanes", [("frozen", "delta", "rag"), ALL_LANES], ids=["3-lanes", "4-lanes"])
def test_a_server_of_more_lanes_streams_what_the_local_engine_streams(loaded: LoadedModel, tmp_path: Path,
                                                                      lanes: tuple[str, ...]) -> None:
    """The retrieval lanes too: the messages retrieved reach each lane's stats over the wire."""
    local = ABEngine(loaded.model, loaded.tokenizer, policy=SMALL_WINDOW, lanes=lanes, retrieval=RETRIEVAL)
    with live_server(store(loaded, tmp_path, lanes=lanes, retrieval=RETRIEVAL)) as url:
        remote = RemoteEngine(url, policy=SMALL_WINDOW)
        assert remote.lane_names == lanes and remote.lane("rag").retrieval
        retrieved = []
        for text in FACTS:
            events = list(remote.turn(text, SETTINGS))
            expected = list(local.turn(text, SETTINGS))
            assert summary(events) == summary(expected)
            stats = [{n: s.retrieved for n, s in e[-1].stats.items()} for e in (events, expected)]
            assert stats[0] == stats[1]
            retrieved.append(stats[0]["rag"])
        assert any(retrieved) and all(remote.lane(n) == local.lane(n) for n in lanes)


def test_a_remote_session_saves_and_loads_in_the_apps_format(loaded: LoadedModel, url: str, tmp_path: Path) -> None:
    identity = SessionIdentity(loaded.base, loaded.adapter)
    remote = RemoteEngine(url, policy=POLICY)
    remote.add_message("user", "I live in Oslo")
    remote.ingest()
    list(remote.turn("hello", SETTINGS))
    remote.save(tmp_path / "saved", identity, {"note": 1})
    local = ABEngine(loaded.model, loaded.tokenizer, policy=POLICY)
    assert local.load(tmp_path / "saved", identity) == {"budget": {"horizon": 8192, "stop_at_horizon": False},
                                                        "note": 1}
    assert local.lane("delta") == remote.lane("delta")
    other = RemoteEngine(url)
    assert other.load(tmp_path / "saved", identity)["note"] == 1
    assert other.lane("delta") == remote.lane("delta")
    with pytest.raises(RemoteError, match="runs"):
        remote.save(tmp_path / "elsewhere", SessionIdentity("another", "model"))
    with pytest.raises(RemoteError, match="no saved session"):
        other.load(tmp_path / "nowhere", identity)


def test_a_cancel_stops_the_servers_generation(loaded: LoadedModel, url: str, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    class Slow(ABEngine):
        def respond(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            for event in super().respond(*args, **kwargs):
                if isinstance(event, TokenEvent):
                    time.sleep(0.02)
                yield event

    monkeypatch.setattr("deltamem_chat.server.sessions.ABEngine", Slow)
    remote = RemoteEngine(url, policy=POLICY)
    cancel = threading.Event()
    events = []
    for event in remote.turn("tell me everything", GenerationSettings(max_new_tokens=400), cancel=cancel):
        events.append(event)
        if isinstance(event, TokenEvent):
            cancel.set()
    done = events[-1]
    assert isinstance(done, TurnDone) and any(stats.cancelled for stats in done.stats.values())
    assert all(stats.tokens < 400 for stats in done.stats.values())
    assert [m["role"] for m in remote.lane("delta").messages] == ["user", "assistant"]


def test_a_replay_through_the_server_equals_the_local_one(loaded: LoadedModel, url: str) -> None:
    transcript = load_transcript(ROOT / "tests" / "fixtures" / "replay_small.jsonl")
    settings = GenerationSettings(max_new_tokens=4)
    runs = []
    for engine in (RemoteEngine(url, policy=ContextPolicy.parse("window:256")),
                   ABEngine(loaded.model, loaded.tokenizer, policy=ContextPolicy.parse("window:256"))):
        runner = ReplayRunner(engine, transcript, settings=settings)
        for _ in range(min(6, len(transcript.items))):
            for _ in runner.step():
                pass
        runs.append([(r.kind, r.text, {name: (step.text, step.written) for name, step in r.lanes.items()},
                      r.outcome) for r in runner.records])
    assert runs[0] == runs[1]


def test_refusals_are_one_sentence(url: str) -> None:
    with pytest.raises(RemoteError, match="no session nobody"):
        RemoteEngine(url, session="nobody")
    with pytest.raises(RemoteError, match="cannot be reached"):
        RemoteEngine("http://127.0.0.1:9")
    remote = RemoteEngine(url)
    with pytest.raises(RemoteError, match="limit"):
        list(remote.turn("hi", GenerationSettings(max_new_tokens=10**9)))


def test_the_replay_command_runs_on_a_server(tiny_model_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deltamem.runtime.loading import load
    from deltamem_chat.cli import app

    base, adapter = tiny_model_dirs
    small = str(ROOT / "tests" / "fixtures" / "replay_small.jsonl")
    common = ["replay", small, "--ab", "--headless", "--max-new-tokens", "5"]
    loaded = load(str(adapter), str(base), device="cpu")
    with live_server(store(loaded, tmp_path / "server")) as url:
        remote = CliRunner().invoke(app, [*common, "--server", url, "--report", str(tmp_path / "remote.json")])
    local = CliRunner().invoke(app, [*common, "--adapter", str(adapter), "--base", str(base), "--device", "cpu",
                                     "--report", str(tmp_path / "local.json")])
    assert remote.exit_code == local.exit_code == 0, remote.output + local.output
    reports = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("remote", "local")]
    assert reports[0]["config"]["device"] == f"server {url}"
    turns = [[(t["kind"], {lane: (step["text"], step["written"]) for lane, step in t["lanes"].items()})
              for t in report["turns"]] for report in reports]
    assert turns[0] == turns[1] and len(turns[0]) > 5
    assert reports[0]["summary"] == reports[1]["summary"]


def test_the_chat_screen_streams_a_servers_session(loaded: LoadedModel, url: str) -> None:
    from textual.pilot import Pilot

    from deltamem_chat.tui import ChatScreen
    from tests.tui_harness import RecordingApp, run, say

    remote = RemoteEngine(url, policy=POLICY)
    local = ABEngine(loaded.model, loaded.tokenizer, policy=POLICY)
    expected = summary(list(local.turn("my name is Ada", GenerationSettings(max_new_tokens=8))))[1]
    chat = ChatScreen(remote, title_info={"models": "tiny", "device": "server"}, identity=remote.identity(),
                      settings=GenerationSettings(max_new_tokens=8))

    async def scenario(pilot: Pilot) -> None:
        await say(pilot, "my name is Ada")
        assert {name: pane.last_reply for name, pane in chat.panes.items()} == expected
        assert chat.meter.written == remote.lane("delta").written_total == local.lane("delta").written_total

    run(RecordingApp(chat), scenario)
