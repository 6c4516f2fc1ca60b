"""A rich progress bar per endpoint while a round runs (on stderr; silent when disabled)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

EndpointKey = tuple[str, str]


class ProgressBars:
    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("{task.description:<32}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("errors {task.fields[errors]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self._tasks: dict[EndpointKey, TaskID] = {}
        self._errors: dict[EndpointKey, int] = {}

    def __enter__(self) -> ProgressBars:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def planned(self, key: EndpointKey, count: int) -> None:
        if key not in self._tasks:
            self._errors[key] = 0
            self._tasks[key] = self._progress.add_task(f"{key[0]}/{key[1]}", total=count, errors=0)
        else:
            task = self._tasks[key]
            total = self._progress.tasks[task].total or 0
            self._progress.update(task, total=total + count)

    def answered(self, key: EndpointKey, ok: bool) -> None:
        if not ok:
            self._errors[key] += 1
        self._progress.update(self._tasks[key], advance=1, errors=self._errors[key])
