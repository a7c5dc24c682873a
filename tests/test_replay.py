"""Headless A/B replay through the CLI on a tiny offline model: reports, lane modes, partial runs, bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deltamem.runtime.contract import GenerationSettings
from deltamem_chat.cli import app
from deltamem_chat.replay import ReplayRunner, without_timings
from tests.conftest import make_engine

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "transcripts" / "fact_update.jsonl"
SMALL = Path(__file__).parent / "fixtures" / "replay_small.jsonl"


def _replay(tiny_model_dirs, tmp_path: Path, *extra: str, file: Path = SMALL, name: str = "report"):
    base, adapter = tiny_model_dirs
    report, markdown = tmp_path / f"{name}.json", tmp_path / f"{name}.md"
    result = CliRunner().invoke(app, ["replay", str(file), "--headless", "--adapter", str(adapter), "--base",
                                      str(base), "--device", "cpu", "--max-new-tokens", "6", "--report", str(report),
                                      "--markdown", str(markdown), *extra])
    return result, report, markdown


def test_headless_ab_replay_writes_the_full_report(tiny_model_dirs, tmp_path: Path) -> None:
    result, report_path, markdown = _replay(tiny_model_dirs, tmp_path, "--ab", file=SHIPPED)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["partial"] is False
    config = report["config"]
    for key in ("base", "adapter", "context_policy", "dtype", "seed", "versions", "batching"):
        assert key in config
    assert config["context_policy"] == "window:1024", "the transcript's suggested context applies"
    assert {"torch", "transformers", "deltamem"} <= set(config["versions"])
    items = sum(1 for line in SHIPPED.read_text().splitlines() if line.strip()) - 1
    assert len(report["turns"]) == items
    probe_turn = next(t for t in report["turns"] if t["kind"] == "probe")
    for lane in ("frozen", "delta"):
        for key in ("text", "tokens", "written", "ttft_s", "tokens_per_s"):
            assert key in probe_turn["lanes"][lane]
    assert report["probes"] and all({"question", "expected", "answers"} <= set(p) for p in report["probes"])
    assert all(set(p["answers"]) == {"frozen", "delta"} for p in report["probes"])
    assert all({"answer", "hit", "f1"} <= set(a) for p in report["probes"] for a in p["answers"].values())
    summary = report["summary"]
    assert set(summary["lanes"]) == {"frozen", "delta"}
    assert summary["lanes"]["frozen"]["written_tokens"] == 0
    assert summary["lanes"]["delta"]["written_tokens"] == summary["budget"]["written"] > 0
    assert "recall" in summary["lanes"]["delta"] and "mean_f1" in summary["lanes"]["delta"]
    text = markdown.read_text()
    assert "| δ-mem |" in text and "| delta |" not in text and "Expected:" in text  # the screens' titles
    votes = report["votes"]                                 # no one votes in a headless replay
    assert votes["cast"] == [] and votes["tally"] == {"frozen": 0, "delta": 0, "tie": 0, "wrong": 0}
    assert all(p["vote"] is None for p in report["probes"]) and "## Votes" not in text and "Vote:" not in text
    picture = markdown.with_name(f"{markdown.stem}.memory.svg")
    printed = result.output.replace("\n", "")  # the console wraps a long path
    assert f"({picture.name})" in text and "picture:" in printed and picture.name in printed
    assert ET.parse(picture).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_batched_and_sequential_replays_agree_apart_from_timings(tiny_model_dirs, tmp_path: Path) -> None:
    first, batched, _ = _replay(tiny_model_dirs, tmp_path, "--ab", "--batching", "batched", name="b")
    second, sequential, _ = _replay(tiny_model_dirs, tmp_path, "--ab", "--batching", "sequential", name="s")
    assert first.exit_code == second.exit_code == 0
    a, b = (without_timings(json.loads(p.read_text())) for p in (batched, sequential))
    assert a["config"].pop("batching") == "batched" and b["config"].pop("batching") == "sequential"
    assert a == b


def test_without_ab_only_the_delta_lane_runs(tiny_model_dirs, tmp_path: Path) -> None:
    result, report_path, _ = _replay(tiny_model_dirs, tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert set(report["summary"]["lanes"]) == {"delta"}


def test_ctrl_c_leaves_a_partial_report_that_says_so(tiny_model_dirs, tmp_path: Path, monkeypatch) -> None:
    original = ReplayRunner.step

    def interrupted(self, cancel=None):
        if self.position == 4:
            raise KeyboardInterrupt
        yield from original(self, cancel)

    monkeypatch.setattr(ReplayRunner, "step", interrupted)
    result, report_path, markdown = _replay(tiny_model_dirs, tmp_path, "--ab")
    assert result.exit_code == 130
    report = json.loads(report_path.read_text())
    assert report["partial"] is True and report["summary"]["items_replayed"] == 4
    assert "Partial report" in markdown.read_text()


def test_a_broken_transcript_fails_before_any_model_loads(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"role": "user", "content": "hi"}\n{"role": "robot", "content": "beep"}\n')
    result = CliRunner().invoke(app, ["replay", str(broken), "--headless", "--adapter", "/nowhere"])
    assert result.exit_code != 0
    assert "broken.jsonl:2:" in result.output and "Traceback" not in result.output


def test_a_report_path_that_is_a_folder_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["replay", str(SMALL), "--headless", "--adapter", "/nowhere",
                                      "--report", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"--report: could not write {tmp_path}: it is a folder" in " ".join(result.output.split())


def test_a_report_that_cannot_be_written_still_prints_the_table_and_is_saved_elsewhere(
        tiny_model_dirs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from deltamem.files import SaveError
    from deltamem_chat import outputs

    fallback_folder = tmp_path / "tmp"
    fallback_folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fallback_folder))
    real = outputs.atomic_write_text

    def full_disk(path, text):
        if Path(path).parent != fallback_folder:
            raise SaveError(f"could not write {path}: No space left on device")
        return real(path, text)

    monkeypatch.setattr(outputs, "atomic_write_text", full_disk)
    result, report, _ = _replay(tiny_model_dirs, tmp_path, "--markdown", "-")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Recall probes" in result.stderr                      # the table, printed before any write
    assert "# Replay:" in result.stdout                          # --markdown - : the Markdown on standard output
    message = " ".join(result.stderr.split())
    (saved,) = fallback_folder.iterdir()
    assert f"could not write {report}: No space left on device; the JSON report is saved in {saved} instead" in message
    assert json.loads(saved.read_text())["summary"]["lanes"]["delta"]["probes"] > 0
    assert not report.exists()


def test_probes_are_rolled_back_and_teacher_forcing_feeds_every_message() -> None:
    from deltamem_chat.transcripts import load_transcript

    transcript = load_transcript(SMALL)
    engine = make_engine(policy="window:120")
    runner = ReplayRunner(engine, transcript, settings=GenerationSettings(max_new_tokens=8))
    for _ in runner.run_to(len(transcript.items)):
        pass
    delta = engine.lanes["delta"]
    assert len(delta.messages) == len(transcript.messages)
    assert [m["content"] for m in delta.messages] == [m.content for m in transcript.messages]
    assert delta.written_total == len(engine.renderer.ids(delta.messages, False))
    assert runner.summary().lanes["delta"].probes == len(transcript.probes)


@pytest.mark.parametrize("args", [["--help"], ["replay", "--help"], ["import", "--help"], ["models", "--help"],
                                  ["inspect", "--help"], ["download", "--help"]])
def test_every_command_has_help(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.output


def test_inspect_shows_config_shapes_and_the_base_it_fits() -> None:
    adapter = Path(__file__).parent / "fixtures" / "parity" / "msw_4heads" / "adapter"
    result = CliRunner().invoke(app, ["inspect", str(adapter)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "num_state_heads" in result.output and "[32, 64]" in result.output
    assert "fits: hidden size 64, 2 layers" in result.output


def test_inspect_of_a_broken_adapter_is_one_sentence(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2 and "no δ-mem config file here" in result.output
    assert "Traceback" not in result.output


def test_models_lists_the_aliases(monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "220")
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    for alias in ("qwen3-4b", "qwen3-8b", "smollm3-3b", "demo"):
        assert alias in result.output
    assert "declare-lab/delta-mem_qwen3_4b-instruct" in result.output
    demo_row = next(line for line in result.output.splitlines() if "│ demo " in line)
    assert "deltamem demo backbone" in demo_row and "in package" in demo_row
    shipped = CliRunner().invoke(app, ["download", "demo"])
    assert shipped.exit_code == 0 and "nothing to download" in shipped.output


def test_download_of_an_unknown_alias_is_refused() -> None:
    result = CliRunner().invoke(app, ["download", "gpt-9"])
    assert result.exit_code == 2 and "unknown alias 'gpt-9'" in result.output


def test_version_and_a_chat_that_cannot_load_say_so_in_one_line() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("deltamem-chat ")
    result = CliRunner().invoke(app, ["--adapter", "qwen3-8b", "--device", "cpu"])
    assert result.exit_code == 2 and "no released adapter" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["--adapter", "qwen3-4b", "--context", "sideways"])
    assert result.exit_code == 2 and "window:N" in result.output


def test_chat_command_opens_the_tui_on_the_loaded_model(tiny_model_dirs, monkeypatch) -> None:
    import deltamem_chat.tui as tui

    seen = {}

    def fake_run_chat(load, policy, settings, batched, intro, read, *, lanes, retrieval, label):
        loaded = load(lambda step: None)
        seen.update(base=loaded.base, policy=str(policy), batched=batched, tokens=settings.max_new_tokens,
                    intro=intro, lanes=lanes, retrieval=str(retrieval))
        return 0

    monkeypatch.setattr(tui, "run_chat", fake_run_chat)
    base, adapter = tiny_model_dirs
    result = CliRunner().invoke(app, ["--adapter", str(adapter), "--base", str(base), "--device", "cpu",
                                      "--context", "window:300", "--batching", "sequential", "--max-new-tokens", "9",
                                      "--lanes", "frozen,rag", "--retrieval", "k=2,tokens=50"])
    assert result.exit_code == 0, result.output
    assert seen == {"base": str(base), "policy": "window:300", "batched": False, "tokens": 9, "intro": None,
                    "lanes": ("frozen", "rag"), "retrieval": "k=2,tokens=50"}
    for context, shown in (([], True), (["--context", "full"], False)):
        result = CliRunner().invoke(app, ["--adapter", "demo", "--device", "cpu", *context])
        assert result.exit_code == 0, result.output
        assert seen["policy"] == ("window:48" if shown else "full") and (seen["intro"] is not None) == shown


def test_a_locomo_replay_asks_with_the_official_wording_and_reports_its_score(tiny_model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "locomo.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in (
        {"role": "user", "content": "Ann: I adopted a dog.", "session": 1, "time": "8 May, 2023"},
        {"type": "probe", "id": "q0", "question": "When did Ann adopt a dog?", "answer": "8 May 2023", "category": 2},
        {"type": "probe", "id": "q1", "question": "What is Ann's cat called?", "answer": "", "category": 5,
         "abstain": True, "distractor": "Tom"},
    )))
    result, report_path, markdown = _replay(tiny_model_dirs, tmp_path, "--ab", "--protocol", "locomo", file=path)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["config"]["protocol"] == "locomo"
    asked = [turn["text"] for turn in report["turns"] if turn["kind"] == "probe"]
    assert asked[0] == "When did Ann adopt a dog? Use DATE of CONVERSATION to answer with an approximate date."
    assert "(a)" in asked[1] and "(b)" in asked[1] and "Tom" in asked[1] and "No information available" in asked[1]
    assert [p["category"] for p in report["probes"]] == [2, 5] and report["probes"][1]["abstain"] is True
    delta = report["summary"]["lanes"]["delta"]
    assert set(delta["categories"]) == {"2", "5"} and 0.0 <= delta["score"] <= 1.0
    bad, _, _ = _replay(tiny_model_dirs, tmp_path, "--protocol", "nope", file=path, name="bad")
    assert bad.exit_code != 0 and "--protocol" in bad.output


def test_one_line_collapses_whitespace_and_cuts_with_an_ellipsis() -> None:
    from deltamem_chat.text import one_line

    assert one_line("  a\n b\tc ", 10) == "a b c"
    assert one_line("abcdefghij", 10) == "abcdefghij" and one_line("abcdefghijk", 10) == "abcdefghi…"


def test_each_finished_step_reports_the_memory_as_the_engine_left_it() -> None:
    from deltamem_chat.replay import StepFinished
    from deltamem_chat.transcripts import load_transcript

    transcript = load_transcript(SMALL)
    engine = make_engine(policy="window:120")
    runner = ReplayRunner(engine, transcript, settings=GenerationSettings(max_new_tokens=4))
    finished = [event for event in runner.run_to(len(transcript.items)) if isinstance(event, StepFinished)]
    assert len(finished) == len(transcript.items)
    totals = [event.memory.written_total["delta"] for event in finished]
    assert totals == sorted(totals) and totals[-1] == engine.lanes["delta"].written_total > 0
    for before, event in zip([0, *totals], finished):
        if event.record.kind == "probe":
            assert event.memory.written_total["delta"] == before  # rolled back with the probe
        assert set(event.memory.diagnostics) == {"delta"}
        assert {"beta_mean", "delta_o_ratio", "state_norm", "state_norm.0"} <= set(event.memory.diagnostics["delta"])


def test_headless_shows_a_long_reads_progress_and_the_first_ctrl_c_stops_it_between_chunks() -> None:
    import io
    import os
    import signal

    from rich.console import Console

    from deltamem.runtime.contract import ReadProgress
    from deltamem_chat.replay.headless import run_headless
    from deltamem_chat.transcripts.model import Message, Transcript

    engine = make_engine(policy="window:40")
    items = [Message("user", "hello"), Message("user", "x" * 2000, document="log"), Message("user", "after")]
    runner = ReplayRunner(engine, Transcript(path=None, items=list(items)))
    read = engine.read
    seen: list[ReadProgress] = []

    def interrupted_read(*args, **kwargs):
        for event in read(*args, **kwargs):
            if isinstance(event, ReadProgress):
                seen.append(event)
                if len(seen) == 3:
                    os.kill(os.getpid(), signal.SIGINT)     # as a Ctrl-C would, mid-read
            yield event

    engine.read = interrupted_read
    printed = io.StringIO()
    handler_before = signal.getsignal(signal.SIGINT)
    report, completed, problems = run_headless(runner, {}, report_path=None, markdown_path=None,
                                               console=Console(file=printed, width=120))
    assert not completed and report["partial"] and not problems
    assert len(seen) == 3, "the read stopped at the next chunk"
    assert len(runner.records) == 2 and runner.records[1].lanes["delta"].cancelled
    written = engine.lanes["delta"].written_total
    hello = len(engine.renderer.ids([{"role": "user", "content": "hello"}]))
    assert written - hello == seen[-1].done < seen[-1].total, "what was read stays, nothing more"
    text = printed.getvalue()
    assert f"delta: {seen[-1].done:,} of {seen[-1].total:,} tokens read into memory in" in text
    assert "Interrupted" in text
    assert signal.getsignal(signal.SIGINT) is handler_before, "Ctrl-C is handled as before the replay again"
