"""A progress bar on stderr (records, frames, ETA) when it is a terminal; silent otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from ..pipeline.stream import StreamProgress
    from ..queue.client import JobStatus


@contextlib.contextmanager
def progress_bar(
    enabled: bool, total_records: int, unit: str = "records"
) -> Iterator[Callable[[StreamProgress], None]]:
    """A callback for `on_progress` that moves the bar to each report."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda done: None
        return
    columns = (
        TextColumn(unit),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[frames]} frames"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("predict", total=total_records, frames=0)

        def update(done: StreamProgress) -> None:
            progress.update(task, completed=done.records, frames=done.frames)

        yield update


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
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("job", total=start.shards, frames=0, state=start.state)

        def update(status: JobStatus) -> None:
            state = f"{status.state} ({status.unserved})" if status.unserved else status.state
            progress.update(
                task, completed=status.shards_done, frames=status.frames_done, state=state
            )

        yield update
