"""The headless replay: a progress bar per item, a table at the end, reports written even when interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deltamem.files import atomic_write_text
from deltamem_chat.replay.report import build_report, summary_table, to_markdown, write_json
from deltamem_chat.replay.runner import ReplayRunner, StepStarted
from deltamem_chat.text import one_line


def run_headless(runner: ReplayRunner, config: dict[str, Any], *, report_path: Path | None,
                 markdown_path: Path | None, console: Console) -> tuple[dict[str, Any], bool]:
    """Replay every item; returns the report and whether it completed (False after Ctrl-C)."""
    completed = False
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task("replaying", total=len(runner.transcript.items))
            while not runner.finished:
                for event in runner.step():
                    if isinstance(event, StepStarted):
                        record = event.record
                        label = "probe" if record.kind == "probe" else record.role
                        progress.update(task, description=f"{label:>9}: {one_line(record.text, 40)}")
                progress.advance(task)
        completed = True
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: the report below covers the items replayed so far.[/]")
    report = build_report(runner, config, partial=not completed)
    if report_path is not None:
        write_json(report, report_path)
        console.print(f"report: {report_path}")
    if markdown_path is not None:
        atomic_write_text(markdown_path, to_markdown(report))
        console.print(f"markdown: {markdown_path}")
    console.print(summary_table(report))
    return report, completed

