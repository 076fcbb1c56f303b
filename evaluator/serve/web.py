"""What the pages and the JSON API share: the competition, who is asking, the upload flow, the rendered board.

An upload is streamed to disk, kept under its sha256, recorded (``received``), then checked in an
isolated child at once unless a measurement window is open: then it waits, and a background checker
takes it when the window closes (so nothing the service does adds work to a window). The board is
re-rendered by a background thread when results change and no window is open; every request for it is
served from what is already rendered.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from evaluator.errors import EdlError
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME, TIMELINE_NAME, Result
from evaluator.serve.auth import RateLimiter, Sessions
from evaluator.serve.board import Board
from evaluator.serve.checking import (
    CheckOutcome,
    check_description_isolated,
    check_model_isolated,
    close_check_server,
)
from evaluator.serve.competition import open_store
from evaluator.serve.phases import phase, phase_words, refuse_description_reason, refuse_upload_reason
from evaluator.serve.settings import load_competition
from evaluator.serve.store import Store, StoreError, Submission, Team
from evaluator.serve.uploads import FilePart, StagedFile, keep

MODEL_FIELD, DESCRIPTION_FIELD = "model", "description"
CHECK_POLL_S = 1.0
BOARD_POLL_S = 2.0


@dataclass(frozen=True)
class WebLimits:
    """Requests each client may make: per second sustained, and at once (a burst). Flooding costs a 429."""

    read_per_s: float = 5.0
    read_burst: float = 30.0
    write_per_s: float = 0.5
    write_burst: float = 6.0
    signin_per_s: float = 0.1
    signin_burst: float = 5.0


class Refused(EdlError):  # noqa: N818 - named for what the service does, as the CLI's Interrupted is
    """A request the service refuses, with the HTTP status and one line saying why and what to do."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Verdict:
    """What a team is told about one submission: its state, place in the queue and every problem."""

    submission: Submission
    position: int | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    same_file_as: str | None = None  # another team's submission of the same bytes (its name): for the organiser

    @property
    def held(self) -> bool:
        """Another team's file byte for byte: whatever the worker did with it, the team is shown no figures (they
        would be the other team's) and the organiser decides."""
        return self.submission.duplicate_of is not None and self.submission.state in ("queued", "scoring", "scored")

    @property
    def rerunnable(self) -> bool:
        """Whether the organiser's re-run would be taken (the store's own rule): the page offers no Re-run that
        would only answer 409."""
        return self.submission.rerun_refusal() is None

    @property
    def message(self) -> str:
        state, position = self.submission.state, self.position
        if self.held:
            return (f"held for the organiser's review: this file is the same (sha256 {self.submission.sha256[:16]}…) "
                    "as another team's submission")
        if state == "queued" and position is not None:
            return f"queued, position {position}"
        if state == "scoring":
            return "scoring now"
        if state == "received":
            return "received: its check waits until the measurement in progress ends"
        if state == "failed":
            return "failed: " + (self.submission.reason or "no reason recorded")
        return state


class Web:
    """The service's state in one process: the store, the sessions, the rate limits and the rendered board."""

    def __init__(self, competition_dir: Path, limits: WebLimits | None = None) -> None:
        self.competition = load_competition(competition_dir)
        self.settings = self.competition.settings
        self.store: Store = open_store(self.competition)
        self.limits = limits or WebLimits()
        self.sessions = Sessions()
        self.rates = {"read": RateLimiter(self.limits.read_per_s, self.limits.read_burst),
                      "write": RateLimiter(self.limits.write_per_s, self.limits.write_burst),
                      "signin": RateLimiter(self.limits.signin_per_s, self.limits.signin_burst)}
        self.board = Board(self.competition)
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- who is asking ------------------------------------------------------------------------------------

    def team_for(self, token: str | None) -> Team | None:
        if not token:
            return None
        team = self.store.team_by_token(token)
        return None if team is None or team.organiser else team

    def is_organiser(self, token: str | None) -> bool:
        return bool(token) and self.store.is_organiser(token or "")

    def current_team(self, name: str) -> Team | None:
        """A signed-in team as it stands now: None once revoked."""
        try:
            team = self.store.team(name)
        except EdlError:
            return None
        return None if team.revoked_utc else team

    # --- the phase ------------------------------------------------------------------------------------------

    def phase(self) -> str:
        """open -> frozen (at the deadline) -> final (the organiser's final scoring) -> published."""
        return phase(self.settings, self.store)

    def phase_words(self) -> str:
        return phase_words(phase(self.settings, self.store), self.settings)

    def board_state(self) -> str:
        return "final" if self.phase() == "published" else "provisional"

    def refuse_upload(self, team: Team) -> None:
        """Asked before an upload streams: the phase, a revoked token, the quota."""
        reason = refuse_upload_reason(self.settings, self.store, team)
        if reason is not None:
            raise Refused(reason if self.phase() != "open" else f"not received: {reason}",
                          409 if self.phase() != "open" else 429)

    def refuse_description(self, team: Team) -> None:
        reason = refuse_description_reason(self.settings, self.store, team)
        if reason is not None:
            raise Refused(reason, 409)

    # --- submissions ----------------------------------------------------------------------------------------

    def model_parts(self) -> dict[str, FilePart]:
        return {MODEL_FIELD: FilePart(self.settings.upload_max_bytes, ".onnx")}

    def description_parts(self) -> dict[str, FilePart]:
        return {DESCRIPTION_FIELD: FilePart(self.settings.description_max_bytes, ".pdf")}

    @property
    def staging(self) -> Path:
        return self.competition.uploads / ".staging"

    def accept(self, team: Team, staged: StagedFile | None) -> Verdict:
        """A streamed model recorded, then checked now (or when the window closes); the team's verdict."""
        if staged is None:
            raise Refused("no file in the upload: send the model as the form field 'model' "
                          "(curl -F model=@MODEL.onnx)", 400)
        existing = next((s for s in self.store.submissions_of(team)
                         if s.sha256 == staged.sha256 and s.state != "cancelled"), None)
        if existing is not None:
            staged.path.unlink(missing_ok=True)
            return self.verdict(existing)
        refusal = self.store.quota(team).refusal()
        if refusal is not None:
            staged.path.unlink(missing_ok=True)
            raise Refused(f"not received: {refusal}", 429)
        path = keep(staged, self.competition.uploads / staged.sha256, "model.onnx")
        submission, _ = self.store.receive(team, staged.sha256, staged.size, path)
        if self.store.window_open():
            return self.verdict(submission)
        return self.check(submission.id)

    def check(self, submission_id: int) -> Verdict:
        """Check one received submission in an isolated child (one check at a time), and record the verdict."""
        with self._check_lock:
            submission = self.store.submission(submission_id)
            if submission.state != "received":
                return self.verdict(submission)
            limits = replace(self.settings.score.limits, max_file_bytes=self.settings.upload_max_bytes)
            outcome: CheckOutcome = check_model_isolated(submission.path, limits)
            try:
                submission = self.store.mark_checked(submission_id, outcome.problems)
            except StoreError:  # cancelled meanwhile
                submission = self.store.submission(submission_id)
            return self.verdict(submission, outcome)

    def public(self, text: str | None) -> str | None:
        """A reason or log line as a team may read it: the organiser's folders replaced by what they hold."""
        if not text:
            return text
        for folder, name in ((self.competition.results, "results"), (self.competition.work, "work"),
                             (self.competition.uploads, "uploads"), (self.competition.root, "competition")):
            text = text.replace(str(folder.resolve()), name).replace(str(folder), name)
        return text

    def verdict(self, submission: Submission, outcome: CheckOutcome | None = None) -> Verdict:
        submission = replace(submission, reason=self.public(submission.reason), log_tail=self.public(
            submission.log_tail))
        problems = outcome.problems if outcome else (
            (submission.reason or "").split("; ") if submission.state == "failed" and submission.fault == "check"
            else [])
        other = self.store.submission(submission.duplicate_of) if submission.duplicate_of is not None else None
        return Verdict(submission, self.store.queue_position(submission.id), problems,
                       outcome.warnings if outcome else [], other.name if other is not None else None)

    def change(self, action: Callable[[], Submission]) -> Submission:
        """A change of the store the team or organiser asked for; a refusal of the store is a 409 with its reason."""
        try:
            return action()
        except StoreError as exc:
            raise Refused(str(exc), 409) from None

    def own_submission(self, team: Team, submission_id: int) -> Submission:
        """The team's own submission; another team's (or none) is the same 404: nothing leaks which exists."""
        try:
            submission = self.store.submission(submission_id)
        except StoreError:
            submission = None
        if submission is None or submission.team != team.name:
            raise Refused(f"you have no submission {submission_id}", 404)
        return submission

    def result_of(self, submission: Submission) -> Result | None:
        folder = self.result_folder(submission)
        if folder is None:
            return None
        try:
            return read_result(folder / RESULT_NAME)
        except EdlError:
            return None

    def result_folder(self, submission: Submission) -> Path | None:
        if not submission.result_folder:
            return None
        folder = Path(submission.result_folder)
        return folder if folder.is_absolute() else self.competition.results / folder

    def timeline(self, submission: Submission) -> Path | None:
        folder = self.result_folder(submission)
        if folder is None:
            return None
        found = sorted(folder.glob(TIMELINE_NAME.format("*")))
        return found[0] if found else None

    # --- the organiser -------------------------------------------------------------------------------------

    def hosts(self) -> list[tuple[str, str]]:
        """Who scores: each worker holding a lease now (and on what), then each host named in the results."""
        seen = [(s.worker_id or "?", f"scoring {s.name}") for s in self.store.all_submissions("scoring")]
        for path in sorted(self.competition.results.glob(f"*/{RESULT_NAME}")):
            try:
                result = read_result(path)
            except EdlError:
                continue
            host = f"{result.host.hostname} ({result.gpu_model or 'CPU'})" if result.host else "?"
            if not any(name == host for name, _ in seen):
                seen.append((host, "scored results"))
        return seen

    def organiser_action(self, submission_id: int, action: str, why: str) -> Submission:
        """Re-run, cancel or disqualify (a signed review decision, with the reason shown on the board)."""
        if action == "rerun":
            return self.change(lambda: self.store.requeue(submission_id))
        if action == "cancel":
            organiser = Team(0, "organiser", "", organiser=True)
            return self.change(lambda: self.store.cancel(submission_id, organiser))
        if action != "disqualify":
            raise Refused(f"no action {action!r}; use rerun, cancel or disqualify", 404)
        return self.disqualify(submission_id, why)

    def disqualify(self, submission_id: int, why: str) -> Submission:
        from evaluator.report.review import record
        from evaluator.report.signing import load_private

        submission = self.change(lambda: self.store.submission(submission_id))
        folder = self.result_folder(submission)
        result = self.result_of(submission)
        if folder is None or result is None:
            raise Refused(f"submission {submission_id} has no result to disqualify; cancel it instead", 409)
        key_path = self.competition.secrets().signing_key
        if key_path is None:
            raise Refused("no signing key is set up: a disqualification is a decision signed by the organiser", 409)
        record(folder, result, "disqualify", why, load_private(key_path))
        self.board.refresh(self.board_state())
        return submission

    # --- descriptions ---------------------------------------------------------------------------------------

    def description_path(self, team: Team) -> Path:
        return self.competition.descriptions / f"{team.name}.pdf"

    def accept_description(self, team: Team, staged: StagedFile | None) -> CheckOutcome:
        """The team's method description: a PDF of at most the allowed pages, replacing the earlier one."""
        if staged is None:
            raise Refused("no file in the upload: send the PDF as the form field 'description'", 400)
        try:
            self.refuse_description(team)
            with self._check_lock:
                outcome = check_description_isolated(staged.path, self.settings.description_max_pages)
            if outcome.valid:
                self.competition.descriptions.mkdir(parents=True, exist_ok=True)
                os.replace(staged.path, self.description_path(team))
            return outcome
        finally:
            staged.path.unlink(missing_ok=True)

    # --- background work ------------------------------------------------------------------------------------

    def start(self) -> None:
        """The checker (uploads received while a window was open) and the board renderer; the staging folder
        emptied of what a killed server was receiving (nothing is in flight before the server listens)."""
        for leftover in self.staging.glob(".upload-*.part") if self.staging.is_dir() else []:
            leftover.unlink(missing_ok=True)
        self.board.refresh(self.board_state())
        for target in (self._checker, self._renderer):
            thread = threading.Thread(target=target, daemon=True, name=f"edl-web-{target.__name__}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        close_check_server()

    def _checker(self) -> None:
        while not self._stop.wait(CHECK_POLL_S):
            try:
                if self.store.window_open():
                    continue
                for submission in self.store.all_submissions("received"):
                    if self._stop.is_set() or self.store.window_open():
                        break
                    self.check(submission.id)
            except EdlError:
                continue

    def _renderer(self) -> None:
        while not self._stop.wait(BOARD_POLL_S):
            try:
                if not self.store.window_open():
                    self.board.refresh(self.board_state())
            except (EdlError, OSError):
                continue
