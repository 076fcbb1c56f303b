"""The store's records: teams, submissions and their states, quotas, progress; tokens and the times they carry.

``evaluator.serve.store`` re-exports the names the web app needs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from evaluator.errors import EdlError
from evaluator.events import Event, ImagesDone, PhaseStarted, SubmissionsDone

State = Literal["received", "checked", "queued", "scoring", "scored", "failed", "cancelled"]
STATES: tuple[State, ...] = ("received", "checked", "queued", "scoring", "scored", "failed", "cancelled")
# Whose fault a failure was: "team" (the model failed or ran out of time: it counts), "check" (the file broke the
# contract), "quota" (refused over a quota), "organiser" (our machine failed: scored again or refunded).
Fault = Literal["team", "check", "quota", "organiser"]
TEAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
LOG_TAIL_LINES = 40


class StoreError(EdlError):
    """A change the store refuses: the message says why, in words a team or the organiser can act on."""

    exit_code = 2


@dataclass(frozen=True)
class Team:
    id: int
    name: str
    added_utc: str
    revoked_utc: str | None = None
    organiser: bool = False


@dataclass(frozen=True)
class Submission:
    """One upload and where it stands. ``times`` holds the latest UTC time of each state it reached, in the order
    those happened; ``timeline`` every (state, UTC time) it passed through, in order."""

    id: int
    team: str
    sha256: str
    size: int
    path: Path
    state: State
    times: dict[str, str]
    reason: str | None = None
    fault: Fault | None = None
    log_tail: str | None = None
    result_folder: str | None = None
    duplicate_of: int | None = None  # another team's submission of the same file: flagged for the organiser
    lease_expiries: int = 0
    worker_id: str | None = None
    chosen: bool = False  # the team's pick for the final scoring
    timeline: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The name it is scored and ranked under (its result folder's name)."""
        return f"{self.team}-{self.id}"

    def rerun_refusal(self) -> str | None:
        """Why the organiser cannot score it again, or None: the one rule the store applies and the page follows."""
        if self.state not in ("scored", "failed"):
            return f"submission {self.id} is {self.state}: only a scored or failed one can be scored again"
        if self.fault in ("check", "quota"):
            return (f"submission {self.id} failed its {self.fault} and never reached the queue: only a scored or "
                    "failed one can be scored again, once it was queued")
        return None


@dataclass(frozen=True)
class Quota:
    """A team's use of its quota now: what counted today (UTC) and in all, and what waits or scores."""

    used_today: int
    left_today: int
    used_total: int
    left_total: int
    waiting: int  # queued or scoring now
    max_waiting: int

    def refusal(self) -> str | None:
        """Why one more submission cannot be queued now, or None."""
        if self.left_total <= 0:
            return f"your {self.used_total} submissions use the whole quota of the competition"
        if self.left_today <= 0:
            return f"today's quota of {self.used_today} is used; submit again after 00:00 UTC"
        if self.waiting >= self.max_waiting:
            return f"{self.waiting} of your submissions wait or score already (at most {self.max_waiting}); " \
                   "submit again when one is done, or cancel one"
        return None


@dataclass(frozen=True)
class Limits:
    """The quotas the store enforces (from the competition's settings)."""

    per_day: int = 5
    in_total: int = 50
    max_queued: int = 2


@dataclass(frozen=True)
class Progress:
    """What a page shows of a scoring in progress: its phase, images and passes done, runs done, the latest event."""

    phase: str | None = None
    done_passes: int | None = None
    total_passes: int | None = None
    done_images: int | None = None
    total_images: int | None = None
    latest: Event | None = None
    utc: str | None = None
    events: int = 0
    done_runs: int | None = None  # score-dir's count of measured runs finished, of total_runs
    total_runs: int | None = None


def summarise(events: list[tuple[str, Event]]) -> Progress:
    """The progress that a stream of (UTC time, event) shows at its end: a phase resets the counts."""
    progress = Progress(events=len(events))
    for utc, event in events:
        if isinstance(event, PhaseStarted):
            progress = replace(progress, phase=event.phase, done_passes=None, total_passes=event.total_passes,
                               done_images=None, total_images=event.total_images)
        elif isinstance(event, ImagesDone):
            progress = replace(progress, phase=event.phase, done_passes=event.done_passes,
                               total_passes=event.total_passes, done_images=event.done_images,
                               total_images=event.total_images)
        elif isinstance(event, SubmissionsDone):
            progress = replace(progress, done_runs=event.done, total_runs=event.total)
        progress = replace(progress, latest=event, utc=utc)
    return progress


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def utc_text(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).isoformat(timespec="microseconds")


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


# A team's same file again is received again when what it failed on can change since: why, for its history.
RECEIVED_AGAIN = {"quota": "uploaded again after it was refused for the quota",
                  "organiser": "uploaded again after the scoring machine failed it"}


def received_again(state: str, fault: str | None) -> str | None:
    """Why an earlier submission of the same file is received again; None when it stands (a check failure of the
    same bytes, or the team's own scoring fault, would only fail again)."""
    if state == "cancelled":
        return "uploaded again after it was cancelled"
    return RECEIVED_AGAIN.get(fault or "") if state == "failed" else None


def stopped_detail(worker_id: str) -> str:
    """The history's note when a stopped worker gives its submission back."""
    return f"the scoring worker {worker_id} was stopped"
