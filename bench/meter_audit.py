"""An independent audit of the meter: `edl score` against a known power profile, reported vs expected.

The GPU is the fake NVML (tests/fake_pynvml.py) with NVML-like 100 ms counter steps and instant power, drawing
--work-watts exactly while a pass runs (priming, warm-up, measured and trailing passes) and --idle-watts
otherwise; the CPU is a fake powercap tree (tests/builders.PowercapTree) at --cpu-watts. Several runs: long
passes sampled every 10 ms, passes shorter than a 50 ms sample period, and one whose sampler is frozen
(SIGSTOP) for 1 s inside the idle baseline. Prints, per run, reported / expected for the GPU and CPU joules of
the measured window, the idle watts of each, and each domain's per-pass joules (min, median, max of the ratios).

    python bench/meter_audit.py [--runs 2] [--idle-seconds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from builders import PowercapTree, conv_model, fast_config, oracle_images, save_npz  # noqa: E402
from fake_pynvml import PowerProfile  # noqa: E402

from evaluator.config import AuditConfig  # noqa: E402
from evaluator.events import Event, Waiting  # noqa: E402
from evaluator.power.analysis import Window, load_samples, pass_joules, pass_method  # noqa: E402
from evaluator.report.result import Run  # noqa: E402
from evaluator.runtime.runner import BoundRunner  # noqa: E402
from evaluator.scoring.pipeline import score  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    images: int
    passes: int
    sample_ms: float
    stall_s: float = 0.0  # freeze the sampler this long, 0.5 s into the idle baseline


CASES = [Case("long passes, 10 ms", 1000, 60, 10.0), Case("short passes, 50 ms", 200, 60, 50.0),
         Case("1 s stall in idle", 1000, 30, 10.0, stall_s=1.0)]


def profile_joules(path: Path, base_w: float, start_s: float, end_s: float) -> float:
    """The integral of the profile's piecewise-constant watts over [start_s, end_s]: what a perfect meter reads."""
    rows = [line.split() for line in path.read_text().splitlines() if line]
    times = np.array([float(r[0]) for r in rows])
    watts = np.array([float(r[1]) for r in rows])
    edges = np.concatenate([[start_s], times[(times > start_s) & (times < end_s)], [end_s]])
    index = np.searchsorted(times, edges[:-1], side="right") - 1
    level = np.where(index >= 0, watts[np.maximum(index, 0)], base_w)
    return float(np.sum(level * np.diff(edges)))


class StallDuringIdle:
    """A progress sink that freezes the sampler process for ``stall_s``, 0.5 s into the idle baseline."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s, self.started = stall_s, False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Waiting) and event.waiting_for == "idle_baseline" and self.stall_s and not self.started:
            self.started = True
            threading.Thread(target=self._stall, daemon=True).start()

    def _stall(self) -> None:
        time.sleep(0.5)
        sampler = next(c for c in multiprocessing.active_children() if c.name == "edl-sampler")
        assert sampler.pid is not None
        os.kill(sampler.pid, signal.SIGSTOP)
        time.sleep(self.stall_s)
        os.kill(sampler.pid, signal.SIGCONT)


def _ratio(reported: float | None, expected: float) -> str:
    return "null" if reported is None else f"{reported:.2f} / {expected:.2f} = {reported / expected:.4f}"


def report_run(case: Case, run: Run, out_dir: Path, profile: Path, args: argparse.Namespace) -> None:
    energy, windows = run.energy, {w.name: w for w in run.windows}
    measured = windows["measured"]
    gpu_expected = profile_joules(profile, args.idle_watts, measured.start_s, measured.end_s)
    cpu_expected = args.cpu_watts * (measured.end_s - measured.start_s)
    print(f"\n{case.name}: {case.passes} passes of {case.images} images, {run.seconds:.2f} s window, "
          f"median pass {1000 * run.seconds / case.passes:.1f} ms, sample {case.sample_ms:g} ms")
    print(f"  GPU J      {_ratio(energy.gpu_j, gpu_expected)}")
    print(f"  CPU J      {_ratio(energy.cpu_j, cpu_expected)}")
    idle = energy.idle
    if idle is not None:
        print(f"  idle GPU W {_ratio(idle.watts.get('gpu'), args.idle_watts)}")
        print(f"  idle CPU W {_ratio(idle.watts.get('cpu'), args.cpu_watts)}")
        if idle.reason:
            print(f"  idle not reported: {idle.reason}")
    passes = [Window(w.name, w.start_s, w.end_s) for w in run.windows if w.name.startswith("pass")]
    samples = load_samples(out_dir / run.samples.name) if run.samples else None
    for domain, expected in (("gpu", lambda w: profile_joules(profile, args.idle_watts, w.start_s, w.end_s)),
                             ("cpu", lambda w: args.cpu_watts * w.seconds)):
        method = pass_method(samples, domain, Window("measured", measured.start_s, measured.end_s)) if samples else None
        if samples is None or method is None or not method.method:
            print(f"  per pass {domain.upper()}: {method.describe() if method else 'no samples'}")
            continue
        ratios = [(pass_joules(samples, domain, w, method) or 0.0) / expected(w) for w in passes]
        print(f"  per pass {domain.upper()} ({method.method}): min {min(ratios):.4f}, median "
              f"{statistics.median(ratios):.4f}, max {max(ratios):.4f}; last 3: "
              f"{', '.join(f'{r:.4f}' for r in ratios[-3:])}")
    for warning in run.warnings:
        print(f"  warning: {warning[:160]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each case")
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    parser.add_argument("--work-watts", type=float, default=300.0)
    parser.add_argument("--idle-watts", type=float, default=80.0)
    parser.add_argument("--cpu-watts", type=float, default=45.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        profile = PowerProfile(str(tmp / "profile.txt"))
        os.environ.update({"EDL_NVML_MODULE": "fake_pynvml", "FAKE_NVML_MODE": "", "FAKE_NVML_STEP_S": "0.1",
                           "FAKE_NVML_WATTS": str(args.idle_watts), "FAKE_NVML_EPOCH": str(time.monotonic()),
                           "FAKE_NVML_PROFILE": profile.path, "EDL_POWERCAP_ROOT": str(tmp / "pc"),
                           "EDL_HOST_LOCK": str(tmp / "edl.lock")})
        real_pass = BoundRunner._pass

        def metered_pass(self: BoundRunner) -> np.ndarray:
            profile.set(args.work_watts)
            try:
                return real_pass(self)
            finally:
                profile.set(args.idle_watts)

        BoundRunner._pass = metered_pass  # type: ignore[method-assign]
        model = conv_model(tmp / "m.onnx")
        with PowercapTree(tmp / "pc", [args.cpu_watts]):
            for case in CASES:
                images, labels = oracle_images(case.images, correct=case.images)
                data = save_npz(tmp / f"d{case.images}.npz", images, labels)
                for index in range(args.runs):
                    config = fast_config(data, passes=case.passes, idle_s=args.idle_seconds,
                                         sample_period_ms=case.sample_ms)
                    config = dataclasses.replace(config, audit=AuditConfig(audit_copies=0))  # not the meter's part
                    out_dir = tmp / f"out-{case.images}-{case.sample_ms}-{index}"
                    result = score(model, config, out_dir, sink=StallDuringIdle(case.stall_s))
                    report_run(case, result.runs[0], out_dir, Path(profile.path), args)


if __name__ == "__main__":
    main()
