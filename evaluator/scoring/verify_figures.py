"""``edl verify``'s arithmetic: every figure of a result re-derived from the others and from its samples files.

Accuracy from the correct answers, the category from the accuracy, throughput from passes and the
measured window, each run's energy recomputed from its stored samples and windows, and the summary
(medians, the 95 % interval) recomputed from the runs.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from evaluator.errors import MeterError
from evaluator.fileio import sha256_file
from evaluator.power.analysis import Window, load_samples
from evaluator.report.categories import category_for
from evaluator.report.energy import run_energy, summarise
from evaluator.report.records import RunEnergy
from evaluator.report.result import Result, Run
from evaluator.scoring.checklist import Checks, close


def _said(value: float | None) -> str:
    return "not measured" if value is None else f"{value}"


def _category_text(category: float | None) -> str:
    """A category the one way every surface writes it: "95 %", or below every threshold."""
    return "below every threshold" if category is None else f"{category * 100:g} %"


def _check_accuracy(result: Result, images: int, checks: Checks) -> None:
    correct, accuracy = result.correct or 0, result.accuracy or 0.0
    checks.add("accuracy = correct / images", close(accuracy, correct / images), f"{correct}/{images}")
    expected = category_for(accuracy, tuple(result.thresholds))
    checks.add("category", result.category == expected, f"recorded {_category_text(result.category)}"
               + ("" if result.category == expected else f", its accuracy reaches {_category_text(expected)}"))
    checks.add("correct = first run's correct", bool(result.runs) and result.runs[0].correct == correct)


def _check_run_arithmetic(run: Run, windows: dict[str, Window], passes: int, images: int, checks: Checks) -> None:
    measured = windows.get("measured")
    label = f"run {run.index}"
    checks.add(f"{label}: seconds = measured window", measured is not None and close(run.seconds, measured.seconds))
    checks.add(f"{label}: images/s = passes x images / seconds",
               close(run.images_per_second, passes * images / run.seconds))
    energy = run.energy
    if energy.total_j is not None:
        checks.add(f"{label}: per_pass_j x passes = total_j", close((energy.per_pass_j or 0) * passes,
                                                                     energy.total_j))
        checks.add(f"{label}: total_j = sum of counted domains",
                   close(energy.total_j, sum(getattr(energy, f"{d}_j") or 0.0 for d in energy.total_domains)))


def _idle_w(energy: RunEnergy) -> float | None:
    return energy.idle.total_w if energy.idle is not None else None


def _check_run_samples(run: Run, windows: dict[str, Window], passes: int, images: int, folder: Path,
                       checks: Checks) -> None:
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
        pass_windows = sorted((w for name, w in windows.items() if name.startswith("pass")), key=lambda w: w.start_s)
        if measured is None:
            raise MeterError("no measured window in the result")
        again, _ = run_energy(samples, measured, passes, images, windows.get("idle"), pass_windows)
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
        checks.add(f"{label}: {name} recomputed from samples", close(recomputed, recorded), detail)


def _check_summary(result: Result, checks: Checks) -> None:
    energy = result.energy
    assert energy is not None
    checks.add("seconds = median of runs", close(result.seconds, statistics.median(r.seconds for r in result.runs)))
    again = summarise(result.runs, result.passes, result.data.images if result.data else 1)
    checks.add("energy.repeats_j = each run's total_j", energy.repeats_j == again.repeats_j)
    checks.add("energy.total_j = median of runs", close(energy.total_j, again.total_j), f"{energy.total_j}")
    recorded, interval = energy.total_j_interval, again.total_j_interval
    if recorded is None and not energy.interval_method and energy.total_j is not None:
        checks.add("energy.total_j_interval recomputed from the runs", None,
                   f"written by schema {result.written_schema}, before results carried an interval")
        return
    clipped = None if recorded is None else [max(0.0, recorded[0]), *recorded[1:]]  # older results: a low below 0
    same = (interval is None and clipped is None) or (
        interval is not None and clipped is not None and all(map(close, interval, clipped)))
    checks.add("energy.total_j_interval recomputed from the runs", same,
               "not measured" if recorded is None and interval is None
               else f"recorded {recorded}, recomputed {interval}")


def check_figures(result: Result, folder: Path, checks: Checks) -> None:
    """Every figure of a scored result against the others, each run's energy against its samples in ``folder``."""
    assert result.data is not None
    images = result.data.images
    _check_accuracy(result, images, checks)
    for run in result.runs:
        windows = {w.name: Window(w.name, w.start_s, w.end_s) for w in run.windows}
        _check_run_arithmetic(run, windows, result.passes, images, checks)
        _check_run_samples(run, windows, result.passes, images, folder, checks)
    _check_summary(result, checks)
