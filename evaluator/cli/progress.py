"""The progress stream shown on stderr, so ``--json`` output stays clean: a live bar on a terminal, lines in a pipe.

Both displays are sinks of ``evaluator.events``: the library emits events, only these print them.
"""

from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn

from evaluator.cli.console import err, note
from evaluator.events import (
    BytesDone,
    Event,
    EventSink,
    ImagesDone,
    PhaseStarted,
    RunPlaced,
    SubmissionsDone,
    Waiting,
)

PIPED_PROGRESS_EVERY_S = 10.0
PIPED_COUNTDOWN_EVERY_S = 5.0
# The scorer's phase names where a person would misread them ("pass: 200,000 images" reads like "passed").
PHASE_LABELS = {"pass": "measuring"}
WAIT_LABELS = {"cooldown": "cool-down", "idle_baseline": "idle baseline"}


def time_left(seconds_left: float) -> str:
    """A countdown's text: whole seconds left, never below 0."""
    return f"{max(0.0, seconds_left):.0f} s left"


def lock_words(event: Waiting) -> str:
    return f"waiting for the scoring already running on this host ({event.detail})"


def scoring_words(event: SubmissionsDone) -> str:
    """What score-dir just finished: ``a run 2 on host-1`` (or the submission alone)."""
    if event.run is None:
        return event.submission
    return f"{event.submission} run {event.run} on {event.host}"


def placed_words(event: RunPlaced) -> str:
    return f"start {event.submission} run {event.run} on {event.host}"


class LiveProgress:
    """A rich progress bar (on a terminal)."""

    def __init__(self) -> None:
        self._progress = Progress(TextColumn("{task.description:<14}"), BarColumn(), TaskProgressColumn(),
                                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err,
                                  transient=True)
        self._task: TaskID | None = None
        self._waiting: str | None = None  # the wait shown as a countdown, while one runs

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PhaseStarted):
            self._phase(event.phase, event.total_images)
        elif isinstance(event, ImagesDone):
            self._images(event)
        elif isinstance(event, Waiting):
            self._wait(event)
        elif isinstance(event, SubmissionsDone):
            self._submissions(event)
        elif isinstance(event, RunPlaced):
            note(placed_words(event))
        elif isinstance(event, BytesDone):
            self._download(event)

    def _phase(self, name: str, total: float | None = None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(PHASE_LABELS.get(name, name), total=total, rate="")
        self._waiting = None

    def _wait(self, event: Waiting) -> None:
        """The host lock as a phase; a bounded wait as a bar that fills, the time left beside it."""
        if event.waiting_for == self._waiting:
            if event.seconds_left is not None and self._task is not None:
                task = self._progress.tasks[-1]
                self._progress.update(self._task, completed=max(0.0, (task.total or 0.0) - event.seconds_left),
                                      rate=time_left(event.seconds_left))
            return
        if event.waiting_for == "host_lock":
            self._phase(lock_words(event))
        else:
            self._phase(WAIT_LABELS.get(event.waiting_for, event.waiting_for), event.seconds_left)
            assert self._task is not None
            self._progress.update(self._task, rate=time_left(event.seconds_left or 0.0))
        self._waiting = event.waiting_for

    def _images(self, event: ImagesDone) -> None:
        if self._task is None or self._waiting is not None:
            return
        self._progress.update(self._task, completed=event.done_images)
        task = self._progress.tasks[-1]
        if task.speed:
            self._progress.update(self._task, rate=f"{task.speed:,.0f} img/s")

    def _submissions(self, event: SubmissionsDone) -> None:
        if self._task is None:
            self._task = self._progress.add_task("submissions", total=event.total, rate="")
        self._progress.update(self._task, completed=event.done, total=event.total, rate=scoring_words(event))

    def _download(self, event: BytesDone) -> None:
        if self._task is None:
            self._phase("download", event.total_bytes)
        assert self._task is not None
        self._progress.update(self._task, completed=event.done_bytes, total=event.total_bytes)


class LineProgress:
    """One line per phase, the images done at most every ``every_s``, a wait's time left at most every
    ``countdown_every_s`` (stderr is a pipe: a few lines, not a flood)."""

    def __init__(self, every_s: float = PIPED_PROGRESS_EVERY_S, countdown_every_s: float = PIPED_COUNTDOWN_EVERY_S
                 ) -> None:
        self.every_s, self.countdown_every_s = every_s, countdown_every_s
        self._name, self._last = "", 0.0
        self._waiting: str | None = None  # the wait being counted down, while one runs
        self._last_download = 0.0

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, event: Event) -> None:
        if isinstance(event, PhaseStarted):
            self._name, self._last, self._waiting = PHASE_LABELS.get(event.phase, event.phase), time.monotonic(), None
            note(f"{self._name}..." if event.total_images is None else f"{self._name}: {event.total_images:,} images")
        elif isinstance(event, ImagesDone):
            self._images(event)
        elif isinstance(event, Waiting):
            self._wait(event)
        elif isinstance(event, SubmissionsDone):
            words = scoring_words(event)
            note(f"[{event.done}/{event.total}] {words}" if words else f"[{event.done}/{event.total}] done")
        elif isinstance(event, RunPlaced):
            note(placed_words(event))
        elif isinstance(event, BytesDone):
            self._download(event)

    def _images(self, event: ImagesDone) -> None:
        if self._waiting is None and time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            note(f"{self._name}: {event.done_images:,}"
                 + (f" of {event.total_images:,} images" if event.total_images else " images"))

    def _wait(self, event: Waiting) -> None:
        """The lock's wait in one line; a bounded wait's time left now, then every ``countdown_every_s``."""
        if event.waiting_for == self._waiting:
            if event.seconds_left is not None and time.monotonic() - self._last >= self.countdown_every_s:
                self._last = time.monotonic()
                note(f"{self._name}: {time_left(event.seconds_left)}")
            return
        self._waiting, self._last = event.waiting_for, time.monotonic()
        if event.waiting_for == "host_lock":
            self._name = lock_words(event)
            note(f"{self._name}...")
        else:
            self._name = WAIT_LABELS.get(event.waiting_for, event.waiting_for)
            note(f"{self._name}: {time_left(event.seconds_left or 0.0)}")

    def _download(self, event: BytesDone) -> None:
        done, total = event.done_bytes, event.total_bytes
        if time.monotonic() - self._last_download >= self.every_s or done == total:
            self._last_download = time.monotonic()
            note(f"download: {done / 1e6:,.0f} MB" + (f" of {total / 1e6:,.0f} MB" if total else ""))


def progress_display() -> LiveProgress | LineProgress:
    return LiveProgress() if err.is_terminal else LineProgress()


def batch_view(display: EventSink, placements: bool) -> EventSink:
    """What ``edl score-dir`` shows of its stream: the count of scorings done, and with ``placements`` (a cluster)
    where each run starts. The runs' own phases, forwarded by the local backend, are in the stream for a service,
    not on the batch's display (a line per phase of every run would bury the count)."""
    shown: tuple[type, ...] = (SubmissionsDone, RunPlaced) if placements else (SubmissionsDone,)

    def sink(event: Event) -> None:
        if isinstance(event, shown):
            display(event)

    return sink
