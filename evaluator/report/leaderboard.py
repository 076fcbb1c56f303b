"""``edl leaderboard``: rank results by energy within accuracy categories.

A submission competes only in the highest category it reaches (96.5 % competes at 95 %). Within
a category the lowest ``energy.total_j`` wins; ties (equal joules to the millijoule) go to the
higher accuracy, then the smaller model file, then the name. Results that were not measured the
same way are refused together unless the caller allows it.

A result is named by its signed ``model.name``, never by its folder: a folder whose name differs
(other than score-dir's ``NAME@GPU-KIND`` of --every-gpu-kind) is listed apart, and results of
one model (the same sha256, on the same GPU model) are one entry, the earliest scored, the others
listed as its duplicates. A result.json the board cannot trust (foreign, malformed, edited after
it was written) is listed apart with the reason; the rest still rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.config import DEFAULT_THRESHOLDS, ScoreConfig, comparable_settings, option_fields
from evaluator.errors import EdlError, ResultError
from evaluator.report.batch_record import BATCH_NAME
from evaluator.report.board_entry import BoardEntry, Untrusted
from evaluator.report.categories import category_for
from evaluator.report.integrity import seal_holds
from evaluator.report.prizes import UNCHECKED_UNSEEN, checked_on_unseen
from evaluator.report.reader import read_batch, read_result
from evaluator.report.result import RESULT_NAME, Result
from evaluator.report.review import read_decisions
from evaluator.report.signing import Ed25519PublicKey, signature_problem
from evaluator.report.uncertainty import few_runs_warning

TIE_RULE = ("lower total energy (the median of the repeats) first; results whose 95 % intervals overlap share a rank "
            "and are tied: for a prize, a rematch (edl score-dir --rematch NAMES) adds repeats of just those, "
            "interleaved, until their intervals part; within a shared rank: higher accuracy, smaller model, name")
START_TEMP_SPREAD_C = 2.0  # ranked results that started further apart than this were not measured alike


@dataclass
class Leaderboard:
    thresholds: tuple[float, ...]
    categories: dict[float, list[BoardEntry]]
    unranked: list[BoardEntry]  # scored, below the lowest threshold
    unmeasured: list[BoardEntry]  # scored, but without an energy total
    failed: list[BoardEntry]
    mixed: list[str]  # comparability differences that were allowed
    under_review: list[BoardEntry] = field(default_factory=list)  # the generalization audit found them suspect
    unsigned: list[BoardEntry] = field(default_factory=list)  # not signed by the organiser's key (with --public-key)
    unaudited: list[BoardEntry] = field(default_factory=list)  # no audit, and --allow-unaudited was not given
    unchecked_unseen: list[BoardEntry] = field(default_factory=list)  # a prize board: no check on unseen images
    warnings: list[str] = field(default_factory=list)  # what a reader of the board must know
    untrusted: list[Untrusted] = field(default_factory=list)  # foreign, malformed or edited result.json files
    misnamed: list[BoardEntry] = field(default_factory=list)  # in a folder not named by its signed model.name
    duplicates: list[BoardEntry] = field(default_factory=list)  # the same model as an earlier result
    disqualified: list[BoardEntry] = field(default_factory=list)  # by the organiser's signed decision

    def apart(self) -> list[tuple[str, list[BoardEntry]]]:
        """The results not ranked, by the label every format lists them under, in the order it lists them."""
        return [("under review", self.under_review), ("disqualified", self.disqualified),
                ("unaudited", self.unaudited), (UNCHECKED_UNSEEN, self.unchecked_unseen), ("unsigned", self.unsigned),
                ("misnamed", self.misnamed),
                ("duplicate", self.duplicates), ("unranked", self.unranked), ("unmeasured", self.unmeasured),
                ("failed", self.failed)]

    @property
    def ranked(self) -> list[BoardEntry]:
        return [entry for members in self.categories.values() for entry in members]


def load_results(results_dir: Path, public_key: Ed25519PublicKey | None = None) -> list[BoardEntry | Untrusted]:
    """Every ``result.json`` in ``results_dir`` (itself or one folder down), named by its signed model.name.

    A document that is not an edl result, or is malformed, or was edited after it was written (its
    seal broken), is an ``Untrusted`` with the reason and nothing it claims is shown; with the
    organiser's public key, every other result not signed by it is set apart with the reason.
    """
    if not results_dir.is_dir():
        raise EdlError(f"{results_dir}: not a folder of results; run `edl score-dir` first")
    paths = sorted(set(results_dir.glob(f"*/{RESULT_NAME}")) | set(results_dir.glob(RESULT_NAME)))
    if not paths:
        raise EdlError(f"{results_dir}: no {RESULT_NAME} files found")
    entries: list[BoardEntry | Untrusted] = []
    for path in paths:
        folder = path.parent.name if path.parent != results_dir else ""
        try:
            result = read_result(path)
        except ResultError as exc:
            entries.append(Untrusted(path.parent.name, str(exc).removeprefix(f"{path}: ")))
            continue
        if not seal_holds(result):  # with the key too: an edited document's figures are never shown
            entries.append(Untrusted(path.parent.name, "its checksum does not match: edited after it was written. "
                                     "Run `edl verify` on it, and rescore the submission (`edl score-dir --force`)"))
            continue
        problem = signature_problem(result, public_key) if public_key is not None else ""
        entries.append(BoardEntry(result.model.name, result, not_signed=problem, folder=folder,
                             reviews=read_decisions(path.parent, result, public_key)))
    return entries


def batch_warnings(results_dir: Path) -> list[str]:
    """What the batch that wrote ``results_dir`` found about the measurement itself (its reference's drift)."""
    path = results_dir / BATCH_NAME
    if not path.is_file():
        return []
    try:
        summary = read_batch(path)
    except ResultError as exc:
        return [f"{path} cannot be read ({str(exc).removeprefix(f'{path}: ')}): the batch's reference drift is unknown"]
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


def comparability_problems(entries: list[BoardEntry]) -> list[str]:
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


def rank_by_gpu(entries: Sequence[BoardEntry | Untrusted], thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
                allow_mixed: bool = False, allow_unaudited: bool = False,
                require_unseen: bool = False) -> dict[str, Leaderboard]:
    """One board per GPU model the results were measured on (a result without a GPU: "no GPU")."""
    groups: dict[str, list[BoardEntry | Untrusted]] = {}
    for entry in entries:
        gpu = (entry.result.gpu_model or "no GPU") if isinstance(entry, BoardEntry) else UNTRUSTED_GROUP
        groups.setdefault(gpu, []).append(entry)
    return {model: rank(members, thresholds, allow_mixed, allow_unaudited, require_unseen)
            for model, members in sorted(groups.items())}


UNTRUSTED_GROUP = "results that cannot be trusted"  # --by gpu: what an untrusted document claims is not believed


UNAUDITED_NOTE = ("no generalization audit (an older result, or --audit-copies 0): not ranked; rescore it, or pass "
                  "--allow-unaudited")


def _set_apart(entry: BoardEntry, board: Leaderboard, allow_unaudited: bool, require_unseen: bool = False) -> bool:
    """Unsigned (with a key), misnamed, failed, duplicate, disqualified, suspect (not cleared), (unless allowed)
    unaudited and (a prize board) unchecked-on-unseen results are listed apart, never ranked."""
    decision = entry.decision
    verdict = decision.decision if decision is not None else ""
    if entry.not_signed:
        board.unsigned.append(entry)
    elif entry.misnamed:
        board.misnamed.append(entry)
    elif not entry.result.scored:
        board.failed.append(entry)
    elif entry.duplicate_of:
        board.duplicates.append(entry)
    elif verdict == "disqualify":
        board.disqualified.append(entry)
    elif entry.result.suspect and verdict != "clear":
        board.under_review.append(entry)
    elif entry.result.audit is None and not allow_unaudited:
        board.unaudited.append(entry)
    elif require_unseen and not checked_on_unseen(entry.result):
        board.unchecked_unseen.append(entry)
    else:
        return False
    return True


def _first_scored(result: Result) -> str:
    return min((run.started_utc for run in result.runs), default=result.created_utc)


def _mark_duplicates(entries: list[BoardEntry]) -> None:
    """Results of one model (sha256) on one GPU model are one entry: the earliest scored; the others name it."""
    for entry in entries:
        entry.duplicate_of = ""
    candidates = [e for e in entries if e.result.scored and e.result.model.sha256 and not e.not_signed
                  and not e.misnamed]
    first: dict[tuple[str, str], BoardEntry] = {}
    for entry in sorted(candidates, key=lambda e: (_first_scored(e.result), e.name, e.folder)):
        key = (entry.result.model.sha256, entry.result.gpu_model or "")
        if key in first:
            entry.duplicate_of = first[key].name
        else:
            first[key] = entry


def rank(entries: Sequence[BoardEntry | Untrusted], thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
         allow_mixed: bool = False, allow_unaudited: bool = False, require_unseen: bool = False) -> Leaderboard:
    """Place each entry in its highest category and order each category by energy.

    Results set apart (untrusted, unsigned, misnamed, failed, duplicate, disqualified, suspect, unaudited) are
    listed, not ranked; the rest must have been measured alike (or ``allow_mixed``, and the board says what
    differed).
    """
    board = Leaderboard(tuple(sorted(thresholds)), {t: [] for t in sorted(thresholds, reverse=True)}, [], [], [], [])
    board.untrusted = [entry for entry in entries if isinstance(entry, Untrusted)]
    readable = [entry for entry in entries if isinstance(entry, BoardEntry)]
    _mark_duplicates(readable)
    ranked = [entry for entry in readable if not _set_apart(entry, board, allow_unaudited, require_unseen)]
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
    two_runs = [e.name for e in board.ranked if e.result.energy is not None and len(e.result.energy.repeats_j) == 2]
    board.warnings += [few_runs_warning(two_runs)] if two_runs else []
    return board


def _rank_category(members: list[BoardEntry]) -> None:
    """Order by the median total; results whose intervals overlap (in a chain) share a rank and are tied."""
    members.sort(key=lambda e: (e.total_j or 0.0, -(e.accuracy or 0), e.model_bytes, e.name))
    groups: list[list[BoardEntry]] = []
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
