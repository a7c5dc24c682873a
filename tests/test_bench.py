"""The bench runs every mode on the tiny shape and reports in the agreed format (no timing is asserted)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deltamem.bench import main
from deltamem.benchmarks.options import MODES
from deltamem_chat.cli import app

SUMMARY = {"delta_over_frozen_prefill_time", "delta_over_frozen_decode_time", "delta_over_frozen_decode_step_paired",
           "delta_over_frozen_peak_memory",
           "ab_batched_over_single_turn_time", "naive_over_chunked_scan_time",
           "ab_batched_over_single_followup_turn_time", "bandwidth_fraction_decode", "peak_memory_over_weights"}
FIELDS = {"mode", "lane", "variant", "prompt_len", "decode_len", "seconds", "tps", "peak_alloc_gb"}
TINY = ["--shape", "tiny", "--prompt-lens", "16", "--decode-len", "3", "--scan-lens", "32", "--repeats", "1",
        "--warmup", "0"]


def test_every_mode_reports_records_machine_and_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI (`deltamem-chat bench` passes its options on to the bench). The memory mode's children run
    in this process (their command line goes through the bench's own parser), which saves two imports of torch."""
    from deltamem.benchmarks import peak

    run = subprocess.run

    def in_process(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        if command[1:4] != ["-m", "deltamem.bench", "--_child"]:
            return run(command, **options)  # type: ignore[call-overload]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(command[3:])
        return subprocess.CompletedProcess(command, code, printed.getvalue(), "")

    monkeypatch.setattr(peak.subprocess, "run", in_process)
    report, markdown = tmp_path / "bench.json", tmp_path / "bench.md"
    result = CliRunner().invoke(app, ["bench", *TINY, "--json", str(report), "--markdown", str(markdown)])
    assert result.exit_code == 0, result.output

    data = json.loads(report.read_text())
    assert set(data["summary"]) == SUMMARY
    # In this process the memory children's high-water marks may stand where earlier tests left them: their ratios
    # are measured but may be unmeasurable (None) here; every other ratio is a positive number.
    memory = {"delta_over_frozen_peak_memory", "peak_memory_over_weights"}
    assert all(isinstance(value, float) and value > 0 for key, value in data["summary"].items() if key not in memory)
    assert all(data["summary"][key] is None or data["summary"][key] >= 0 for key in memory)
    assert {"cpu_count", "torch_version", "device_name", "dtype"} <= set(data["machine"])
    records = data["records"]
    assert {r["mode"] for r in records} == {*MODES, "ab-followup"}
    assert all(FIELDS <= set(r) for r in records)
    lanes = {(r["mode"], r["lane"] or r["variant"]) for r in records}
    assert {("prefill", "frozen"), ("prefill", "delta"), ("decode", "frozen"), ("decode", "delta"),
            ("memory", "frozen"), ("memory", "delta"), ("ab", "batched"), ("ab", "sequential"), ("ab", "single"),
            ("ab-followup", "batched"), ("ab-followup", "sequential"), ("ab-followup", "single"),
            ("scan", "naive"), ("scan", "stepwise"), ("scan", "chunked")} == lanes
    assert all(r["peak_alloc_gb"] >= 0 for r in records if r["mode"] == "memory")
    assert all(r["max_abs_diff"] < 1e-4 for r in records if r["mode"] == "scan")
    assert all(r["tps"] > 0 for r in records if r["mode"] != "memory")

    assert data["targets"]["ab_batched_over_single_followup_turn_time"] == {"bound": "none", "verdict": "no target"}
    printed = result.stdout
    assert "## Summary" in printed and "| follow-up | 16 | 3 |" in printed
    assert markdown.read_text().strip() == printed.strip()


def test_a_real_width_with_fewer_layers_and_quantized_copies(tmp_path: Path) -> None:
    """--layers and --vocab take a shape apart; --quantize adds copies whose lanes are timed beside the model's."""
    report = tmp_path / "bench.json"
    argv = ["--shape", "cpu-bench", "--layers", "1", "--vocab", "512", "--prompt-lens", "16", "--decode-len", "2",
            "--repeats", "1", "--warmup", "0", "--modes", "decode", "--quantize", "none,int8,int4",
            "--json", str(report)]
    assert main(argv) == 0
    data = json.loads(report.read_text())
    details = data["settings"]["shape_details"]
    assert (details["layers"], details["layers_of"], details["vocab"], details["vocab_of"]) == (1, 8, 512, 4096)
    assert data["settings"]["shape_label"] == "cpu-bench (1 of 8 layers, vocab 512 of 4096)"
    assert data["machine"]["dtype"] == "bfloat16"                   # auto, with quantized copies
    [kernel] = [k for k in data["machine"]["one_row_kernel"] if k["matrix"] == [1536, 512]]   # the bf16 copy's
    assert kernel["chosen"] in ("aten", "onednn") and kernel["dtype"] == "bfloat16"
    assert kernel["onednn_ms"] > 0 and kernel["aten_ms"] > 0
    decode = {(r["quantize"], r["lane"]): r for r in data["records"] if r["mode"] == "decode"}
    assert set(decode) == {(q, lane) for q in ("none", "int8", "int4") for lane in ("frozen", "delta")}
    assert decode["none", "delta"]["bytes_read"] > decode["int8", "delta"]["bytes_read"] > decode["int4", "delta"][
        "bytes_read"] > decode["none", "frozen"]["bytes_read"] / 4
    for r in decode.values():
        assert r["read_gbps"] > 0 and r["copy_gbps"] > 0
        assert r["bandwidth_fraction"] == pytest.approx(r["bytes_read"] / (r["read_gbps"] * 1e9) / r["seconds"])
    summary = data["summary"]
    for name in ("bandwidth_fraction_decode", "bandwidth_fraction_decode_int8", "decode_speed_int8_over_none",
                 "decode_speed_int4_over_none"):
        assert summary[name] > 0, name
    assert data["targets"]["delta_over_frozen_decode_time"]["bound"] == "<= 1.02"     # bfloat16's target


def test_the_memory_child_builds_the_same_shape_and_quantization(monkeypatch, capsys) -> None:
    """The parent passes shape, layers, vocabulary and quantization on; the child reports the weights' bytes."""
    import subprocess

    import torch

    from deltamem.benchmarks import peak
    from deltamem.benchmarks.common import Settings

    settings = Settings(shape="cpu-bench", device=torch.device("cpu"), dtype=torch.bfloat16, attn="sdpa", repeats=1,
                        warmup=0, layers=1, vocab_size=512, prefill_chunk=64)
    assert peak.child_main(settings, "delta", 8, 2, "int8") == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(printed)
    assert 0 < result["weight_gb"] < 2 * 512 * 512 * 14 / 2**30        # int8: about a byte a weight
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **_: commands.append(command) or subprocess
                        .CompletedProcess(command, 0, printed + "\n", ""))
    assert peak.memory_records(settings, [8], 2, ["int8"])[0].weight_gb == result["weight_gb"]
    command = " ".join(commands[0])
    assert "--shape cpu-bench" in command and "--layers 1" in command and "--vocab 512" in command
    assert "--quantize int8" in command and "--dtype bfloat16" in command and "--prefill-chunk 64" in command


def test_prompts_are_prefilled_in_the_spans_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--prefill-chunk sets the spans of every prefill, the engine's included, for the run only."""
    from deltamem.model import DeltaMemModel
    from deltamem.runtime import prefill

    widths: list[int] = []
    forward = DeltaMemModel.forward

    def recording(self, *args, **kwargs):
        widths.append(kwargs["input_ids"].shape[1])
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(DeltaMemModel, "forward", recording)
    report = tmp_path / "bench.json"
    argv = ["--shape", "tiny", "--prompt-lens", "16", "--decode-len", "1", "--repeats", "1", "--warmup", "0",
            "--modes", "prefill", "--prefill-chunk", "6", "--json", str(report)]
    assert main(argv) == 0
    prefills = [w for w in widths if w > 1]
    assert prefills and set(prefills) == {6, 4} and prefills.count(6) == 2 * prefills.count(4)     # 16 = 6 + 6 + 4
    assert json.loads(report.read_text())["settings"]["prefill_chunk"] == 6
    assert prefill.PREFILL_CHUNK == 512


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
                   "--repeats", "--warmup", "--modes", "--json", "--markdown", "--seed", "--layers", "--vocab",
                   "--quantize"):
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


def test_the_paired_decode_ratio_is_the_median_of_step_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pair times one step of each lane back to back; the ratio is the median of δ-mem over frozen per pair,
    so the machine's drift between pairs does not move it, nor one pair split by a stall."""
    import torch

    from deltamem.benchmarks import lanes
    from deltamem.benchmarks.common import Settings

    # A warm-up step each, then three pairs while the machine slows down: the ratio of the lanes' medians would say
    # 0.55 (0.011 / 0.020); two of the three pairs say 1.1.
    timings = {False: iter([0.050, 0.010, 0.020, 0.030]),
               True: iter([0.050, 0.011, 0.022, 0.010])}

    class Step:
        def __init__(self, model: object, context: object, message: object, decode: object,
                     memory: list[bool]) -> None:
            self.seconds = timings[memory[0]]

        def __call__(self) -> tuple[float, float]:
            return next(self.seconds), 0.0

    monkeypatch.setattr(lanes, "FollowUpTurn", Step)
    settings = Settings(shape="tiny", device=torch.device("cpu"), dtype=torch.float32, attn="sdpa", repeats=1,
                        warmup=0)
    ratio = lanes.paired_step_ratio(None, settings, torch.zeros(1, 4, dtype=torch.long), pairs=3)  # type: ignore[arg-type]
    assert ratio == pytest.approx(1.1)
