"""The headless replay: a progress bar per item, a table at the end, reports written even when interrupted.

A long message read into memory gets a bar of its own (tokens and time left). The first Ctrl-C asks the engine to
stop at its next chunk or token, so what was read stays whole and is reported; a second one stops at once.

The table is printed before the reports are written, and a report that cannot be written where asked goes to the
temporary folder instead (`deltamem_chat.outputs`): a run's results are never lost to a full disk or a bad path.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deltamem.files import SaveError
from deltamem.runtime.contract import ReadProgress
from deltamem_chat.outputs import is_stdout, write_output
from deltamem_chat.replay.memory_svg import has_picture, picture_name, write_memory_svg
from deltamem_chat.replay.report import build_report, summary_table, to_markdown
from deltamem_chat.replay.runner import ReplayRunner, StepStarted
from deltamem_chat.text import one_line


def run_headless(runner: ReplayRunner, config: dict[str, Any], *, report_path: Path | None,
                 markdown_path: Path | None, console: Console) -> tuple[dict[str, Any], bool, list[str]]:
    """Replay every item; returns the report, whether it completed (False after Ctrl-C) and one sentence per report
    that could not be written where asked (`-` writes a report on standard output). A Markdown report in a file gets
    the memory's picture beside it (`memory_svg`)."""
    cancel = threading.Event()
    reading: dict[str, TaskID] = {}  # a lane's bar for the long message it reads
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, transient=False) as progress, \
                first_interrupt_cancels(cancel):
            task = progress.add_task("replaying", total=len(runner.transcript.items))
            while not runner.finished and not cancel.is_set():
                for event in runner.step(cancel):
                    if isinstance(event, StepStarted):
                        record = event.record
                        label = "probe" if record.kind == "probe" else record.role
                        progress.update(task, description=f"{label:>9}: {one_line(record.text, 40)}")
                    elif isinstance(event, ReadProgress):
                        if event.lane not in reading:
                            reading[event.lane] = progress.add_task(f"{event.lane:>9}: tokens into memory",
                                                                    total=event.total)
                        progress.update(reading[event.lane], completed=event.done)
                for lane, task_id in reading.items():
                    bar = next(t for t in progress.tasks if t.id == task_id)
                    progress.console.print(f"{lane:>9}: {int(bar.completed):,} of {int(bar.total or 0):,} tokens read "
                                           f"into memory in {bar.elapsed or 0.0:.1f} s", highlight=False)
                    progress.remove_task(task_id)
                reading.clear()
                if not cancel.is_set():
                    progress.advance(task)
    except KeyboardInterrupt:
        cancel.set()
    completed = not cancel.is_set()
    if not completed:
        console.print("[yellow]Interrupted: the report below covers the items replayed so far.[/]")
    report = build_report(runner, config, partial=not completed)
    console.print(summary_table(report))
    problems = []
    picture = picture_name(markdown_path) if markdown_path and not is_stdout(markdown_path) and has_picture(report) \
        else None
    outputs = [("report", report_path, "--report", "JSON report",
                lambda: json.dumps(report, indent=1, ensure_ascii=False) + "\n"),
               ("markdown", markdown_path, "--markdown", "Markdown report", lambda: to_markdown(report, picture))]
    for label, path, option, what, text in outputs:
        if path is None:
            continue
        where, problem = write_output(path, text(), what, option)
        if problem:
            problems.append(problem)
        elif not is_stdout(where):
            console.print(f"{label}: {where}", highlight=False)
        if label == "markdown" and picture and where and not is_stdout(where):
            try:
                console.print(f"picture: {write_memory_svg(report, Path(where))}", highlight=False)
            except SaveError as exc:
                problems.append(f"the memory's picture was not written: {exc}")
    return report, completed, problems


@contextmanager
def first_interrupt_cancels(cancel: threading.Event) -> Iterator[None]:
    """While inside, the first SIGINT sets `cancel` (the engine stops between chunks or tokens, within a second) and
    a second raises KeyboardInterrupt as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
