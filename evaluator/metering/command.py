"""``edl meter``: the same meter and arithmetic around any command, or around nothing."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from evaluator.errors import EdlError, UsageError
from evaluator.fileio import prepare_out_dir, sha256_file
from evaluator.power.meter import Meter
from evaluator.report.energy import run_energy
from evaluator.report.meter_report import MeterReport
from evaluator.report.records import FileRecord, WindowRecord, write_document

METER_SAMPLES_NAME = "samples.csv"  # edl meter's one window; a score's runs are report.result.SAMPLES_NAME
REPORT_NAME = "meter.json"


def meter_command(command: list[str], seconds: float | None, gpu: int, period_s: float, out_dir: Path
                  ) -> MeterReport:
    """Run ``command`` (or sleep ``seconds``) inside a metered window; write and return the report."""
    if not command and (seconds is None or seconds < 0):
        raise UsageError(f"--seconds {seconds}: give a number of seconds, 0 or more")
    prepare_out_dir(out_dir)  # before the sampler starts: it could only fail there, on its own stderr
    exit_code = 0
    with Meter(out_dir / METER_SAMPLES_NAME, (gpu,), period_s) as meter:
        with meter.window("measured"):
            if command:
                try:
                    exit_code = subprocess.call(command)
                except OSError as exc:
                    raise EdlError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
            else:
                time.sleep(seconds or 0.0)
        samples = meter.stop()
    window = meter.find("measured")
    assert samples is not None and window is not None
    energy, _ = run_energy(samples, window, passes=1, images_per_pass=1)
    energy.per_pass_j = energy.per_image_j = None
    report = MeterReport(command=command or None, seconds=seconds, exit_code=exit_code,
                         window=WindowRecord(window.name, window.start_s, window.end_s), energy=energy,
                         samples=FileRecord(METER_SAMPLES_NAME, sha256_file(meter.samples_path)))
    write_document(out_dir / REPORT_NAME, report)
    return report
