"""Progress bars for long work, on stderr, drawn only where stderr is a terminal (silent in CI, pipes, logs).

Every bar of the harness comes from here, so they all look alike; a bar opened while another is running
(sampling inside pool building, inside training) is drawn below it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

_console = Console(stderr=True)


@contextmanager
def progress(description: str, total: int) -> Iterator[Progress]:
    """A bar with one task; advance it with `bar.advance(bar.task_ids[0], k)`."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_console,
        transient=True,
        disable=not _console.is_terminal,
    )
    with bar:
        bar.add_task(description, total=total)
        yield bar


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """`items`, one bar step per item (`total` where `items` has no length)."""
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    with progress(description, total) as bar:
        for item in items:
            yield item
            bar.advance(bar.task_ids[0])
