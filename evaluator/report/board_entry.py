"""One submission's line on a leaderboard (``BoardEntry``), and a result.json the board cannot trust (``Untrusted``).

An entry is named by its signed ``model.name``; what it shows, and why it is listed apart (unsigned,
misnamed, a duplicate, disqualified, under review), is said here, in the order the board sets results apart.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from evaluator.report.result import Result
from evaluator.report.review import Standing, latest
from evaluator.report.review_record import ReviewDecision


@dataclass
class BoardEntry:
    """One submission's line on the board."""

    name: str
    result: Result
    category: float | None = None
    rank: int | None = None
    tied_with: list[str] = field(default_factory=list)
    not_signed: str = ""  # why the organiser's key does not verify it (with --public-key)
    folder: str = ""  # the result's folder in the results root ("" when not read from one)
    duplicate_of: str = ""  # the earlier result of the same model (set by rank)
    reviews: list[Standing] = field(default_factory=list)  # the organiser's decisions on it, oldest first

    @property
    def decision(self) -> ReviewDecision | None:
        """The organiser's decision that counts: the latest that holds."""
        return latest(self.reviews)

    @property
    def misnamed(self) -> str:
        return folder_problem(self.folder, self.result.model.name) if self.folder else ""

    @property
    def review_history(self) -> str:
        """Every decision on it, when there is more than the one that counts (or one was ignored)."""
        if not self.reviews or (len(self.reviews) == 1 and self.reviews[0].holds):
            return ""
        return "review history: " + "; ".join(standing.line() for standing in self.reviews)

    @property
    def note(self) -> str:
        """A ranked entry's note: the organiser's clearing, where there was one."""
        decision = self.decision
        if decision is None or decision.decision != "clear":
            return ""
        cleared = f"cleared by the organiser on {decision.decided_utc[:10]}: {decision.why}"
        return "; ".join(part for part in (cleared, self.review_history) if part)

    @property
    def accuracy(self) -> float | None:
        return self.result.accuracy

    @property
    def total_j(self) -> float | None:
        return self.result.total_j

    @property
    def joules_per_image(self) -> float | None:
        return self.result.energy.per_image_j if self.result.energy is not None else None

    @property
    def images_per_second(self) -> float | None:
        return self.result.images_per_second

    @property
    def model_bytes(self) -> int:
        return self.result.model.bytes

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % interval of the total (a point where none was recorded)."""
        energy = self.result.energy
        if energy is None or energy.total_j is None:
            return None
        low_high = energy.total_j_interval or [energy.total_j, energy.total_j]
        return max(0.0, low_high[0]), low_high[1]  # an older result may record a low end below 0 J

    @property
    def start_temp_c(self) -> float | None:
        temps = [run.start_temp_c for run in self.result.runs if run.start_temp_c is not None]
        return statistics.median(temps) if temps else None

    @property
    def audit_accuracy(self) -> float | None:
        return self.result.audit.accuracy if self.result.audit is not None else None

    @property
    def checks_line(self) -> str:
        """Every named audit check in a few words (a result under review shows all its evidence, not only the
        failing part): ``checks: copies fail (90.4 > 3), batch_independence pass (0 <= 0.5), ...``."""
        audit = self.result.audit
        if audit is None or not audit.checks:
            return ""
        said = [f"{check.name} {check.verdict}" + (f" ({check.figure:.3g} {'<=' if check.verdict == 'pass' else '>'} "
                                                   f"{check.threshold:.3g})" if check.figure is not None
                                                   and check.threshold is not None else "")
                for check in audit.checks]
        return "checks: " + ", ".join(said)

    @property
    def reason(self) -> str:
        """Why it is listed apart (or has no energy), in the order the board sets results apart."""
        if self.not_signed or self.misnamed:
            return self.not_signed or self.misnamed
        if self.duplicate_of:
            return (f"the same model (sha256 {self.result.model.sha256[:16]}…) as {self.duplicate_of}, scored "
                    "earlier: one model is one entry")
        decision = self.decision
        if self.result.scored and decision is not None and decision.decision == "disqualify":
            said = f"disqualified by the organiser on {decision.decided_utc[:10]}: {decision.why}"
            return "; ".join(part for part in (said, self.review_history) if part)
        if self.result.suspect and self.result.audit is not None:
            return "; ".join(part for part in (self.result.audit.reason, self.checks_line, self.review_history)
                             if part)
        return self.result.why or ("energy unavailable" if self.result.scored and self.total_j is None else "")


@dataclass(frozen=True)
class Untrusted:
    """A result.json the board cannot read or trust (foreign, malformed, edited): listed apart, never ranked."""

    name: str  # its folder: what it claims inside cannot be believed
    reason: str


def folder_problem(folder: str, name: str) -> str:
    """Why a result in ``folder`` is not listed under its signed name ``name`` ("" when the folder is its own:
    ``NAME``, or score-dir's ``NAME@GPU-KIND``; a copy under any such name is one model's duplicate anyway)."""
    if folder == name or (folder.startswith(name + "@") and len(folder) > len(name) + 1):
        return ""
    return (f"its folder {folder!r} is not the name it was scored under ({name!r}, its signed model.name): a "
            f"copied or renamed result; it stays in the folder {name!r}")
