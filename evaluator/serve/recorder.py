"""A scoring's progress as the service keeps it: the worker's event sink, and score-dir called with that sink.

The sink opens and closes the window flag with the runs' metered windows (``RunWindows``, which also sums the web
server's CPU time over them), stores each event for the team's page (``Store.add_event``) and the worker's log, and
passes the event on. Nothing is written while energy is measured (the measured
passes, the idle baseline: where the child's events say so): those events are held and stored when it ends, counts
collapsed to the latest. Elsewhere counts (``ImagesDone``) and countdowns (``Waiting``) are stored at most every
``THROTTLE_S``, the latest kept for the next phase change, so the page lags by a few seconds at most.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from evaluator.batch.directory import score_directory
from evaluator.config import BatchConfig, ScoreConfig, Secrets
from evaluator.events import (
    Event,
    EventSink,
    ImagesDone,
    PhaseFinished,
    PhaseStarted,
    RunPlaced,
    SubmissionsDone,
    Waiting,
    event_json,
)
from evaluator.report.batch_record import BatchSummary
from evaluator.serve.store import Store
from evaluator.serve.window import RunWindows

THROTTLE_S = 5.0
MEASURED_PHASES = ("pass",)  # the phases whose energy is the result: nothing is written while one runs


class ProgressRecorder:
    """The worker's ``EventSink`` for one submission (see the module's docstring)."""

    def __init__(self, store: Store, submission_id: int, log_line: Callable[[str], None], windows: RunWindows,
                 onward: EventSink) -> None:
        self.store, self.submission_id, self.log_line = store, submission_id, log_line
        self.windows, self.onward = windows, onward
        self.pending: dict[str, Event] = {}
        self.stored_at: dict[str, float] = {}
        self.held: list[Event] = []  # while measuring

    def __call__(self, event: Event) -> None:
        self.windows.observe(event)  # first: whoever is told next sees the window flag as the event left it
        self.onward(event)
        if self.held or _measuring_starts(event):
            self.held.append(event)
            if _measuring_ends(event):
                self._store_held()
            return
        if isinstance(event, (ImagesDone, Waiting)):
            now = time.monotonic()
            if now - self.stored_at.get(event.kind, float("-inf")) < THROTTLE_S:
                self.pending[event.kind] = event
                return
            self.stored_at[event.kind] = now
            self.pending.pop(event.kind, None)
        else:
            self.flush()
        self._store(event)

    def flush(self) -> None:
        """Everything held back, stored now."""
        self._store_held()
        for event in self.pending.values():
            self._store(event)
        self.pending.clear()

    def _store_held(self) -> None:
        """The events held while measuring, in order, each kind of count only at its latest."""
        held, self.held = self.held, []
        latest = {event.kind: index for index, event in enumerate(held) if isinstance(event, (ImagesDone, Waiting))}
        for index, event in enumerate(held):
            if not isinstance(event, (ImagesDone, Waiting)) or latest[event.kind] == index:
                self._store(event)

    def _store(self, event: Event) -> None:
        self.store.add_event(self.submission_id, event)
        self.log_line(f"progress {json.dumps(event_json(event))}")


def _measuring_starts(event: Event) -> bool:
    return (isinstance(event, PhaseStarted) and event.phase in MEASURED_PHASES) or (
        isinstance(event, Waiting) and event.waiting_for == "idle_baseline" and event.seconds_left != 0)


def _measuring_ends(event: Event) -> bool:
    """The measured phase ended, or its run did (a run that died mid-window ends with score-dir's count)."""
    return (isinstance(event, PhaseFinished) and event.phase in MEASURED_PHASES) or (
        isinstance(event, Waiting) and event.waiting_for == "idle_baseline" and event.seconds_left == 0) or (
        isinstance(event, (RunPlaced, SubmissionsDone)))


def score_folder(folder: Path, out_root: Path, config: ScoreConfig, batch: BatchConfig, secrets: Secrets,
                 sink: EventSink, stop: threading.Event | None = None) -> BatchSummary:
    """``score_directory`` with its progress on ``sink`` (the one progress stream: the children's phases too);
    ``stop`` set: the scoring is stopped (StoppedError)."""
    return score_directory(folder, out_root, config, batch, sink=sink, secrets=secrets, stop=stop)
