"""Dates in what the lanes read: a session's date before its first message, a probe's date before its question."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from deltamem.runtime.contract import GenerationSettings
from deltamem_chat.cli import app
from deltamem_chat.replay import ReplayRunner
from deltamem_chat.transcripts import Message, Probe, Transcript, load_transcript
from deltamem_chat.transcripts.reading import read_texts
from tests.conftest import make_engine

ITEMS = [
    Message("system", "Two friends talk."),
    Message("user", "Ann: I adopted a dog.", session=1, time="1:56 pm on 8 May, 2023"),
    Message("user", "Bo: What is its name?", session=1, time="1:56 pm on 8 May, 2023"),
    Message("user", "Ann: Rex, after my grandfather.", session=2, time="9:02 am on 25 May, 2023"),
    Probe("When did Ann adopt a dog?", "8 May 2023", category=2),
    Message("user", "Bo: A note without a time."),
    Probe("What is the dog called?", "Rex", date="2023/06/01 (Thu) 10:00"),
]


def test_each_session_date_comes_once_before_its_first_message_and_probes_carry_theirs() -> None:
    assert read_texts(ITEMS) == [
        "Two friends talk.",
        "DATE: 1:56 pm on 8 May, 2023\nAnn: I adopted a dog.",
        "Bo: What is its name?",
        "DATE: 9:02 am on 25 May, 2023\nAnn: Rex, after my grandfather.",
        "When did Ann adopt a dog?",
        "Bo: A note without a time.",
        "DATE: 2023/06/01 (Thu) 10:00\nWhat is the dog called?",
    ]


def test_messages_with_their_own_times_each_get_a_date_and_off_means_off() -> None:
    timed = [Message("user", "a", time="09:00"), Message("assistant", "b", time="09:00"),
             Message("user", "c", time="09:05")]
    assert read_texts(timed) == ["DATE: 09:00\na", "b", "DATE: 09:05\nc"]
    assert read_texts(ITEMS, dates=False) == [i.content if isinstance(i, Message) else i.question for i in ITEMS]


def test_the_lanes_read_the_dates_and_the_probe_asks_with_its_date() -> None:
    engine = make_engine(policy="full")
    runner = ReplayRunner(engine, Transcript(path=None, items=ITEMS), settings=GenerationSettings(max_new_tokens=3))
    asked = []
    while not runner.finished:
        for event in runner.step():
            if type(event).__name__ == "StepStarted" and event.record.kind == "probe":
                asked.append(event.record.text)
    contents = [m["content"] for m in engine.lanes["delta"].messages]
    assert contents[1].startswith("DATE: 1:56 pm on 8 May, 2023\n") and contents[3].startswith("DATE: 9:02 am")
    assert not contents[2].startswith("DATE")
    assert asked == ["When did Ann adopt a dog?", "DATE: 2023/06/01 (Thu) 10:00\nWhat is the dog called?"]


def test_replay_dates_off_feeds_the_texts_alone(tiny_model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "dated.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in (
        {"role": "user", "content": "I moved to Porto.", "session": 1, "time": "2024-05-01"},
        {"role": "assistant", "content": "Nice.", "session": 1, "time": "2024-05-01"},
        {"type": "probe", "question": "Where do I live?", "answer": "Porto", "date": "2024-06-01"},
    )))
    assert load_transcript(path).probes[0].date == "2024-06-01"
    base, adapter = tiny_model_dirs
    for dates in ("on", "off"):
        report = tmp_path / f"{dates}.json"
        result = CliRunner().invoke(app, ["replay", str(path), "--headless", "--adapter", str(adapter), "--base",
                                          str(base), "--device", "cpu", "--max-new-tokens", "2", "--dates", dates,
                                          "--report", str(report)])
        assert result.exit_code == 0, result.output
        data = json.loads(report.read_text())
        assert data["config"]["dates"] == dates
        first, probe = data["turns"][0]["text"], data["turns"][2]["text"]
        assert first.startswith("DATE: 2024-05-01\n") == (dates == "on")
        assert probe.startswith("DATE: 2024-06-01\n") == (dates == "on")
    bad = CliRunner().invoke(app, ["replay", str(path), "--headless", "--dates", "maybe"])
    assert bad.exit_code != 0 and "--dates" in bad.output
