"""The one progress stream: everything in edl with news for a person emits these events; only a display shows them.

Scoring, data downloads, ``score-dir`` and the Ray backend call an ``EventSink`` (any callable taking an event);
the CLI renders the stream live on a terminal or as lines in a pipe, and a service can store it as JSON lines
(``event_json`` / ``parse_event``) to show a scoring's phase and passes on a page. Nothing else prints progress.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, ClassVar, Literal

TICK_S = 1.0  # a wait emits this often, so that a countdown moves (and a pipe gets a line now and then)

WaitingFor = Literal["host_lock", "cooldown", "idle_baseline"]


@dataclass(frozen=True)
class PhaseStarted:
    """A named phase of a scoring begins (check, data, audit, session, warmup, pass, tune ...)."""

    kind: ClassVar[str] = "phase_started"
    phase: str
    total_images: int | None = None  # when the phase counts images
    total_passes: int | None = None  # when it counts passes over the test set


@dataclass(frozen=True)
class ImagesDone:
    """Images classified so far in the current phase (cumulative, so the last event alone tells where it is)."""

    kind: ClassVar[str] = "images_done"
    phase: str
    done_images: int
    total_images: int | None = None
    done_passes: int | None = None
    total_passes: int | None = None


@dataclass(frozen=True)
class PhaseFinished:
    """The phase ended normally after ``seconds`` (a phase that raised has no end: the error says why)."""

    kind: ClassVar[str] = "phase_finished"
    phase: str
    seconds: float


@dataclass(frozen=True)
class Waiting:
    """Time passes on purpose: for the host lock (``seconds_left`` None: unknown), a cool-down, the idle baseline."""

    kind: ClassVar[str] = "waiting"
    waiting_for: WaitingFor
    seconds_left: float | None
    detail: str = ""


@dataclass(frozen=True)
class RunPlaced:
    """``score-dir`` placed one measured run of a submission on a host (local or a Ray node)."""

    kind: ClassVar[str] = "run_placed"
    submission: str
    run: int
    host: str


@dataclass(frozen=True)
class SubmissionsDone:
    """``score-dir``'s count: ``done`` of ``total`` scorings finished, ``submission`` (its ``run`` on ``host``) the
    one just finished."""

    kind: ClassVar[str] = "submissions_done"
    submission: str
    done: int
    total: int
    run: int | None = None
    host: str = ""


@dataclass(frozen=True)
class BytesDone:
    """A download's progress."""

    kind: ClassVar[str] = "bytes_done"
    what: str
    done_bytes: int
    total_bytes: int | None


Event = PhaseStarted | ImagesDone | PhaseFinished | Waiting | RunPlaced | SubmissionsDone | BytesDone
EventSink = Callable[[Event], None]
EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (PhaseStarted, ImagesDone, PhaseFinished, Waiting, RunPlaced, SubmissionsDone, BytesDone)}


def silent(event: Event) -> None:
    """The library's default sink: shows nothing."""


def event_json(event: Event) -> dict[str, object]:
    """The event as one JSON object, its type under ``event`` (a line of a stored stream)."""
    return {"event": event.kind, **dataclasses.asdict(event)}


def parse_event(document: object) -> Event:
    """The event ``event_json`` wrote; ValueError naming what is wrong otherwise (a stored stream is data, not code)."""
    if not isinstance(document, dict):
        raise ValueError("a progress event is a JSON object")
    fields = dict(document)
    cls = EVENT_TYPES.get(str(fields.pop("event", "")))
    if cls is None:
        raise ValueError(f"unknown progress event {document.get('event')!r}; known: {', '.join(EVENT_TYPES)}")
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(fields) - names:
        raise ValueError(f"progress event {cls.kind!r} has unknown fields {sorted(unknown)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"progress event {cls.kind!r}: {exc}") from None


@contextmanager
def phase(sink: EventSink, name: str, total_images: int | None = None, total_passes: int | None = None
          ) -> Iterator[None]:
    """The ``with`` block as a phase: ``PhaseStarted`` now, ``PhaseFinished`` with its seconds when it ends normally."""
    sink(PhaseStarted(name, total_images, total_passes))
    start = time.monotonic()
    yield
    sink(PhaseFinished(name, time.monotonic() - start))


def json_lines(stream: IO[str]) -> EventSink:
    """A sink that writes each event as one JSON line and flushes (a stored stream, a pipe to a parent process).

    A stream that breaks (its reader gone) stops the forwarding, never the scoring: progress is news, not evidence.
    """
    broken = False

    def sink(event: Event) -> None:
        nonlocal broken
        if broken:
            return
        try:
            stream.write(json.dumps(event_json(event)) + "\n")
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or file
            broken = True

    return sink


def read_json_lines(lines: Iterator[str] | IO[str]) -> Iterator[Event]:
    """The events of a JSON-lines stream; a line that is not one (cut short, foreign) is skipped."""
    for line in lines:
        try:
            yield parse_event(json.loads(line))
        except ValueError:
            continue


def coalesced(sink: EventSink, every_s: float = 0.5) -> EventSink:
    """``sink`` with ``ImagesDone`` passed on at most every ``every_s``: the latest is held and handed on before the
    next other event (a phase's last count always arrives, before its ``PhaseFinished``).

    For a sink that costs a write, such as a pipe: its work between measured passes stays off the energy window.
    """
    held: ImagesDone | None = None
    last = -float("inf")

    def coalescing(event: Event) -> None:
        nonlocal held, last
        if isinstance(event, ImagesDone):
            if time.monotonic() - last < every_s:
                held = event
                return
            held, last = None, time.monotonic()
        elif held is not None:
            sink(held)
            held = None
        sink(event)

    return coalescing


def tee(*sinks: EventSink) -> EventSink:
    """One sink that hands each event to every one of ``sinks`` in turn (a display and a store, say)."""

    def sink(event: Event) -> None:
        for each in sinks:
            each(event)

    return sink


def wait(sink: EventSink, waiting_for: WaitingFor, seconds: float, detail: str = "",
         sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleep ``seconds``, emitting a ``Waiting`` with the time left now and every ``TICK_S``."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sink(Waiting(waiting_for, left, detail))
        sleep(min(TICK_S, left))
    sink(Waiting(waiting_for, 0.0, detail))
