"""``edl leaderboard``: rank results by energy within accuracy categories.

A submission competes only in the highest category it reaches (96.5 % competes at 95 %). Within
a category the lowest ``energy.total_j`` wins; ties (equal joules to the millijoule) go to the
higher accuracy, then the smaller model file, then the name. Results that were not measured the
same way are refused together unless the caller allows it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.config import DEFAULT_THRESHOLDS, ScoreConfig, comparable_settings, option_fields
from evaluator.errors import EdlError, ResultError
from evaluator.report.categories import category_for
from evaluator.report.integrity import seal_holds
from evaluator.report.prizes import checked_on_unseen
from evaluator.report.reader import read_result
from evaluator.report.result import BATCH_NAME, RESULT_NAME, BatchSummary, Result
from evaluator.report.signing import Ed25519PublicKey, signature_problem
from evaluator.typedjson import TypedJsonError, from_json

TIE_RULE = ("lower total energy (the median of the repeats) first; results whose 95 % intervals overlap share a rank "
            "and are tied: for a prize, a rematch (edl score-dir --rematch NAMES) adds repeats of just those, "
            "interleaved, until their intervals part; within a shared rank: higher accuracy, smaller model, name")
START_TEMP_SPREAD_C = 2.0  # ranked results that started further apart than this were not measured alike


@dataclass
class Entry:
    """One submission's line on the board."""

    name: str
    result: Result
    category: float | None = None
    rank: int | None = None
    tied_with: list[str] = field(default_factory=list)
    not_signed: str = ""  # why the organiser's key does not verify it (with --public-key)

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
        return low_high[0], low_high[1]

    @property
    def start_temp_c(self) -> float | None:
        temps = [run.start_temp_c for run in self.result.runs if run.start_temp_c is not None]
        return statistics.median(temps) if temps else None

    @property
    def audit_accuracy(self) -> float | None:
        return self.result.audit.accuracy if self.result.audit is not None else None

    @property
    def reason(self) -> str:
        if self.not_signed:
            return self.not_signed
        if self.result.suspect and self.result.audit is not None:
            return self.result.audit.reason
        return self.result.why or ("energy unavailable" if self.result.scored and self.total_j is None else "")


@dataclass
class Leaderboard:
    thresholds: tuple[float, ...]
    categories: dict[float, list[Entry]]
    unranked: list[Entry]  # scored, below the lowest threshold
    unmeasured: list[Entry]  # scored, but without an energy total
    failed: list[Entry]
    mixed: list[str]  # comparability differences that were allowed
    under_review: list[Entry] = field(default_factory=list)  # the generalization audit found them suspect
    unsigned: list[Entry] = field(default_factory=list)  # not signed by the organiser's key (with --public-key)
    unaudited: list[Entry] = field(default_factory=list)  # no audit, and --allow-unaudited was not given
    unchecked_unseen: list[Entry] = field(default_factory=list)  # a prize board: no check on unseen images
    warnings: list[str] = field(default_factory=list)  # what a reader of the board must know


def load_results(results_dir: Path, public_key: Ed25519PublicKey | None = None) -> list[Entry]:
    """Every ``result.json`` in ``results_dir`` (itself or one folder down), named by its folder.

    Without the organiser's public key, an edited result (its seal broken) stops the board; with it,
    every result not signed by that key is set apart with the reason, edited ones among them.
    """
    if not results_dir.is_dir():
        raise EdlError(f"{results_dir}: not a folder of results; run `edl score-dir` first")
    paths = sorted(set(results_dir.glob(f"*/{RESULT_NAME}")) | set(results_dir.glob(RESULT_NAME)))
    if not paths:
        raise EdlError(f"{results_dir}: no {RESULT_NAME} files found")
    entries = []
    for path in paths:
        result = read_result(path)
        if public_key is not None:
            entries.append(Entry(path.parent.name, result, not_signed=signature_problem(result, public_key)))
            continue
        if not seal_holds(result):
            raise ResultError(f"{path}: its checksum does not match: edited after it was written. Run "
                              "`edl verify` on it, and rescore the submission (`edl score-dir --force`)")
        entries.append(Entry(path.parent.name, result))
    return entries


def batch_warnings(results_dir: Path) -> list[str]:
    """What the batch that wrote ``results_dir`` found about the measurement itself (its reference's drift)."""
    path = results_dir / BATCH_NAME
    if not path.is_file():
        return []
    try:
        summary = from_json(BatchSummary, json.loads(path.read_text()), "batch")
    except (OSError, ValueError, TypedJsonError) as exc:
        return [f"{path} cannot be read ({exc}): the batch's reference drift is unknown"]
    reference = summary.reference
    return [reference.warning] if reference is not None and reference.warning else []


def _flags() -> dict[str, str]:
    return {".".join(found.path): found.flag for found in option_fields(ScoreConfig)}


def measured_alike(result: Result) -> dict[str, str]:
    """What must be equal for two results to be ranked together: the data, every comparable option
    (the same rule score-dir uses to resume), and what was measured: provider, GPU model, energy domains."""
    flags = _flags()
    key = {"data fingerprint": result.data.fingerprint if result.data else "",
           "provider": result.provider.name if result.provider else "", "GPU model": str(result.gpu_model),
           "energy domains": ",".join(sorted(result.energy.total_domains)) if result.energy else "",
           "private data": result.audit.private.fingerprint if result.audit and result.audit.private else "none"}
    key |= {flags[path]: repr(value) for path, value in comparable_settings(result.config).items()}
    return key


def comparability_problems(entries: list[Entry]) -> list[str]:
    """What differs between the measured results, in words: one line per differing property."""
    keys = {e.name: measured_alike(e.result) for e in entries
            if e.result.scored and e.total_j is not None and not e.not_signed}
    if not keys:
        return []
    problems = []
    for prop in next(iter(keys.values())):
        values: dict[str, list[str]] = {}
        for name, key in keys.items():
            values.setdefault(key[prop], []).append(name)
        if len(values) > 1:
            listing = "; ".join(f"{value}: {', '.join(names)}" for value, names in values.items())
            problems.append(f"{prop} differs ({listing})")
    return problems


def rank_by_gpu(entries: list[Entry], thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS, allow_mixed: bool = False,
                allow_unaudited: bool = False, require_unseen: bool = False) -> dict[str, Leaderboard]:
    """One board per GPU model the results were measured on (a result without a GPU: "no GPU")."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.result.gpu_model or "no GPU", []).append(entry)
    return {model: rank(members, thresholds, allow_mixed, allow_unaudited, require_unseen)
            for model, members in sorted(groups.items())}


UNAUDITED_NOTE = ("no generalization audit (an older result, or --audit-copies 0): not ranked; rescore it, or pass "
                  "--allow-unaudited")


def _set_apart(entry: Entry, board: Leaderboard, allow_unaudited: bool, require_unseen: bool = False) -> bool:
    """Unsigned (with a key), failed, suspect and (unless allowed) unaudited results are listed apart, never ranked."""
    if entry.not_signed:
        board.unsigned.append(entry)
    elif not entry.result.scored:
        board.failed.append(entry)
    elif entry.result.suspect:
        board.under_review.append(entry)
    elif entry.result.audit is None and not allow_unaudited:
        board.unaudited.append(entry)
    elif require_unseen and not checked_on_unseen(entry.result):
        board.unchecked_unseen.append(entry)
    else:
        return False
    return True


def rank(entries: list[Entry], thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS, allow_mixed: bool = False,
         allow_unaudited: bool = False, require_unseen: bool = False) -> Leaderboard:
    """Place each entry in its highest category and order each category by energy.

    Results set apart (unsigned, failed, suspect, unaudited) are listed, not ranked; the rest must have
    been measured alike (or ``allow_mixed``, and the board says what differed).
    """
    board = Leaderboard(tuple(sorted(thresholds)), {t: [] for t in sorted(thresholds, reverse=True)}, [], [], [], [])
    ranked = [entry for entry in entries if not _set_apart(entry, board, allow_unaudited, require_unseen)]
    board.mixed = comparability_problems(ranked)
    if board.mixed and not allow_mixed:
        raise EdlError("these results are not comparable: " + "; ".join(board.mixed)
                       + ". Score them alike, or pass --allow-mixed to rank them anyway")
    for entry in ranked:
        entry.category = category_for(entry.accuracy or 0.0, board.thresholds)
        if entry.total_j is None:
            board.unmeasured.append(entry)
        elif entry.category is None:
            board.unranked.append(entry)
        else:
            board.categories[entry.category].append(entry)
    for members in board.categories.values():
        _rank_category(members)
    board.unranked.sort(key=lambda e: -(e.accuracy or 0))
    board.warnings += _temperature_warnings(board)
    return board


def _rank_category(members: list[Entry]) -> None:
    """Order by the median total; results whose intervals overlap (in a chain) share a rank and are tied."""
    members.sort(key=lambda e: (e.total_j or 0.0, -(e.accuracy or 0), e.model_bytes, e.name))
    groups: list[list[Entry]] = []
    reach = float("-inf")
    for entry in members:
        low, high = entry.interval or (0.0, 0.0)
        if groups and low <= reach:
            groups[-1].append(entry)
            reach = max(reach, high)
        else:
            groups.append([entry])
            reach = high
    members.clear()
    for group in groups:
        group.sort(key=lambda e: (-(e.accuracy or 0), e.model_bytes, e.name))
        for entry in group:
            entry.rank = len(members) + 1
            entry.tied_with = [other.name for other in group if other is not entry]
        members.extend(group)


def _temperature_warnings(board: Leaderboard) -> list[str]:
    ranked = [e for members in board.categories.values() for e in members if e.start_temp_c is not None]
    if len(ranked) < 2:
        return []
    coolest = min(ranked, key=lambda e: e.start_temp_c or 0.0)
    warmest = max(ranked, key=lambda e: e.start_temp_c or 0.0)
    spread = (warmest.start_temp_c or 0.0) - (coolest.start_temp_c or 0.0)
    if spread <= START_TEMP_SPREAD_C:
        return []
    return [f"ranked results started {spread:.1f} C apart ({coolest.name} at {coolest.start_temp_c:.0f} C, "
            f"{warmest.name} at {warmest.start_temp_c:.0f} C; limit {START_TEMP_SPREAD_C:g} C): score them in one "
            "batch, which cools every run to one temperature"]
