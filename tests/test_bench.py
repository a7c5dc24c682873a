"""The bench runs every mode on the tiny shape and reports in the agreed format (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deltamem.bench import MODES, main
from deltamem_chat.cli import app

SUMMARY = {"delta_over_frozen_prefill_time", "delta_over_frozen_decode_time", "delta_over_frozen_peak_memory",
           "ab_batched_over_single_turn_time", "naive_over_chunked_scan_time",
           "ab_batched_over_single_followup_turn_time"}
FIELDS = {"mode", "lane", "variant", "prompt_len", "decode_len", "seconds", "tps", "peak_alloc_gb"}
TINY = ["--shape", "tiny", "--prompt-lens", "16", "--decode-len", "3", "--scan-lens", "32", "--repeats", "1",
        "--warmup", "0"]


def test_every_mode_reports_records_machine_and_summary(tmp_path: Path) -> None:
    """Through the CLI (`deltamem-chat bench` passes its options on to the bench)."""
    report, markdown = tmp_path / "bench.json", tmp_path / "bench.md"
    result = CliRunner().invoke(app, ["bench", *TINY, "--json", str(report), "--markdown", str(markdown)])
    assert result.exit_code == 0, result.output

    data = json.loads(report.read_text())
    assert set(data["summary"]) == SUMMARY
    assert all(isinstance(value, float) and value > 0 for value in data["summary"].values())
    assert {"cpu_count", "torch_version", "device_name", "dtype"} <= set(data["machine"])
    records = data["records"]
    assert {r["mode"] for r in records} == {*MODES, "ab-followup"}
    assert all(FIELDS <= set(r) for r in records)
    lanes = {(r["mode"], r["lane"] or r["variant"]) for r in records}
    assert {("prefill", "frozen"), ("prefill", "delta"), ("decode", "frozen"), ("decode", "delta"),
            ("memory", "frozen"), ("memory", "delta"), ("ab", "batched"), ("ab", "sequential"), ("ab", "single"),
            ("ab-followup", "batched"), ("ab-followup", "sequential"), ("ab-followup", "single"),
            ("scan", "naive"), ("scan", "stepwise"), ("scan", "chunked")} == lanes
    assert all(r["peak_alloc_gb"] > 0 for r in records if r["mode"] == "memory")
    assert all(r["max_abs_diff"] < 1e-4 for r in records if r["mode"] == "scan")
    assert all(r["tps"] > 0 for r in records if r["mode"] != "memory")

    assert data["targets"]["ab_batched_over_single_followup_turn_time"] == {"bound": "none", "verdict": "no target"}
    printed = result.stdout
    assert "## Summary" in printed and "| follow-up | 16 | 3 |" in printed
    assert markdown.read_text().strip() == printed.strip()


def test_unmeasured_ratios_are_null(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    assert main([*TINY, "--modes", "scan", "--json", str(report)]) == 0
    summary = json.loads(report.read_text())["summary"]
    assert {name for name, value in summary.items() if value is None} == SUMMARY - {"naive_over_chunked_scan_time"}


@pytest.mark.parametrize("argv", [["--modes", "prefill,fast"], ["--prompt-lens", "0"], ["--repeats", "x"],
                                  ["--shape", "huge"], ["--device", "tpu"], ["--frobnicate"]])
def test_a_bad_option_is_one_sentence(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("deltamem.bench: ")


def test_help_explains_every_option(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--shape", "--prompt-lens", "--decode-len", "--scan-lens", "--device", "--dtype", "--attn",
                   "--repeats", "--warmup", "--modes", "--json", "--markdown", "--seed"):
        assert option in text
    assert "--_child" not in text


def test_a_follow_up_turn_rewinds_to_the_same_conversation_every_time() -> None:
    """Each timed follow-up turn must do the same work: cache and memory back at the context before it runs."""
    import torch

    from deltamem.benchmarks.common import FollowUpTurn, Settings, build_model, timed_turn, token_ids
    from deltamem.kv_cache import new_cache

    settings = Settings(shape="tiny", device=torch.device("cpu"), dtype=torch.float32, attn="sdpa", repeats=1,
                        warmup=0)
    model = build_model(settings)
    context, message, decode = (token_ids(settings, n, salt=salt) for n, salt in ((20, 0), (5, 2), (4, 1)))
    turn = FollowUpTurn(model, context, message, decode, [True])
    turn()
    first = model.get_state()
    assert turn.cache.get_seq_length() == 20 + 5 + 4
    turn()
    second = model.get_state()
    model.reset()                                    # the same conversation in one go from scratch
    timed_turn(model, new_cache(model), torch.cat([context, message], dim=1), decode, [True])
    for name, state in second.items():
        assert torch.equal(state, first[name])
        torch.testing.assert_close(state, model.get_state()[name], atol=1e-5, rtol=1e-4)
