"""Score one submission: check, data, session, then measured runs, then the sealed result document.

Each phase is a function; ``score`` calls them in order. The workload marks windows on
``time.monotonic``, the sampler process records power on the same clock, and the energy is
computed from both afterwards. Nothing here prints: progress goes through a callback, errors
are raised, and the CLI decides how to show them.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.config import DEFAULT_THRESHOLDS, ScoreConfig
from evaluator.contract.check import CheckReport, check_submission
from evaluator.contract.spec import Contract
from evaluator.data.dataset import Dataset
from evaluator.data.store import resolve
from evaluator.errors import DataError, MeterError, ResultError, SubmissionError
from evaluator.fileio import sha256_file
from evaluator.power.analysis import Samples, Window
from evaluator.power.meter import Meter
from evaluator.report.categories import category_for
from evaluator.report.energy import run_energy, summarise, unmeasured
from evaluator.report.integrity import seal
from evaluator.report.result import (
    RESULT_NAME,
    Cooldown,
    Fairness,
    FileRecord,
    GpuState,
    Result,
    Run,
    RunEnergy,
    Tuning,
    utc_now,
    write_result,
)
from evaluator.runtime.runner import BoundRunner, make_batches, prime_runner
from evaluator.runtime.session import SessionInfo, create_session
from evaluator.scoring.hostinfo import host, versions
from evaluator.scoring.progress import Progress, Silent
from evaluator.scoring.records import (
    contract_record,
    data_record,
    model_record,
    provider_record,
    window_records,
)
from evaluator.scoring.thermal import GpuWatch, cool_down
from evaluator.scoring.tune import run_tuning


@dataclass(frozen=True)
class Submission:
    """A submission that passed its checks: what it is and how to feed it."""

    name: str
    path: Path
    report: CheckReport
    contract: Contract


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
    return f"samples-{run_index}.csv"


def timeline_name(run_index: int) -> str:
    return f"timeline-{run_index}.png"


def default_out_dir(model_path: Path) -> Path:
    return Path("results") / Path(model_path).stem


# --- phases before any measurement ---------------------------------------------------------------------


def check_phase(model_path: Path, config: ScoreConfig, progress: Progress, name: str = "") -> Submission:
    """The same checks as ``edl check``; an invalid submission is refused before anything runs."""
    progress.phase("check")
    report = check_submission(model_path, config.limits)
    if not report.valid or report.contract is None:
        raise SubmissionError(report.problems)
    return Submission(name or Path(model_path).stem, Path(model_path), report, report.contract)


def data_phase(config: ScoreConfig, progress: Progress, fingerprint: str = "") -> Dataset:
    """The test set; with ``fingerprint``, exactly that one (a batch's children see what the batch resolved)."""
    progress.phase("data")
    dataset = resolve(config.data)
    if fingerprint and dataset.fingerprint != fingerprint:
        raise DataError(f"the test set here ({dataset.source}, fingerprint {dataset.fingerprint[:16]}…) is not the "
                        f"one the batch resolved ({fingerprint[:16]}…); give every host the same --data")
    return dataset


def prepare_out_dir(out_dir: Path) -> Path:
    """Fail before measuring if results cannot be written (read-only folder, full disk)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"\0" * 65536)
        probe.unlink()
    except OSError as exc:
        raise ResultError(f"cannot write results to {out_dir} ({exc.strerror or exc}); pass a writable --out") from None
    return out_dir


def session_phase(submission: Submission, dataset: Dataset, config: ScoreConfig, out_dir: Path,
                  samples_path: Path | None, progress: Progress) -> Prepared:
    """Search the runtime settings (with --tune), open the session, upload the batches, capture graphs."""
    runtime, tuning = config.runtime, None
    if config.tune:
        runtime, tuning = run_tuning(submission.path, submission.contract, dataset, config, samples_path, progress)
    progress.phase("session")
    trt_cache = str((out_dir / "trt-cache").resolve()) if runtime.provider == "tensorrt" else ""
    session, info = create_session(submission.path, runtime, trt_cache)
    size, rule = submission.contract.batch_size(runtime.batch_size)
    if tuning is not None and submission.contract.batch_is_free:
        rule = "--tune"
    batches, padding = make_batches(dataset.images, submission.contract, size)
    runner = prime_runner(submission.path, session, info, submission.contract, batches, runtime, dataset.count)
    return Prepared(runner, info, size, rule, padding, tuning)


# --- one measured run ----------------------------------------------------------------------------------


def _run_passes(runner: BoundRunner, count: int, name: str, progress: Progress, images: int
                ) -> tuple[list[Window], list[np.ndarray]]:
    progress.phase(name, count * images if count else None)
    windows, predictions = [], []
    for index in range(count):
        start = time.monotonic()
        predictions.append(runner.run_pass())
        windows.append(Window(f"{name}{index}", start, time.monotonic()))
        progress.advance(images)
    return windows, predictions


def _exclusive_check(gpu_start: GpuState | None, config: ScoreConfig, warnings: list[str]) -> None:
    others = gpu_start.other_compute_pids if gpu_start is not None else []
    if others:
        message = f"other processes compute on GPU {config.runtime.gpu}: pids {others}"
        if config.meter.exclusive:
            raise MeterError(f"{message}; --exclusive refuses to measure. Stop them, or drop --exclusive")
        warnings.append(message + " (their power is counted)")


@dataclass
class _Measured:
    """What one metered run saw, before the arithmetic."""

    cooldown: Cooldown
    pass_windows: list[Window]
    predictions: list[np.ndarray]
    samples: Samples | None


def _measure(prepared: Prepared, watch: GpuWatch, meter: Meter, config: ScoreConfig, images: int,
             progress: Progress) -> _Measured:
    """Cool-down, idle baseline, warm-up and measured passes, each window marked on the meter."""
    with meter.window("cooldown"):
        cooldown = cool_down(watch, config.meter, on_start=lambda: progress.phase("cool-down"))
    if meter.enabled and config.meter.idle_s > 0:
        progress.phase("idle baseline")
        with meter.window("idle"):
            time.sleep(config.meter.idle_s)
    warm, _ = _run_passes(prepared.runner, config.warmup_passes, "warmup", progress, images)
    if warm:
        meter.mark(Window("warmup", warm[0].start_s, warm[-1].end_s))
    pass_windows, predictions = _run_passes(prepared.runner, config.passes, "pass", progress, images)
    meter.mark(Window("measured", pass_windows[0].start_s, pass_windows[-1].end_s))
    return _Measured(cooldown, pass_windows, predictions, meter.stop())


def _energy(measured: _Measured, meter: Meter, config: ScoreConfig, dataset: Dataset, out_dir: Path,
            run_index: int, title: str) -> tuple[RunEnergy, list[str], FileRecord | None, FileRecord | None]:
    """The run's energy from its samples, and the samples and timeline files that back it."""
    if measured.samples is None:
        return unmeasured("metering was switched off (--no-meter)"), [], None, None
    window = meter.find("measured")
    assert window is not None
    energy, warnings = run_energy(measured.samples, window, config.passes, dataset.count,
                                  meter.find("idle"), measured.pass_windows)
    samples_file = FileRecord(samples_name(run_index), sha256_file(meter.samples_path))
    timeline = None
    if config.meter.plot:
        from evaluator.power.timeline import plot_timeline

        plot_timeline(measured.samples, meter.windows, out_dir / timeline_name(run_index), f"{title}: power")
        timeline = FileRecord(timeline_name(run_index))
    return energy, warnings, samples_file, timeline


def measure_run(submission: Submission, dataset: Dataset, config: ScoreConfig, out_dir: Path, run_index: int,
                progress: Progress, prepared: Prepared | None = None) -> tuple[Run, Prepared]:
    """One run: fairness record, (session and --tune on the first run), cool-down, idle, warm-up, passes, energy."""
    started, warnings = utc_now(), list[str]()
    watch = GpuWatch(config.runtime.gpu)
    gpu_start = watch.record()
    _exclusive_check(gpu_start, config, warnings)
    meter = Meter(out_dir / samples_name(run_index), (config.runtime.gpu,), config.meter.sample_period_s,
                  enabled=config.meter.enabled)
    with meter:
        if prepared is None:
            prepared = session_phase(submission, dataset, config, out_dir,
                                     meter.samples_path if meter.enabled else None, progress)
        measured = _measure(prepared, watch, meter, config, dataset.count, progress)
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
        index=run_index, started_utc=started, host=host(gpu_start),
        batch_size=prepared.batch_size, passes=config.passes, seconds=window.seconds,
        images_per_second=config.passes * dataset.count / window.seconds,
        correct=int(np.count_nonzero(first == dataset.labels)), prediction_mismatch_passes=mismatched,
        energy=energy, fairness=_fairness(watch, gpu_start, measured.cooldown),
        windows=window_records(meter.windows + measured.pass_windows), samples=samples_file, timeline=timeline,
        warnings=warnings + energy_warnings)
    return run, prepared


def _fairness(watch: GpuWatch, gpu_start: GpuState | None, cooldown: Cooldown) -> Fairness:
    return Fairness(gpu_start=gpu_start, gpu_end=watch.record(), gpu_unavailable=watch.reason or None,
                    cooldown=cooldown)


# --- the result ----------------------------------------------------------------------------------------


def _session_warnings(prepared: Prepared) -> list[str]:
    off = prepared.info.nodes_off_provider
    if not off:
        return []
    return [f"{len(off)} node(s) run outside {prepared.info.providers[0]}: " + ", ".join(off[:10])]


def assemble(submission: Submission, dataset: Dataset, config: ScoreConfig, prepared: Prepared, runs: list[Run],
             warnings: list[str]) -> Result:
    """The result document of a scored submission (unsealed): a summary of the runs, and the runs."""
    first = runs[0]
    accuracy = first.correct / dataset.count
    return Result(
        status="scored", created_utc=utc_now(),
        model=model_record(submission.name, submission.path, submission.report), data=data_record(dataset),
        config=config, versions=versions(GpuWatch(config.runtime.gpu).driver()), host=first.host,
        contract=contract_record(submission.contract),
        provider=provider_record(prepared.info, config.runtime.provider, config.runtime.gpu), tuning=prepared.tuning,
        batch_size=prepared.batch_size, batch_size_rule=prepared.batch_size_rule,
        padded_images=prepared.padded_images, passes=config.passes, warmup_passes=config.warmup_passes,
        correct=first.correct, accuracy=accuracy, category=category_for(accuracy, DEFAULT_THRESHOLDS),
        thresholds=list(DEFAULT_THRESHOLDS), prediction_mismatch_passes=first.prediction_mismatch_passes,
        seconds=statistics.median(run.seconds for run in runs),
        images_per_second=statistics.median(run.images_per_second for run in runs),
        energy=summarise(runs, config.passes, dataset.count), runs=runs,
        warnings=warnings + _session_warnings(prepared) + [w for run in runs for w in run.warnings])


def score(model_path: Path, config: ScoreConfig, out_dir: Path | None = None, progress: Progress | None = None,
          name: str = "", data_fingerprint: str = "") -> Result:
    """Score ``model_path``; write the sealed result into ``out_dir`` and return it."""
    progress = progress or Silent()
    submission = check_phase(model_path, config, progress, name)
    dataset = data_phase(config, progress, data_fingerprint)
    out_dir = prepare_out_dir(Path(out_dir) if out_dir is not None else default_out_dir(model_path))
    warnings = list(submission.report.warnings)
    if not dataset.official:
        warnings.append(f"data: {dataset.note or 'not the official test set'}")
    run, prepared = measure_run(submission, dataset, config, out_dir, 1, progress)
    result = seal(assemble(submission, dataset, config, prepared, [run], warnings))
    write_result(out_dir / RESULT_NAME, result)
    return result
