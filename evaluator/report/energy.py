"""The energy sections of a result, computed from a samples file and the windows the workload marked."""

from __future__ import annotations

import statistics

import numpy as np

from evaluator.errors import MeterError
from evaluator.power.analysis import (
    BETWEEN_MOVES,
    COUNTER,
    DOMAINS,
    NVML_COUNTER_PERIOD_S,
    TOTAL_DOMAINS,
    DomainReading,
    Samples,
    Window,
    check_continuity,
    domain_reading,
    gap_limit_s,
    mean_watts,
    pass_joules,
    pass_method,
    sample_intervals_s,
)
from evaluator.report.records import DomainEnergy, IdleRecord, RunEnergy
from evaluator.report.result import Energy, Run
from evaluator.report.uncertainty import interval

SHORT_WINDOW_S = 10.0


def per_pass_and_image(total_j: float | None, passes: int, images_per_pass: int) -> tuple[float | None, float | None]:
    """A total's joules per pass and per image: the one division every energy section uses."""
    if total_j is None:
        return None, None
    return total_j / passes, total_j / (passes * images_per_pass)


def _record(reading: DomainReading, window: Window) -> DomainEnergy:
    return DomainEnergy(
        joules=reading.joules, method=reading.method, integrated_power_j=reading.integrated_power_j,
        counter_vs_integral=reading.counter_vs_integral, peak_w=reading.peak_w, reason=reading.reason,
        mean_w=None if reading.joules is None or window.seconds <= 0 else reading.joules / window.seconds)


def _idle(samples: Samples, idle: Window, counted: list[str]) -> tuple[IdleRecord, list[str]]:
    """Idle watts, under the measured window's gap and wrap rules: a stall there leaves them null, with why."""
    try:
        check_continuity(samples, idle)
    except MeterError as exc:
        return (IdleRecord(seconds=idle.seconds, watts=dict.fromkeys(DOMAINS), total_w=None, reason=str(exc)),
                [f"idle watts and above_idle_j are not reported: {exc}"])
    watts = {d: mean_watts(samples, d, idle) for d in DOMAINS}
    total = sum(w for d in counted if (w := watts[d]) is not None) if counted else None
    return IdleRecord(seconds=idle.seconds, watts=watts, total_w=total, method=BETWEEN_MOVES), []


def _short_passes(samples: Samples, measured: Window, pass_windows: list[Window]) -> list[str]:
    """A warning where passes are shorter than the interval between samples: their figures are interpolations."""
    intervals = sample_intervals_s(samples.t_s, measured)
    if not intervals.size:
        return []
    period, typical = float(np.median(intervals)), float(np.median([w.seconds for w in pass_windows]))
    if typical >= period:
        return []
    return [f"passes last {typical * 1000:.1f} ms (median), under the {period * 1000:.1f} ms between samples: each "
            "pass's joules are interpolated from samples it shares with its neighbours, so passes_j shows the trend "
            "over several passes, not each pass apart"]


def _per_pass(samples: Samples, measured: Window, pass_windows: list[Window], counted: list[str]
              ) -> tuple[list[float | None], dict[str, str], list[str]]:
    """Joules of each pass, each domain by a method fine enough for short passes; the methods; warnings."""
    methods = {domain: pass_method(samples, domain, measured) for domain in counted}
    used = [domain for domain, method in methods.items() if method.method]
    out: list[float | None] = []
    for window in pass_windows:
        joules = [j for d in used if (j := pass_joules(samples, d, window, methods[d])) is not None]
        out.append(sum(joules) if joules else None)
    warnings = [f"per-pass joules leave out {domain}: {method.reason}"
                for domain, method in methods.items() if not method.method]
    return out, {domain: method.describe() for domain, method in methods.items()}, warnings


def _achieved_period(samples: Samples, measured: Window) -> tuple[float | None, float | None]:
    """The median and 95th-percentile interval between samples inside the window (None under two samples)."""
    intervals = sample_intervals_s(samples.t_s, measured)
    if not intervals.size:
        return None, None
    return float(np.median(intervals)), float(np.percentile(intervals, 95))


def run_energy(samples: Samples, measured: Window, passes: int, images_per_pass: int, idle: Window | None = None,
               pass_windows: list[Window] | None = None) -> tuple[RunEnergy, list[str]]:
    """The energy of one run's measured window, and the warnings it raises; a stalled sampler raises MeterError."""
    gap = check_continuity(samples, measured)
    domains = {domain: domain_reading(samples, domain, measured) for domain in DOMAINS}
    counted = [d for d in TOTAL_DOMAINS if domains[d].joules is not None]
    missing = {d: domains[d].reason for d in TOTAL_DOMAINS if domains[d].joules is None}
    total = sum(j for d in counted if (j := domains[d].joules) is not None) if counted else None
    per_pass, per_image = per_pass_and_image(total, passes, images_per_pass)
    energy = RunEnergy(
        total_j=total, total_domains=counted, missing_domains=missing,
        gpu_j=domains["gpu"].joules, cpu_j=domains["cpu"].joules, dram_j=domains["dram"].joules,
        per_pass_j=per_pass, per_image_j=per_image,
        mean_w=None if total is None else total / measured.seconds,
        window_s=measured.seconds, domains={d: _record(r, measured) for d, r in domains.items()},
        sample_period_s=samples.period_s,
        samples_in_window=int(((samples.t_s >= measured.start_s) & (samples.t_s <= measured.end_s)).sum()),
        largest_gap_s=gap, gap_limit_s=gap_limit_s(samples),
        reason="" if total is not None else "; ".join(f"{d}: {r}" for d, r in missing.items()),
    )
    energy.sample_period_achieved_s, energy.sample_period_p95_s = _achieved_period(samples, measured)
    warnings = []
    if domains["gpu"].method == COUNTER:
        energy.gpu_counter_quantisation_bound = NVML_COUNTER_PERIOD_S / measured.seconds
        if measured.seconds < SHORT_WINDOW_S:
            warnings.append(
                f"the measured window is {measured.seconds:.2f} s, under {SHORT_WINDOW_S:.0f} s: NVML's ~100 ms "
                f"counter steps bound the GPU error at about {energy.gpu_counter_quantisation_bound:.1%}; use more "
                "--passes")
    if idle is not None and idle.seconds > 0:
        energy.idle, idle_warnings = _idle(samples, idle, counted)
        warnings += idle_warnings
        if total is not None and energy.idle.total_w is not None:
            energy.above_idle_j = total - energy.idle.total_w * measured.seconds
    if pass_windows:
        energy.passes_j, energy.passes_j_method, pass_warnings = _per_pass(samples, measured, pass_windows, counted)
        warnings += pass_warnings + _short_passes(samples, measured, pass_windows)
    return energy, warnings


def unmeasured(reason: str) -> RunEnergy:
    """A run without energy: every figure null, and why (never 0 J)."""
    return RunEnergy(total_j=None, reason=reason)


def _median(values: list[float | None]) -> float | None:
    """The median, or None when any run lacks the value (never a median of part of the runs)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


def counter_step_bound_j(run: Run) -> float:
    """The joules one NVML counter step can hide in this run's window (0 without a GPU counter)."""
    energy = run.energy
    if energy.gpu_counter_quantisation_bound is None or energy.gpu_j is None:
        return 0.0
    return energy.gpu_counter_quantisation_bound * energy.gpu_j


def summarise(runs: list[Run], passes: int, images: int) -> Energy:
    """The submission's energy over its runs: median figures, a 95 % interval, and every run's total."""
    repeats = [run.energy.total_j for run in runs]
    total = _median(repeats)
    first = runs[0].energy
    low_high, method = None, ""
    if total is not None:
        low, high, method = interval([t for t in repeats if t is not None], [counter_step_bound_j(r) for r in runs])
        low_high = [low, high]
    per_pass, per_image = per_pass_and_image(total, passes, images)
    return Energy(
        total_j=total, total_domains=first.total_domains, missing_domains=first.missing_domains,
        gpu_j=_median([run.energy.gpu_j for run in runs]), cpu_j=_median([run.energy.cpu_j for run in runs]),
        dram_j=_median([run.energy.dram_j for run in runs]),
        per_pass_j=per_pass, per_image_j=per_image, repeats_j=repeats,
        total_j_interval=low_high, interval_method=method,
        reason="" if total is not None else (first.reason or "a run has no energy total"),
    )
