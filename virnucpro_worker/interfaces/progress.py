"""A progress bar on stderr (records, frames, ETA) when it is a terminal; silent otherwise."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from ..pipeline.stream import StreamProgress
    from ..queue.client import JobStatus


@contextlib.contextmanager
def progress_bar(
    enabled: bool, total_records: int, unit: str = "records"
) -> Iterator[Callable[[StreamProgress], None]]:
    """A callback for `on_progress` that moves the bar to each report. Reports come after
    each block (about 2 Mbp): until the first, the bar pulses and the elapsed time runs, so
    that an input under one block shows it is being worked on."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda done: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn(unit),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[frames]} frames"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress, _logs_above(progress):
        task = progress.add_task("predict", total=None, frames=0)

        def update(done: StreamProgress) -> None:
            progress.update(task, total=total_records, completed=done.records, frames=done.frames)

        yield update


@contextlib.contextmanager
def _logs_above(progress: Progress) -> Iterator[None]:
    """Log lines (a demo warning, a note while waiting) printed above the live bar, not over
    it: while the bar runs, sys.stderr is rich's proxy that does so, and the log handlers
    that write to the terminal write to it too."""
    terminal = getattr(sys.stderr, "rich_proxied_file", sys.stderr)
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is terminal
    ]
    for handler in handlers:
        handler.setStream(sys.stderr)
    try:
        yield
    finally:
        for handler in handlers:
            handler.setStream(terminal)


@contextlib.contextmanager
def job_progress(enabled: bool, start: JobStatus) -> Iterator[Callable[[JobStatus], None]]:
    """A callback for `Client.wait` that shows a queued job's shards and frames."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda status: None
        return
    columns = (
        TextColumn("shards"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}, {task.fields[frames]} frames"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress, _logs_above(progress):
        task = progress.add_task("job", total=start.shards, frames=0, state=start.state)

        def update(status: JobStatus) -> None:
            state = f"{status.state} ({status.unserved})" if status.unserved else status.state
            progress.update(
                task, completed=status.shards_done, frames=status.frames_done, state=state
            )

        yield update
