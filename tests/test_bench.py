"""The bench runs every mode on the tiny shape and reports in the agreed format (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deltamem.bench import MODES, main

SUMMARY = {"delta_over_frozen_prefill_time", "delta_over_frozen_decode_time", "delta_over_frozen_peak_memory",
           "ab_batched_over_single_turn_time", "naive_over_chunked_scan_time"}
FIELDS = {"mode", "lane", "variant", "prompt_len", "decode_len", "seconds", "tps", "peak_alloc_gb"}
TINY = ["--shape", "tiny", "--prompt-lens", "16", "--decode-len", "3", "--scan-lens", "32", "--repeats", "1",
        "--warmup", "0"]


def test_every_mode_reports_records_machine_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report, markdown = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main([*TINY, "--json", str(report), "--markdown", str(markdown)]) == 0

    data = json.loads(report.read_text())
    assert set(data["summary"]) == SUMMARY
    assert all(isinstance(value, float) and value > 0 for value in data["summary"].values())
    assert {"cpu_count", "torch_version", "device_name", "dtype"} <= set(data["machine"])
    records = data["records"]
    assert {r["mode"] for r in records} == set(MODES)
    assert all(FIELDS <= set(r) for r in records)
    lanes = {(r["mode"], r["lane"] or r["variant"]) for r in records}
    assert {("prefill", "frozen"), ("prefill", "delta"), ("decode", "frozen"), ("decode", "delta"),
            ("memory", "frozen"), ("memory", "delta"), ("ab", "batched"), ("ab", "sequential"), ("ab", "single"),
            ("scan", "naive"), ("scan", "stepwise"), ("scan", "chunked")} == lanes
    assert all(r["peak_alloc_gb"] > 0 for r in records if r["mode"] == "memory")
    assert all(r["max_abs_diff"] < 1e-4 for r in records if r["mode"] == "scan")
    assert all(r["tps"] > 0 for r in records if r["mode"] != "memory")

    printed = capsys.readouterr().out
    assert "## Summary" in printed and markdown.read_text().strip() == printed.strip()


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
