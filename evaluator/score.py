"""Score one submission end to end: check, data, session, meter, passes, result document.

The workload marks windows on ``time.monotonic``; the sampler process records power on the same
clock; the report is computed from both afterwards. Nothing here prints: progress goes through a
callback, errors are raised, and the CLI decides how to show them.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from evaluator import data as data_module
from evaluator.errors import EdlError, MeterError, ResultError, SubmissionError
from evaluator.fileio import atomic_write_json, sha256_file
from evaluator.hostinfo import host, versions
from evaluator.power import default_specs
from evaluator.power.analysis import Window, energy_report, load_samples
from evaluator.power.base import MeterUnavailable
from evaluator.power.nvml import driver_version, gpu_state, load_nvml, nvml_index, nvml_module_name
from evaluator.power.sampler import Sampler
from evaluator.ranking import DEFAULT_THRESHOLDS, category_for
from evaluator.runtime import BoundRunner, RuntimeSettings, SessionInfo, create_session, make_batches, prime_runner
from evaluator.submission import Limits, check_submission
from evaluator.tune import run_tuning
from evaluator.verify import seal

SCHEMA_VERSION = 1
RESULT_NAME = "result.json"
SAMPLES_NAME = "samples.csv"
TIMELINE_NAME = "timeline.png"


class Progress(Protocol):
    """What the scorer tells a progress display."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, images: int = 0) -> None: ...


class _Silent:
    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, images: int = 0) -> None:
        pass


@dataclass
class ScoreOptions:
    """Every setting of a scoring run; all of it lands in the result."""

    data: Path | None = None
    provider: str = "auto"
    gpu: int = 0
    passes: int = 200
    warmup_passes: int = 1
    batch_size: int | None = None
    out_dir: Path | None = None
    meter: bool = True
    idle_seconds: float = 10.0
    sample_ms: float = 10.0
    cooldown_seconds: float = 60.0
    target_temp_c: float | None = None
    temp_band_c: float = 2.0
    exclusive: bool = False
    plot: bool = True
    allow_download: bool = True
    nvml_module: str = field(default_factory=nvml_module_name)
    powercap_root: str = ""
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    limits: Limits = field(default_factory=Limits)
    prefer_nhwc: bool = True
    cuda_graph: bool = True
    overlap_batches: bool = True
    cudnn_search: str = "EXHAUSTIVE"
    tf32: bool = True
    tune: bool = False
    tune_seconds: float = 2.0

    def runtime(self, out_dir: Path) -> RuntimeSettings:
        """The runtime settings these options pin (the same for every submission scored with them)."""
        return RuntimeSettings(provider=self.provider, gpu=self.gpu, prefer_nhwc=self.prefer_nhwc,
                               cuda_graph=self.cuda_graph, overlap_batches=self.overlap_batches,
                               cudnn_conv_algo_search=self.cudnn_search, tf32=self.tf32,
                               trt_cache_dir=str((out_dir / "trt-cache").resolve()) if self.provider == "tensorrt"
                               else "")

    def settings(self) -> dict[str, object]:
        """The options that can change a result (not where files go): equal settings, comparable results."""
        return {
            "provider": self.provider,
            "gpu": self.gpu,
            "passes": self.passes,
            "warmup_passes": self.warmup_passes,
            "batch_size": self.batch_size,
            "meter": self.meter,
            "idle_seconds": self.idle_seconds,
            "sample_ms": self.sample_ms,
            "cooldown_seconds": self.cooldown_seconds,
            "target_temp_c": self.target_temp_c,
            "temp_band_c": self.temp_band_c,
            "prefer_nhwc": self.prefer_nhwc,
            "cuda_graph": self.cuda_graph,
            "overlap_batches": self.overlap_batches,
            "cudnn_search": self.cudnn_search,
            "tf32": self.tf32,
            "tune": self.tune,
            "tune_seconds": self.tune_seconds if self.tune else None,
        }

    def validate(self) -> None:
        if self.passes < 1:
            raise EdlError(f"--passes {self.passes}: at least one measured pass is needed")
        if self.warmup_passes < 0:
            raise EdlError(f"--warmup {self.warmup_passes} must be 0 or more")
        if self.batch_size is not None and self.batch_size < 1:
            raise EdlError(f"--batch-size {self.batch_size} must be positive")
        if self.idle_seconds < 0 or self.cooldown_seconds < 0:
            raise EdlError("--idle-seconds and --cooldown must be 0 or more")
        if self.sample_ms <= 0:
            raise EdlError(f"--sample-ms {self.sample_ms} must be positive")
        if self.tune_seconds <= 0:
            raise EdlError(f"--tune-seconds {self.tune_seconds} must be positive")
        if self.cudnn_search not in ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"):
            raise EdlError(f"--cudnn-search {self.cudnn_search!r}: choose EXHAUSTIVE, HEURISTIC or DEFAULT")


def default_out_dir(model_path: Path) -> Path:
    return Path("results") / model_path.stem


def preflight_out_dir(out_dir: Path) -> None:
    """Fail before measuring if results cannot be written (read-only folder, full disk)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"\0" * 65536)
        probe.unlink()
    except OSError as exc:
        raise ResultError(f"cannot write results to {out_dir} ({exc.strerror or exc}); pass a writable --out") from None


class _GpuWatch:
    """NVML in the scoring process, for the fairness record and the cool-down (not for energy)."""

    def __init__(self, options: ScoreOptions) -> None:
        self.index = nvml_index(options.gpu)
        try:
            self.nvml = load_nvml(options.nvml_module)
            self.reason = ""
        except MeterUnavailable as exc:
            self.nvml = None
            self.reason = str(exc)

    def state(self) -> dict[str, object] | None:
        if self.nvml is None:
            return None
        try:
            return gpu_state(self.nvml, self.index)
        except Exception as exc:  # noqa: BLE001 - a missing index or a lost GPU
            return {"error": str(exc)}

    def driver(self) -> str | None:
        return driver_version(self.nvml) if self.nvml else None

    def cooldown(self, options: ScoreOptions, progress: Progress) -> dict[str, object]:
        """Wait (bounded) until the GPU temperature settles within a band of the target."""
        if self.nvml is None:
            return {"skipped": f"no GPU temperature: {self.reason}"}
        start = self.state() or {}
        first = start.get("temperature_c")
        if first is None or options.cooldown_seconds <= 0:
            return {"skipped": "cool-down disabled" if first is not None else "temperature not readable",
                    "start_c": first}
        progress.phase("cool-down")
        deadline = time.monotonic() + options.cooldown_seconds
        history: list[tuple[float, float]] = []
        reached = False
        while True:
            now = time.monotonic()
            temp = (self.state() or {}).get("temperature_c")
            if temp is None:
                break
            history.append((now, float(temp)))
            if options.target_temp_c is not None:
                reached = temp <= options.target_temp_c + options.temp_band_c
            else:  # settled: no more than the band's worth of change over the last 10 s
                recent = [t for s, t in history if s >= now - 10.0]
                reached = now - history[0][0] >= 10.0 and max(recent) - min(recent) <= options.temp_band_c / 2
            if reached or now >= deadline:
                break
            time.sleep(1.0)
        return {
            "start_c": first,
            "end_c": history[-1][1] if history else first,
            "target_c": options.target_temp_c,
            "band_c": options.temp_band_c,
            "reached": reached,
            "waited_s": (history[-1][0] - history[0][0]) if history else 0.0,
        }


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


def score(model_path: Path, options: ScoreOptions, progress: Progress | None = None) -> dict[str, object]:
    """Score ``model_path``; write and return the result document."""
    progress = progress or _Silent()
    options.validate()
    model_path = Path(model_path)
    progress.phase("check")
    report = check_submission(model_path, options.limits)
    if not report.valid:
        raise SubmissionError(report.problems)
    contract = report.contract
    assert contract is not None
    progress.phase("data")
    dataset = data_module.resolve(options.data, allow_download=options.allow_download)
    out_dir = options.out_dir or default_out_dir(model_path)
    preflight_out_dir(out_dir)
    warnings = list(report.warnings)
    if not dataset.official:
        warnings.append(f"data: {dataset.note or 'not the official test set'}")

    def prepare(run_options: ScoreOptions) -> tuple[BoundRunner, SessionInfo, int, str, int]:
        progress.phase("session")
        session, info = create_session(model_path, run_options.runtime(out_dir))
        if info.nodes_off_provider:
            warnings.append(
                f"{len(info.nodes_off_provider)} node(s) run outside {info.providers[0]}: "
                + ", ".join(info.nodes_off_provider[:10])
            )
        batch_size, batch_rule = contract.batch_size(run_options.batch_size)
        batches, padding = make_batches(dataset.images, contract, batch_size)
        runner = prime_runner(model_path, session, info, contract, batches, run_options.runtime(out_dir),
                              dataset.count)
        return runner, info, batch_size, batch_rule, padding

    if not options.tune:
        runner, info, batch_size, batch_rule, padding = prepare(options)
    tuning = None

    watch = _GpuWatch(options)
    gpu_start = watch.state()
    other = (gpu_start or {}).get("other_compute_pids") or []
    if other:
        message = f"other processes compute on GPU {options.gpu}: pids {other}"
        if options.exclusive:
            raise MeterError(f"{message}; --exclusive refuses to measure. Stop them, or drop --exclusive")
        warnings.append(message + " (their power is counted)")

    samples_path = out_dir / SAMPLES_NAME
    sampler = None
    if options.meter:
        samples_path.unlink(missing_ok=True)
        specs = default_specs((options.gpu,), options.nvml_module, options.powercap_root)
        sampler = Sampler(specs, samples_path, options.sample_ms / 1000.0)
    windows: list[Window] = []
    try:
        if sampler:
            progress.phase("sampler")
            sampler.start()
        if options.tune:
            winner, tuning = run_tuning(model_path, contract, dataset, options, out_dir,
                                        samples_path if sampler else None, progress)
            runner, info, batch_size, batch_rule, padding = prepare(winner.apply(options))
            if contract.fixed_batch is None and contract.metadata_batch is None:
                batch_rule = "--tune"
        cooling_from = time.monotonic()
        cooldown = watch.cooldown(options, progress)
        if cooldown.get("waited_s"):
            windows.append(Window("cooldown", cooling_from, time.monotonic()))
        if sampler and options.idle_seconds > 0:
            progress.phase("idle baseline")
            start = time.monotonic()
            time.sleep(options.idle_seconds)
            windows.append(Window("idle", start, time.monotonic()))
        warm_windows, _ = _run_passes(runner, options.warmup_passes, "warmup", progress, dataset.count)
        if warm_windows:
            windows.append(Window("warmup", warm_windows[0].start_s, warm_windows[-1].end_s))
        pass_windows, predictions = _run_passes(runner, options.passes, "pass", progress, dataset.count)
        measured = Window("measured", pass_windows[0].start_s, pass_windows[-1].end_s)
        windows.append(measured)
        if sampler:
            time.sleep(max(2 * options.sample_ms / 1000.0, 0.02))  # a sample beyond the window's end
            sampler.stop()
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    gpu_end = watch.state()

    reference = predictions[0]
    mismatched = [i for i, p in enumerate(predictions) if not np.array_equal(p, reference)]
    if mismatched:
        warnings.append(f"{len(mismatched)} measured pass(es) predicted differently from the first: {mismatched[:10]}")
    correct = int(np.count_nonzero(reference == dataset.labels))
    accuracy = correct / dataset.count

    energy: dict[str, object]
    files: dict[str, object] = {}
    if sampler:
        progress.phase("energy")
        samples = load_samples(samples_path)
        idle_window = next((w for w in windows if w.name == "idle"), None)
        energy = energy_report(samples, measured, options.passes, dataset.count, idle_window, pass_windows)
        warnings.extend(energy["warnings"])
        files["samples"] = {"name": SAMPLES_NAME, "sha256": sha256_file(samples_path)}
        if options.plot:
            from evaluator.power.timeline import plot_timeline

            plot_timeline(samples, windows, out_dir / TIMELINE_NAME, f"{model_path.name}: power")
            files["timeline"] = {"name": TIMELINE_NAME}
    else:
        energy = {"total_j": None, "gpu_j": None, "cpu_j": None, "dram_j": None,
                  "reason": "metering was switched off (--no-meter)"}

    gpu_name = (gpu_start or {}).get("name")
    result: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "edl-result",
        "status": "scored",
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": {
            "path": str(model_path),
            "sha256": report.sha256,
            "bytes": report.bytes,
            "parameters": report.parameters,
            "opsets": report.opsets,
            "producer": report.producer,
        },
        "contract": asdict(contract),
        "data": dataset.describe(),
        "provider": {
            "name": info.provider,
            "requested": options.provider,
            "selection": info.selection,
            "providers": info.providers,
            "gpu": options.gpu if info.provider == "cuda" else None,
            "provider_options": info.provider_options,
            "session_options": info.session_options,
            "placement": info.placement,
            "nodes_off_provider": info.nodes_off_provider,
            "cuda_graph": info.cuda_graph,
            "overlap_batches": info.overlap_batches,
            "environment": info.environment,
        },
        "settings": options.settings(),
        "tuning": tuning,
        "batch_size": batch_size,
        "batch_size_rule": batch_rule,
        "padded_images": padding,
        "passes": options.passes,
        "warmup_passes": options.warmup_passes,
        "correct": correct,
        "accuracy": accuracy,
        "category": category_for(accuracy, options.thresholds),
        "thresholds": list(options.thresholds),
        "prediction_mismatch_passes": mismatched,
        "seconds": measured.seconds,
        "images_per_second": options.passes * dataset.count / measured.seconds,
        "energy": energy,
        "fairness": {
            "gpu_start": gpu_start,
            "gpu_end": gpu_end,
            "gpu_unavailable": watch.reason or None,
            "cooldown": cooldown,
        },
        "measurement": {
            "sample_ms": options.sample_ms if sampler else None,
            "idle_seconds": options.idle_seconds if sampler else 0,
            "clock": "time.monotonic",
        },
        "windows": [asdict(w) for w in windows] + [asdict(w) for w in pass_windows],
        "files": files,
        "versions": versions(watch.driver()),
        "host": host(gpu_name),
        "warnings": warnings,
    }
    atomic_write_json(out_dir / RESULT_NAME, seal(result))
    return result
