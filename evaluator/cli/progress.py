"""Progress on stderr, so ``--json`` output stays clean: a live bar on a terminal, a line per phase in a pipe."""

from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn

from evaluator.cli.console import err, note

PIPED_PROGRESS_EVERY_S = 10.0
PIPED_COUNTDOWN_EVERY_S = 5.0


def time_left(deadline: float) -> str:
    """A countdown's text: whole seconds left, never below 0."""
    return f"{max(0.0, deadline - time.monotonic()):.0f} s left"


class LiveProgress:
    """A rich progress bar (on a terminal)."""

    def __init__(self) -> None:
        self._progress = Progress(TextColumn("{task.description:<14}"), BarColumn(), TaskProgressColumn(),
                                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err,
                                  transient=True)
        self._task: TaskID | None = None
        self._deadline: float | None = None  # the end of a countdown, while one runs

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(name, total=total, rate="")
        self._deadline = None

    def countdown(self, name: str, seconds: float) -> None:
        """A bar that fills over ``seconds``, the time left beside it (moved by the wait's ``advance`` calls)."""
        self.phase(name, None)
        assert self._task is not None
        self._deadline = time.monotonic() + seconds
        self._progress.update(self._task, total=seconds, rate=time_left(self._deadline))

    def advance(self, images: int = 0) -> None:
        if self._task is None:
            return
        if self._deadline is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, completed=min(task.total or 0.0, task.elapsed or 0.0),
                                  rate=time_left(self._deadline))
            return
        self._progress.advance(self._task, images)
        task = self._progress.tasks[-1]
        if task.speed:
            self._progress.update(self._task, rate=f"{task.speed:,.0f} img/s")

    def submissions(self, name: str, done: int, total: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task("submissions", total=total, rate="")
        self._progress.update(self._task, completed=done, total=total, rate=name)

    def download(self, done: int, total: int | None) -> None:
        if self._task is None:
            self.phase("download", total)
        assert self._task is not None
        self._progress.update(self._task, completed=done, total=total)


class LineProgress:
    """One line per phase, and the images done at most every ``PIPED_PROGRESS_EVERY_S`` (stderr is a pipe)."""

    def __init__(self, every_s: float = PIPED_PROGRESS_EVERY_S, countdown_every_s: float = PIPED_COUNTDOWN_EVERY_S
                 ) -> None:
        self.every_s, self.countdown_every_s = every_s, countdown_every_s
        self._name, self._done, self._last = "", 0, 0.0
        self._total: int | None = None
        self._deadline: float | None = None  # the end of a countdown, while one runs
        self._last_download = 0.0

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def phase(self, name: str, total: int | None = None) -> None:
        self._name, self._total, self._done, self._last = name, total, 0, time.monotonic()
        self._deadline = None
        note(f"{name}..." if total is None else f"{name}: {total:,} images")

    def countdown(self, name: str, seconds: float) -> None:
        """One line now, then the time left every ``countdown_every_s``: a pipe gets a few lines, not a flood."""
        self._name, self._total, self._done, self._last = name, None, 0, time.monotonic()
        self._deadline = self._last + seconds
        note(f"{name}: {time_left(self._deadline)}")

    def advance(self, images: int = 0) -> None:
        if self._deadline is not None:
            if time.monotonic() - self._last >= self.countdown_every_s:
                self._last = time.monotonic()
                note(f"{self._name}: {time_left(self._deadline)}")
            return
        self._done += images
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            note(f"{self._name}: {self._done:,}" + (f" of {self._total:,} images" if self._total else " images"))

    def submissions(self, name: str, done: int, total: int) -> None:
        note(f"[{done}/{total}] {name}" if name else f"[{done}/{total}] done")

    def download(self, done: int, total: int | None) -> None:
        if time.monotonic() - self._last_download >= self.every_s or done == total:
            self._last_download = time.monotonic()
            note(f"download: {done / 1e6:,.0f} MB" + (f" of {total / 1e6:,.0f} MB" if total else ""))


def progress_display() -> LiveProgress | LineProgress:
    return LiveProgress() if err.is_terminal else LineProgress()
