"""``edl meter``: the same sampler and arithmetic around any command, or around nothing."""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from evaluator.errors import EdlError
from evaluator.fileio import atomic_write_json, sha256_file
from evaluator.power import default_specs
from evaluator.power.analysis import Window, energy_report, load_samples
from evaluator.power.nvml import nvml_module_name
from evaluator.power.sampler import Sampler


def meter_command(command: list[str], seconds: float | None, gpu: int, period_s: float, out_dir: Path,
                  nvml_module: str | None = None, powercap_root: str = "") -> dict[str, object]:
    """Run ``command`` (or sleep ``seconds``) inside a metered window; write and return the report."""
    nvml_module = nvml_module or nvml_module_name()
    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / "samples.csv"
    sampler = Sampler(default_specs((gpu,), nvml_module, powercap_root), samples_path, period_s)
    exit_code = 0
    with sampler:
        start = time.monotonic()
        if command:
            try:
                exit_code = subprocess.call(command)
            except OSError as exc:
                raise EdlError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
        else:
            time.sleep(seconds or 0.0)
        window = Window("measured", start, time.monotonic())
        time.sleep(max(2 * period_s, 0.02))
        sampler.stop()
    samples = load_samples(samples_path)
    energy = energy_report(samples, window, passes=1, images_per_pass=1)
    for key in ("per_pass_j", "per_image_j", "passes_j"):
        energy.pop(key, None)
    report = {
        "kind": "edl-meter",
        "command": command or None,
        "seconds": seconds,
        "exit_code": exit_code,
        "window": asdict(window),
        "energy": energy,
        "files": {"samples": {"name": samples_path.name, "sha256": sha256_file(samples_path)}},
    }
    atomic_write_json(out_dir / "meter.json", report)
    return report
