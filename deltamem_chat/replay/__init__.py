"""Replaying saved transcripts through the frozen and δ-mem lanes, with recall probes scored."""

from deltamem_chat.replay.headless import run_headless
from deltamem_chat.replay.report import build_report, to_markdown, without_timings
from deltamem_chat.replay.runner import ReplayRunner, StepFinished, StepRecord, StepStarted

__all__ = ["ReplayRunner", "StepFinished", "StepRecord", "StepStarted", "build_report", "run_headless",
           "to_markdown", "without_timings"]
