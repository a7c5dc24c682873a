"""Loading's progress as steps a screen can show: our own steps, and the tqdm bars of the hub's downloads and of
transformers' `Loading weights`, reported instead of drawn (a bar drawn on the terminal would stay above the app).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from tqdm.auto import tqdm


@dataclass(frozen=True)
class LoadStep:
    """What loading does now: the step, the folder or file it reads, and how far it is (`done` of `total`) where
    the step can count; `total` None: it cannot."""

    step: str
    detail: str = ""
    done: float | None = None
    total: float | None = None


#: Where loading reports its steps; it is called from the loading thread.
Progress = Callable[[LoadStep], None]


class _ReportedBar(tqdm):  # type: ignore[misc]
    """A tqdm bar that draws nothing: each of its refreshes (at most ten a second) is reported as a `LoadStep`."""

    monitor_interval = 0              # no monitor thread per bar
    step: ClassVar[LoadStep]
    progress: ClassVar[Progress]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(file=io.StringIO(), disable=False)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        detail = " · ".join(part for part in (self.step.detail, self.desc) if part)
        type(self).progress(replace(self.step, detail=detail, done=self.n, total=self.total or None))
        return True


def reported_bar(progress: Progress, step: LoadStep) -> type[tqdm]:
    """A tqdm class (as `snapshot_download(tqdm_class=...)` takes) whose bars report as `step`."""
    return type("ReportedBar", (_ReportedBar,), {"step": step, "progress": staticmethod(progress)})


@contextmanager
def transformers_bars(progress: Progress, step: LoadStep) -> Iterator[None]:
    """While inside, transformers' own bars (its `Loading weights`) report as `step` instead of drawing."""
    from transformers.utils import logging

    bar = reported_bar(progress, step)
    previous = logging.set_tqdm_hook(lambda factory, args, kwargs: bar(*args, **kwargs))
    try:
        yield
    finally:
        logging.set_tqdm_hook(previous)
