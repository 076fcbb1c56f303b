"""One measured run: the session (and --tune) on the first, the GPU's fairness record, cool-down, idle
baseline, a warm-up of at least ``warmup_s``, the measured passes, and the run's energy from its samples."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.config import MeterConfig, RuntimeConfig, ScoreConfig
from evaluator.data.dataset import Dataset
from evaluator.errors import MeterError
from evaluator.events import EventSink, ImagesDone, phase, wait
from evaluator.fileio import sha256_file
from evaluator.power.analysis import DOMAINS, Samples, Window
from evaluator.power.meter import Meter
from evaluator.report.energy import run_energy, unmeasured
from evaluator.report.records import FileRecord, IdleRecord, RunEnergy, utc_now
from evaluator.report.result import SAMPLES_NAME, TIMELINE_NAME, Cooldown, Fairness, GpuState, Run, Tuning
from evaluator.runtime.runner import BoundRunner, make_batches, prime_runner
from evaluator.runtime.session import TRT_CACHE_NAME, SessionInfo
from evaluator.scoring.cooldown import GpuWatch, cool_down
from evaluator.scoring.hostinfo import host
from evaluator.scoring.phases import CheckedSubmission
from evaluator.scoring.records import window_records
from evaluator.scoring.tune import run_tuning

TRAIL_PERIODS = 3  # sample periods of unmeasured work after the measured window
NO_METER_IDLE = ("not measured: there is no meter here (no NVML, no RAPL; see missing_domains), so the idle "
                 "baseline was skipped")


@dataclass
class Prepared:
    """The submission resident on its device, ready to run passes (and reused by every repeat)."""

    runner: BoundRunner
    info: SessionInfo
    batch_size: int
    batch_size_rule: str
    padded_images: int
    tuning: Tuning | None


def samples_name(run_index: int) -> str:
    return SAMPLES_NAME.format(run_index)


def timeline_name(run_index: int) -> str:
    return TIMELINE_NAME.format(run_index)


def session_phase(submission: CheckedSubmission, dataset: Dataset, config: ScoreConfig, out_dir: Path,
                  samples_path: Path | None, sink: EventSink) -> Prepared:
    """Search the runtime settings (with --tune), then the session phase."""
    runtime, tuning = config.runtime, None
    if config.tune:
        runtime, tuning = run_tuning(submission.path, submission.contract, dataset, config, samples_path, sink)
    with phase(sink, "session"):
        return _open_session(submission, dataset, config, out_dir, runtime, tuning)


def _open_session(submission: CheckedSubmission, dataset: Dataset, config: ScoreConfig, out_dir: Path,
                  runtime: RuntimeConfig, tuning: Tuning | None) -> Prepared:
    """Open the session, upload the batches, capture graphs."""
    trt_cache = str((out_dir / TRT_CACHE_NAME).resolve()) if runtime.provider == "tensorrt" else ""
    size, rule = submission.contract.batch_size(runtime.batch_size)
    if tuning is not None and submission.contract.batch_is_free:
        rule = "--tune"
    batches, padding = make_batches(dataset.images, submission.contract, size)
    runner = prime_runner(submission.path, submission.contract, batches, runtime, dataset.count, trt_cache)
    return Prepared(runner, runner.info, size, rule, padding, tuning)


def _run_passes(runner: BoundRunner, count: int, name: str, sink: EventSink, images: int
                ) -> tuple[list[Window], list[np.ndarray]]:
    """The measured passes, each one's images and the passes done told to ``sink`` as it ends."""
    total = count * images if count else None
    windows, predictions = [], []
    with phase(sink, name, total, count):
        for index in range(count):
            start = time.monotonic()
            predictions.append(runner.run_pass())
            windows.append(Window(f"{name}{index}", start, time.monotonic()))
            sink(ImagesDone(name, (index + 1) * images, total, index + 1, count))
    return windows, predictions


def _exclusive_check(gpu_start: GpuState | None, config: ScoreConfig, warnings: list[str]) -> None:
    others = gpu_start.other_compute_pids if gpu_start is not None else []
    if others:
        message = f"other processes compute on GPU {config.runtime.gpu}: pids {others}"
        if config.meter.exclusive:
            raise MeterError(f"{message}; --exclusive refuses to measure. Stop them, or drop --exclusive")
        warnings.append(message + " (their power is counted)")


def _warm_up(runner: BoundRunner, config: ScoreConfig, sink: EventSink, images: int) -> tuple[Window | None, int]:
    """Passes until both minimums are met: ``warmup_passes`` and ``warmup_s`` of work.

    A short warm-up right after the idle baseline leaves the GPU's clocks and power still rising when
    the measured window opens; a quarter second of work removes that bias from the window's start.
    """
    start, count = time.monotonic(), 0
    with phase(sink, "warmup"):
        while count < config.warmup_passes or time.monotonic() - start < config.warmup_s:
            runner.run_pass()
            count += 1
            sink(ImagesDone("warmup", count * images, done_passes=count))
    return (Window("warmup", start, time.monotonic()) if count else None), count


@dataclass
class _Measured:
    """What one metered run saw, before the arithmetic."""

    cooldown: Cooldown
    start_temp_c: float | None
    warmup: Window | None
    warmup_passes: int
    pass_windows: list[Window]
    predictions: list[np.ndarray]
    samples: Samples | None
    idle_skipped: str = ""  # why there is no idle window, where one was asked for


def _trail(runner: BoundRunner, period_s: float) -> Window:
    """Passes past the measured window for ``TRAIL_PERIODS`` sample periods, unmeasured, as the warm-up runs before it.

    The window's last edge, and the last short passes, are interpolated between the samples around them: with
    idle samples after the work, passes shorter than the sample period read low (-18 % and -36 % seen); with work
    on both sides, the end edge is like the start.
    """
    start = time.monotonic()
    runner.run_pass()
    while time.monotonic() - start < TRAIL_PERIODS * period_s:
        runner.run_pass()
    return Window("trail", start, time.monotonic())


def _idle_baseline(meter: Meter, config: ScoreConfig, sink: EventSink) -> str:
    """The idle window, waited with a countdown; skipped without a meter. Returns why it was skipped, if it was."""
    if not meter.enabled or config.meter.idle_s <= 0:
        return ""
    if not meter.channels:
        with phase(sink, "idle baseline skipped: no meter (no NVML, no RAPL)"):
            return NO_METER_IDLE
    with meter.window("idle"):
        wait(sink, "idle_baseline", config.meter.idle_s)
    return ""


def _measure(prepared: Prepared, watch: GpuWatch, meter: Meter, config: ScoreConfig, thermal: MeterConfig,
             images: int, sink: EventSink) -> _Measured:
    """Cool-down, idle baseline, warm-up, measured passes and a trail of work, each window marked on the meter."""
    with meter.window("cooldown"):
        cooldown = cool_down(watch, thermal, sink)
    start_temp_c = watch.temperature_c()
    idle_skipped = _idle_baseline(meter, config, sink)
    warmup, warm_count = _warm_up(prepared.runner, config, sink, images)
    if warmup is not None:
        meter.mark(warmup)
    pass_windows, predictions = _run_passes(prepared.runner, config.passes, "pass", sink, images)
    meter.mark(Window("measured", pass_windows[0].start_s, pass_windows[-1].end_s))
    if meter.channels:
        meter.mark(_trail(prepared.runner, meter.period_s))
    return _Measured(cooldown, start_temp_c, warmup, warm_count, pass_windows, predictions, meter.stop(),
                     idle_skipped)


def _energy(measured: _Measured, meter: Meter, config: ScoreConfig, dataset: Dataset, out_dir: Path,
            run_index: int, title: str) -> tuple[RunEnergy, list[str], FileRecord | None, FileRecord | None]:
    """The run's energy from its samples, and the samples and timeline files that back it."""
    if measured.samples is None:
        return unmeasured("metering was switched off (--no-meter)"), [], None, None
    window = meter.find("measured")
    assert window is not None
    energy, warnings = run_energy(measured.samples, window, config.passes, dataset.count,
                                  meter.find("idle"), measured.pass_windows)
    if measured.idle_skipped:
        energy.idle = IdleRecord(seconds=0.0, watts=dict.fromkeys(DOMAINS), total_w=None, reason=measured.idle_skipped)
    samples_file = FileRecord(samples_name(run_index), sha256_file(meter.samples_path))
    timeline = None
    if config.meter.plot:
        from evaluator.power.timeline import plot_timeline

        plot_timeline(measured.samples, meter.windows, out_dir / timeline_name(run_index), f"{title}: power")
        timeline = FileRecord(timeline_name(run_index))
    return energy, warnings, samples_file, timeline


def measure_run(submission: CheckedSubmission, dataset: Dataset, config: ScoreConfig, out_dir: Path, run_index: int,
                sink: EventSink, prepared: Prepared | None = None, target_temp_c: float | None = None
                ) -> tuple[Run, Prepared]:
    """One run: fairness record, (session and --tune on the first run), cool-down, idle, warm-up, passes, energy.

    ``target_temp_c`` is a batch's common temperature: it replaces the configured cool-down target.
    """
    thermal = config.meter if target_temp_c is None else dataclasses.replace(config.meter, target_temp_c=target_temp_c)
    started, warnings = utc_now(), list[str]()
    watch = GpuWatch(config.runtime.gpu)
    gpu_start = watch.record()
    _exclusive_check(gpu_start, config, warnings)
    meter = Meter(out_dir / samples_name(run_index), (config.runtime.gpu,), config.meter.sample_period_s,
                  enabled=config.meter.enabled)
    with meter:
        if prepared is None:
            prepared = session_phase(submission, dataset, config, out_dir,
                                     meter.samples_path if meter.enabled else None, sink)
        measured = _measure(prepared, watch, meter, config, thermal, dataset.count, sink)
    energy, energy_warnings, samples_file, timeline = _energy(measured, meter, config, dataset, out_dir, run_index,
                                                             submission.path.name)
    first = measured.predictions[0]
    mismatched = [i for i, p in enumerate(measured.predictions) if not np.array_equal(p, first)]
    if mismatched:
        warnings.append(f"{len(mismatched)} measured pass(es) predicted differently from the first: "
                        f"{mismatched[:10]}")
    window = meter.find("measured")
    assert window is not None
    run = Run(
        index=run_index, started_utc=started, host=host(watch.identity),
        batch_size=prepared.batch_size, warmup_passes=measured.warmup_passes,
        warmup_s=measured.warmup.seconds if measured.warmup else 0.0, start_temp_c=measured.start_temp_c,
        seconds=window.seconds,
        images_per_second=config.passes * dataset.count / window.seconds,
        correct=int(np.count_nonzero(first == dataset.labels)), prediction_mismatch_passes=mismatched,
        energy=energy, fairness=_fairness(watch, gpu_start, measured.cooldown),
        windows=window_records(meter.windows + measured.pass_windows), samples=samples_file, timeline=timeline,
        warnings=warnings + energy_warnings)
    return run, prepared


def _fairness(watch: GpuWatch, gpu_start: GpuState | None, cooldown: Cooldown) -> Fairness:
    return Fairness(gpu_start=gpu_start, gpu_end=watch.record(), gpu_unavailable=watch.reason or None,
                    cooldown=cooldown)
