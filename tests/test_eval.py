"""`deltamem-chat eval` on the shipped demo model: the table, resuming after an interruption, shards and merging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deltamem_chat.cli import app
from deltamem_chat.eval import run as eval_run
from deltamem_chat.eval.store import read_results

ROOT = Path(__file__).resolve().parent.parent
BENCH = [str(ROOT / "transcripts" / "demo_1.jsonl"), str(ROOT / "transcripts" / "demo_2.jsonl")]
ARGS = ["--conditions", "full,window:48", "--adapter", "demo", "--device", "cpu", "--max-new-tokens", "12"]


def _eval(out: Path, *extra: str, paths: list[str] = BENCH):
    return CliRunner().invoke(app, ["eval", *paths, *ARGS, "--out", str(out), *extra])


def _units(folder: Path, name: str = "results.jsonl") -> dict[str, dict]:
    """The units of a results file without their wall-clock time, by unit name."""
    return {r["unit"]: {k: v for k, v in r.items() if k != "seconds"} for r in read_results(folder / name)}


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "whole"
    result = _eval(out)
    assert result.exit_code == 0, result.output
    return out


def test_eval_prints_the_table_and_writes_results_and_summaries(whole: Path) -> None:
    units = _units(whole)
    assert list(units) == ["demo_1 @ full", "demo_1 @ window:48", "demo_2 @ full", "demo_2 @ window:48"]
    summary = json.loads((whole / "summary.json").read_text())
    for condition in ("full", "window:48"):
        for lane in ("frozen", "delta"):
            answers = [p["answers"][lane] for u in units.values() if u["condition"] == condition for p in u["probes"]]
            assert summary["conditions"][condition][lane]["probes"] == len(answers) > 0
            assert summary["conditions"][condition][lane]["score"] == round(
                sum(a["score"] for a in answers) / len(answers), 4)
    # The demo's point: under its own window only the δ-mem lane can still answer.
    window = summary["conditions"]["window:48"]
    assert window["delta"]["score"] > window["frozen"]["score"]
    markdown = (whole / "summary.md").read_text()
    assert "| window:48 | delta |" in markdown and "protocol ours" in markdown
    assert json.loads((whole / "run.json").read_text())["settings"]["conditions"] == ["full", "window:48"]


def test_an_interrupted_eval_continues_where_it_stopped_and_ends_the_same(
        whole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "resumed"
    real, calls = eval_run.run_unit, []

    def interrupted(*args, **kwargs):
        calls.append(args[1].key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(eval_run, "run_unit", interrupted)
    first = _eval(out)
    assert first.exit_code == 130 and "the same command continues" in " ".join(first.output.split())
    assert list(_units(out)) == ["demo_1 @ full"], "the finished unit is saved, the one in progress is not"
    monkeypatch.setattr(eval_run, "run_unit", real)
    with (out / "results.jsonl").open("a") as handle:
        handle.write('{"unit": "demo_1 @ window:48", "probes": [')      # a line cut short by a crash
    second = _eval(out)
    assert second.exit_code == 0, second.output
    assert "1 of 4 units already done" in " ".join(second.output.split())
    assert _units(out) == _units(whole)
    assert json.loads((out / "summary.json").read_text()) == json.loads((whole / "summary.json").read_text())


def test_shards_merged_equal_one_run(whole: Path, tmp_path: Path) -> None:
    for k in (1, 2):
        result = _eval(tmp_path / f"shard{k}", "--shard", f"{k}/2")
        assert result.exit_code == 0, result.output
    assert list(_units(tmp_path / "shard1", "results-1-of-2.jsonl")) == ["demo_1 @ full", "demo_2 @ full"]
    lonely = CliRunner().invoke(app, ["eval", "--merge", str(tmp_path / "shard1"), "--out", str(tmp_path / "m1")])
    assert lonely.exit_code != 0 and "lack 2 of 4 units" in lonely.output
    merged = CliRunner().invoke(app, ["eval", "--merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"),
                                      "--out", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.output
    assert _units(tmp_path / "merged") == _units(whole)
    assert list(_units(tmp_path / "merged")) == list(_units(whole)), "merged in the run's order"
    assert (json.loads((tmp_path / "merged" / "summary.json").read_text())
            == json.loads((whole / "summary.json").read_text()))


def test_a_folder_of_another_run_and_bad_options_are_refused(whole: Path, tmp_path: Path) -> None:
    other = _eval(whole, "--seed", "3")
    assert other.exit_code != 0 and "seed: 0 → 3" in other.output
    official = _eval(tmp_path / "x", "--official", "--protocol", "locomo", "--temperature", "0.2")
    assert official.exit_code != 0 and "--temperature" in official.output and "drop" in official.output
    ours = _eval(tmp_path / "x", "--official")
    assert ours.exit_code != 0 and "--official" in ours.output
    for bad, words in ((["--shard", "3/2"], "--shard"), (["--conditions", "full,full"], "twice"),
                       (["--protocol", "nope"], "--protocol")):
        result = _eval(tmp_path / "y", *bad)
        assert result.exit_code != 0 and words in result.output, result.output
    missing = _eval(tmp_path / "z", paths=[str(tmp_path / "nothing-here")])
    assert missing.exit_code != 0 and "no such file or folder" in missing.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_summary_that_cannot_be_written_is_printed_and_saved_elsewhere(
        whole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import tempfile

    out = tmp_path / "done"
    shutil.copytree(whole, out)
    (out / "summary.json").unlink()
    (out / "summary.json").mkdir()                              # something in the way of the summary
    fallback_folder = tmp_path / "tmp"
    fallback_folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fallback_folder))
    result = _eval(out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "window:48" in result.stdout                          # the table, printed first
    (saved,) = fallback_folder.iterdir()
    message = " ".join(result.stderr.split())
    assert f"could not write {out / 'summary.json'}: it is a folder; the summary is saved in {saved} instead" in message
    assert set(json.loads(saved.read_text())["conditions"]) == {"full", "window:48"}


def test_a_result_that_cannot_be_added_keeps_the_finished_units(tmp_path: Path, monkeypatch) -> None:
    from deltamem_chat.commands import evaluate

    def full_disk(path, result):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate, "append_result", full_disk)
    result = _eval(tmp_path / "full", paths=BENCH[:1])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "could not add a result to" in result.output and "No space left on device" in result.output
    assert "run the same command to continue" in " ".join(result.output.split())


def test_a_retrieval_lane_gets_its_evidence_recall_in_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "rag"
    result = CliRunner().invoke(app, ["eval", BENCH[0], "--conditions", "window:48", "--adapter", "demo", "--device",
                                      "cpu", "--max-new-tokens", "4", "--lanes", "frozen,rag", "--out", str(out)])
    assert result.exit_code == 0, result.output
    probes = [p for u in read_results(out / "results.jsonl") for p in u["probes"]]
    verdicts = [p["retrieval"]["rag"]["evidence"] for p in probes]
    found, missed = verdicts.count("found"), verdicts.count("missed")
    assert found + missed > 0 and "frozen" not in probes[0]["retrieval"]
    lanes = json.loads((out / "summary.json").read_text())["conditions"]["window:48"]
    assert "retrieval" not in lanes["frozen"]
    assert lanes["rag"]["retrieval"]["found"] == found and lanes["rag"]["retrieval"]["missed"] == missed
    assert lanes["rag"]["retrieval"]["recall_at_k"] == round(found / (found + missed), 4)
    markdown = (out / "summary.md").read_text()
    assert "evidence recall@k" in markdown and f"({found}/{found + missed})" in markdown
    assert "evidence recall@k" in " ".join(result.output.split())
