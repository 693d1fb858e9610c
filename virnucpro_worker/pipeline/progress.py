"""A progress bar on stderr (records, frames, ETA) when it is a terminal; silent otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class _Silent:
    def advance(self, records: int, frames: int) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task, self.frames = progress, task, 0

    def advance(self, records: int, frames: int) -> None:
        self.frames += frames
        self.progress.update(self.task, advance=records, frames=self.frames)


@contextlib.contextmanager
def progress_bar(enabled: bool, total_records: int) -> Iterator[_Bar | _Silent]:
    console = Console(stderr=True)
    if not (enabled and sys.stderr.isatty()):
        yield _Silent()
        return
    columns = (
        TextColumn("records"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[frames]} frames"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield _Bar(progress, progress.add_task("predict", total=total_records, frames=0))
