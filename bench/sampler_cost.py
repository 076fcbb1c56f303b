"""The sampler's own cost: CPU seconds it burns per wall second at a given period.

Runs the real spawn sampler against the machine's own sources (NVML and RAPL where present) and,
so that there is always file I/O to pay for, a powercap tree of two packages with DRAM written
under a temp folder. Reads the child's utime+stime from /proc.

    python bench/sampler_cost.py [--seconds 5] [--sample-ms 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from builders import PowercapTree  # noqa: E402

from evaluator.power.analysis import load_samples  # noqa: E402
from evaluator.power.meter import default_specs  # noqa: E402
from evaluator.power.rapl import RaplSpec  # noqa: E402
from evaluator.power.sampler import Sampler  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sample-ms", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = PowercapTree(Path(tmp) / "pc", package_watts=[50.0, 50.0], dram_watts=5.0)
        tree.write(1.0)
        specs = [*default_specs((0,)), RaplSpec(root=str(Path(tmp) / "pc"), name="rapl-file-tree")]
        sampler = Sampler(specs, Path(tmp) / "samples.csv", args.sample_ms / 1000)
        with sampler:
            pid = sampler._process.pid
            start_cpu, start = cpu_seconds(pid), time.monotonic()
            time.sleep(args.seconds)
            used, wall = cpu_seconds(pid) - start_cpu, time.monotonic() - start
            sampler.stop()
        samples = load_samples(Path(tmp) / "samples.csv")
    print(json.dumps({
        "sample_ms": args.sample_ms,
        "channels": [c["name"] for c in samples.channels],
        "unavailable": samples.unavailable,
        "samples_per_s": samples.t_s.size / wall,
        "sampler_cpu_s_per_s": used / wall,
        "sampler_cpu_percent_of_one_core": 100 * used / wall,
    }, indent=2))


if __name__ == "__main__":
    main()
