"""``edl verify``: re-check a result from its own evidence, independently of the run that made it.

Checks the document's seal, the model and samples files against their recorded sha256, the
internal arithmetic (energy per pass times passes, accuracy against correct answers, category,
throughput), and recomputes every run's energy from its stored samples and windows.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.config import RuntimeConfig
from evaluator.contract.check import check_submission
from evaluator.data.dataset import Dataset
from evaluator.data.store import load_path, load_training, resolve
from evaluator.errors import DataError, MeterError
from evaluator.fileio import sha256_file
from evaluator.power.analysis import Window, load_samples
from evaluator.report.categories import category_for
from evaluator.report.energy import run_energy, summarise
from evaluator.report.integrity import seal_holds
from evaluator.report.leaderboard import folder_problem
from evaluator.report.reader import read_result
from evaluator.report.result import BATCH_NAME, RESULT_NAME, Result, Run, RunEnergy
from evaluator.report.review import read_decisions
from evaluator.report.signing import load_public, signature_problem
from evaluator.runtime.runner import BoundRunner, make_batches, plain_predict
from evaluator.runtime.session import create_session
from evaluator.scoring.audit import (
    GRAPH_CHECK,
    Composition,
    audit_copies,
    batch_independence,
    commitment,
    copy_predictions,
    in_secret_order,
    outcome,
    recheck,
    training_probe,
    verdict,
)

REL_TOL = 1e-9
REAUDIT_TOLERANCE = 0.002  # a share of the images that another provider's numerics may classify differently


@dataclass
class Check:
    name: str
    outcome: str  # pass | fail | skip
    detail: str = ""


@dataclass
class Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool | None, detail: str = "") -> None:
        """``ok`` None records a check that could not be made (skip)."""
        self.items.append(Check(name, "skip" if ok is None else ("pass" if ok else "fail"), detail))


def _said(value: float | None) -> str:
    return "not measured" if value is None else f"{value}"


def _category_text(category: float | None) -> str:
    """A category the one way every surface writes it: "95 %", or below every threshold."""
    return "below every threshold" if category is None else f"{category * 100:g} %"


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9)


@dataclass(frozen=True)
class VerifyOptions:
    """What a verification may use beyond the result folder itself."""

    model: Path | None = None  # the submission, where it is not found by itself
    audit_secret: str | None = None  # re-derives the audit copies
    data: Path | None = None  # the scored test set, where the result's own path does not lead to it
    public_key: Path | None = None  # the organiser's: the result must be signed with its private key
    strict: bool = False  # a check that cannot be made is a failure


def _submissions_folder(result_path: Path) -> Path | None:
    """The folder score-dir scored, as its batch.json beside the result folders records it."""
    batch = result_path.parent.parent / BATCH_NAME
    try:
        directory = Path(json.loads(batch.read_text())["directory"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return directory if directory.is_absolute() else batch.parent / directory


def locate_model(result: Result, result_path: Path, model: Path | None) -> tuple[Path | None, list[Path]]:
    """The submission: --model; the recorded path (relative to the result's folder, or as given); else a
    file with the recorded sha256 in the submissions folder. Returns it (None: not found) and where it looked."""
    recorded = Path(result.model.path)
    candidates = [model] if model is not None else [result_path.parent / recorded, recorded]
    found = next((path for path in candidates if path.is_file()), None)
    if found is not None or model is not None:
        return found, candidates
    folder = _submissions_folder(result_path)
    if folder is not None and folder.is_dir():
        for path in sorted([*folder.glob("*.onnx"), *folder.glob("*/*.onnx")]):
            if path.stat().st_size == result.model.bytes and sha256_file(path) == result.model.sha256:
                return path, [*candidates, folder]
        candidates.append(folder)
    return None, candidates


def _check_model(result: Result, found: Path | None, looked: list[Path], checks: Checks) -> None:
    if found is None:
        checks.add("model sha256", None, "the submission is not at " + ", ".join(str(p) for p in looked)
                   + "; pass --model PATH")
        return
    digest = sha256_file(found)
    checks.add("model sha256", digest == result.model.sha256, f"{found}: {digest[:16]}…")


def _check_signature(result: Result, public_key: Path | None, checks: Checks) -> None:
    if public_key is None:
        detail = (f"signed by key {result.signature.public_key_sha256[:16]}…; pass --public-key to check it"
                  if result.signature else "unsigned; pass --public-key to require the organiser's signature")
        checks.add("signature", None, detail)
        return
    problem = signature_problem(result, load_public(public_key))
    checks.add("signature by the organiser's key", not problem, problem or "verifies")


def _check_accuracy(result: Result, images: int, checks: Checks) -> None:
    correct, accuracy = result.correct or 0, result.accuracy or 0.0
    checks.add("accuracy = correct / images", _close(accuracy, correct / images), f"{correct}/{images}")
    expected = category_for(accuracy, tuple(result.thresholds))
    checks.add("category", result.category == expected, f"recorded {_category_text(result.category)}"
               + ("" if result.category == expected else f", its accuracy reaches {_category_text(expected)}"))
    checks.add("correct = first run's correct", bool(result.runs) and result.runs[0].correct == correct)


def _check_run_arithmetic(run: Run, windows: dict[str, Window], images: int, checks: Checks) -> None:
    measured = windows.get("measured")
    label = f"run {run.index}"
    checks.add(f"{label}: seconds = measured window", measured is not None and _close(run.seconds, measured.seconds))
    checks.add(f"{label}: images/s = passes x images / seconds",
               _close(run.images_per_second, run.passes * images / run.seconds))
    energy = run.energy
    if energy.total_j is not None:
        checks.add(f"{label}: per_pass_j x passes = total_j", _close((energy.per_pass_j or 0) * run.passes,
                                                                     energy.total_j))
        checks.add(f"{label}: total_j = sum of counted domains",
                   _close(energy.total_j, sum(getattr(energy, f"{d}_j") or 0.0 for d in energy.total_domains)))


def _idle_w(energy: RunEnergy) -> float | None:
    return energy.idle.total_w if energy.idle is not None else None


def _check_run_samples(run: Run, windows: dict[str, Window], images: int, folder: Path, checks: Checks) -> None:
    label = f"run {run.index}"
    if run.samples is None:
        checks.add(f"{label}: samples file", None, "metering was off: nothing to recompute")
        return
    samples_path = folder / run.samples.name
    if not samples_path.is_file():
        checks.add(f"{label}: samples sha256", False, f"{samples_path} is missing")
        return
    digest = sha256_file(samples_path)
    checks.add(f"{label}: samples sha256", digest == run.samples.sha256, f"{digest[:16]}…")
    try:
        samples = load_samples(samples_path)
        measured = windows.get("measured")
        passes = sorted((w for name, w in windows.items() if name.startswith("pass")), key=lambda w: w.start_s)
        if measured is None:
            raise MeterError("no measured window in the result")
        again, _ = run_energy(samples, measured, run.passes, images, windows.get("idle"), passes)
    except MeterError as exc:
        checks.add(f"{label}: energy recomputed", False, str(exc))
        return
    checks.add(f"{label}: samples complete", samples.complete, "ends with the sampler's orderly end"
               if samples.complete else "the sampler did not finish: an interrupted run")
    pairs = {"energy.total_j": (run.energy.total_j, again.total_j), "energy.gpu_j": (run.energy.gpu_j, again.gpu_j),
             "energy.cpu_j": (run.energy.cpu_j, again.cpu_j), "energy.dram_j": (run.energy.dram_j, again.dram_j),
             "energy.above_idle_j": (run.energy.above_idle_j, again.above_idle_j),
             "energy.idle.total_w": (_idle_w(run.energy), _idle_w(again))}
    earlier_idle = run.energy.idle is not None and not run.energy.idle.method and again.idle is not None
    for name, (recorded, recomputed) in pairs.items():
        if earlier_idle and "idle" in name and again.idle is not None and not again.idle.reason:
            checks.add(f"{label}: {name} recomputed from samples", None, f"recorded {_said(recorded)} by the earlier "
                       f"idle rule (counters at the window's edges); today's rule gives {_said(recomputed)}")
            continue
        detail = "not measured" if recorded is None and recomputed is None else \
            f"recorded {_said(recorded)}, recomputed {_said(recomputed)}"
        checks.add(f"{label}: {name} recomputed from samples", _close(recomputed, recorded), detail)


def _check_summary(result: Result, checks: Checks) -> None:
    energy = result.energy
    assert energy is not None
    checks.add("seconds = median of runs", _close(result.seconds, statistics.median(r.seconds for r in result.runs)))
    again = summarise(result.runs, result.passes or 1, result.data.images if result.data else 1)
    checks.add("energy.repeats_j = each run's total_j", energy.repeats_j == again.repeats_j)
    checks.add("energy.total_j = median of runs", _close(energy.total_j, again.total_j), f"{energy.total_j}")
    recorded, interval = energy.total_j_interval, again.total_j_interval
    if recorded is None and not energy.interval_method and energy.total_j is not None:
        checks.add("energy.total_j_interval recomputed from the runs", None,
                   f"written by schema {result.schema_version}, before results carried an interval")
        return
    clipped = None if recorded is None else [max(0.0, recorded[0]), *recorded[1:]]  # older results: a low below 0
    same = (interval is None and clipped is None) or (
        interval is not None and clipped is not None and all(map(_close, interval, clipped)))
    checks.add("energy.total_j_interval recomputed from the runs", same,
               "not measured" if recorded is None and interval is None
               else f"recorded {recorded}, recomputed {interval}")


def _audit_figures(result: Result, checks: Checks) -> None:
    """The verdict follows from the recorded figures (whatever the secret): each named check's from its figure and
    threshold, the audit's from its checks (results before named checks: from the copies and private images)."""
    audit, accuracy = result.audit, result.accuracy
    assert audit is not None and accuracy is not None and result.data is not None
    mean = sum(audit.correct) / (len(audit.correct) * result.data.images)
    checks.add("audit accuracy = mean of its copies", _close(audit.accuracy, mean), f"{audit.correct}")
    for check in audit.checks:
        checks.add(f"audit check {check.name}: verdict follows from figure and threshold",
                   recheck(check) == check.verdict, f"{check.figure} against {check.threshold}: {check.verdict}")
    graph = next((check for check in audit.checks if check.name == GRAPH_CHECK), None)
    if graph is not None:
        strong = sum(1 for finding in result.model.evidence if finding.strength == "strong")
        checks.add(f"audit check {GRAPH_CHECK}: figure = strong findings in model.evidence", graph.figure == strong,
                   f"{graph.figure} recorded, {strong} strong finding(s) recorded")
    expected = outcome(audit.checks)[0] if audit.checks else verdict(accuracy, audit.accuracy, audit.private,
                                                                     result.config.audit)[0]
    checks.add("audit verdict follows from its figures", expected == audit.verdict, audit.verdict)


@dataclass
class _Again:
    """What re-deriving the audit on the CPU needs: the test set, the runner, and how close is close."""

    dataset: Dataset
    runner: BoundRunner
    session: Any
    allowed: int


def _allowed(images: int) -> int:
    return max(2, int(REAUDIT_TOLERANCE * images))  # another provider may flip a few predictions


def _again_batch(result: Result, again: _Again, secret: str, first: tuple[np.ndarray, np.ndarray],
                 checks: Checks) -> None:
    batch = result.audit.batch if result.audit is not None else None
    if batch is None:
        return
    contract = again.runner.contract
    second = (Composition(again.runner.predict, batch.batch_sizes) if len(batch.batch_sizes) < 2 else
              Composition(partial(plain_predict, again.session, contract, batch_size=batch.batch_sizes[1]),
                          batch.batch_sizes))
    redone = batch_independence(first[1], first[0], second, secret, again.dataset.fingerprint, result.config.audit)
    checks.add("audit check batch_independence re-derived", abs(redone.changed - batch.changed) <= again.allowed,
               f"recorded {batch.changed} changed, on the CPU now {redone.changed} (allowed difference "
               f"{again.allowed})")


def _again_training(result: Result, again: _Again, secret: str, data: Path | None, checks: Checks) -> None:
    probe = result.audit.training if result.audit is not None else None
    if probe is None:
        return
    name = "audit check training_probe re-derived"
    try:
        training, missing = load_training(result.config.audit.train_data, data or result.config.data)
    except DataError as exc:
        training, missing = None, str(exc)
    if training is None or training.fingerprint != probe.fingerprint:
        checks.add(name, None, missing or "the training images at hand are not the ones probed")
        return
    redone = training_probe(again.runner.predict, training, secret, result.accuracy or 0.0, result.config.audit)
    allowed = _allowed(probe.images)
    checks.add(name, abs(redone.correct - probe.correct) <= allowed,
               f"recorded {probe.correct}/{probe.images}, on the CPU now {redone.correct} (allowed difference "
               f"{allowed})")


def _again_private(result: Result, again: _Again, secret: str, checks: Checks) -> None:
    private = result.audit.private if result.audit is not None else None
    if private is None or not result.audit.secret_order:  # type: ignore[union-attr]
        return
    name, path = "audit check private_images re-derived", result.config.audit.private_data
    held = load_path(path) if path is not None and Path(path).exists() else None
    if held is None or held.fingerprint != private.fingerprint:
        checks.add(name, None, "the organiser's private images are not at hand")
        return
    predict = in_secret_order(again.runner.predict, secret, held.fingerprint, "private")
    correct = int(np.count_nonzero(predict(held.images) == held.labels))
    allowed = _allowed(held.count)
    checks.add(name, abs(correct - private.correct) <= allowed,
               f"recorded {private.correct}/{private.images}, on the CPU now {correct} (allowed difference {allowed})")


def _audit_again(result: Result, model_path: Path, secret: str, data: Path | None, checks: Checks) -> None:
    """Re-derive every audit set from the secret and classify it again, on the CPU, in its secret order."""
    audit = result.audit
    assert audit is not None and result.data is not None
    dataset = resolve(data if data is not None else result.config.data, allow_download=False)
    if dataset.fingerprint != result.data.fingerprint:
        checks.add("audit copies re-derived", False, f"the test set at hand ({dataset.fingerprint[:16]}…) is not the "
                   "one scored; pass --data with the scored test set")
        return
    contract = check_submission(model_path, result.config.limits).contract
    if contract is None:
        checks.add("audit copies re-derived", False, f"{model_path} no longer passes edl check")
        return
    session, info = create_session(model_path, RuntimeConfig(provider="cpu"))
    batches, _ = make_batches(dataset.images, contract, result.batch_size or contract.batch_size(None)[0])
    again = _Again(dataset, BoundRunner(session, contract, batches, info, 0, dataset.count), session,
                   _allowed(dataset.count))
    predict = again.runner.predict
    copies = (list(copy_predictions(predict, dataset, secret, result.config.audit)) if audit.secret_order else
              [(copy, predict(copy)) for copy in audit_copies(dataset, secret, result.config.audit)])
    redone = [int(np.count_nonzero(predictions == dataset.labels)) for _, predictions in copies]
    close = all(abs(a - b) <= again.allowed for a, b in zip(redone, audit.correct, strict=True))
    checks.add("audit copies re-derived and classified again", close,
               f"recorded {audit.correct}, on the CPU now {redone} (allowed difference {again.allowed} per copy)")
    _again_batch(result, again, secret, copies[0], checks)
    _again_training(result, again, secret, data, checks)
    _again_private(result, again, secret, checks)


def _check_audit(result: Result, model_path: Path | None, secret: str | None, data: Path | None,
                 checks: Checks) -> None:
    if result.audit is None:
        checks.add("generalization audit", None, "this result has no audit (--audit-copies 0, or an older result)")
        return
    _audit_figures(result, checks)
    if secret is None:
        why = ("pass --audit-secret (or EDL_AUDIT_SECRET) to re-derive the audit copies"
               if result.audit.organiser_secret
               else "the audit used a one-off secret that was never kept: it cannot be re-derived")
        checks.add("audit secret", None, why)
        return
    checks.add("audit secret matches the recorded commitment", commitment(secret) == result.audit.seed_commitment)
    if commitment(secret) != result.audit.seed_commitment or model_path is None:
        return
    _audit_again(result, model_path, secret, data, checks)


def _in_results_root(path: Path) -> bool:
    """The result's folder sits in a folder of results (a batch's, or beside other result folders)."""
    root = path.parent.parent
    return (root / BATCH_NAME).is_file() or any(
        (other / RESULT_NAME).is_file() for other in root.iterdir() if other.is_dir() and other != path.parent)


def _check_name(result: Result, path: Path, checks: Checks) -> None:
    """A board names a result by its signed model.name: in a folder of results, its folder must be that name
    (or score-dir's NAME@GPU-KIND); a result folder standing alone (edl score --out DIR) may be named freely."""
    if not _in_results_root(path):
        return
    problem = folder_problem(path.parent.name, result.model.name)
    checks.add("folder named by its signed model.name", not problem, problem or result.model.name)


def _check_reviews(result: Result, path: Path, public_key: Path | None, checks: Checks) -> None:
    """Each review decision beside it: signed (by the organiser's key, with --public-key) and bound to it."""
    organiser = load_public(public_key) if public_key is not None else None
    for standing in read_decisions(path.parent, result, organiser):
        ok = standing.holds if organiser is not None or standing.problem else None
        detail = standing.line() + ("" if organiser is not None else " (pass --public-key to check its signer)")
        checks.add(f"review decision {standing.file}", ok, detail)


def verify_result(path: Path, options: VerifyOptions | None = None) -> list[Check]:
    """Every check on the result at ``path`` (or the result.json in that folder); raises only for a non-result."""
    options = options or VerifyOptions()
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_NAME
    result = read_result(path)
    checks = Checks()
    sealed = seal_holds(result)
    checks.add("document checksum", sealed, "matches" if sealed else "the document was edited after it was written"
               if result.integrity else "no integrity field")
    _check_signature(result, options.public_key, checks)
    _check_name(result, path, checks)
    _check_reviews(result, path, options.public_key, checks)
    if not result.scored:
        checks.add("status", None, f"{result.status}: {result.why}")
        return checks.items
    assert result.data is not None
    found, looked = locate_model(result, path, options.model)
    _check_model(result, found, looked, checks)
    _check_accuracy(result, result.data.images, checks)
    for run in result.runs:
        windows = {w.name: Window(w.name, w.start_s, w.end_s) for w in run.windows}
        _check_run_arithmetic(run, windows, result.data.images, checks)
        _check_run_samples(run, windows, result.data.images, path.parent, checks)
    _check_summary(result, checks)
    _check_audit(result, found, options.audit_secret, options.data, checks)
    return checks.items
