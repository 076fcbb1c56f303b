"""Run a command with a powercap tree whose counters advance at known watts (a RAPL stand-in).

For machines without RAPL (VMs, this project's CI): shows that what `edl` reports as CPU joules is
watts x seconds of the counters it read. The tree is real files in the kernel's format, with
package and DRAM zones, updated every 2 ms by this process, and EDL_POWERCAP_ROOT points at it.

    python bench/fake_rapl.py --package-watts 45,30 --dram-watts 6 -- edl score samples/resnet20.onnx ...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from builders import PowercapTree  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-watts", default="45,30", help="watts per package, comma separated")
    parser.add_argument("--dram-watts", type=float, default=6.0)
    parser.add_argument("--wrap-uj", type=int, default=262_143_328_850, help="max_energy_range_uj of each zone")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    watts = [float(w) for w in args.package_watts.split(",")]
    with tempfile.TemporaryDirectory() as tmp, PowercapTree(Path(tmp) / "powercap", watts, args.dram_watts,
                                                            args.wrap_uj):
        print(f"fake RAPL: packages {watts} W (sum {sum(watts)} W), dram {args.dram_watts} W per package",
              file=sys.stderr)
        code = subprocess.call(command, env=os.environ | {"EDL_POWERCAP_ROOT": str(Path(tmp) / "powercap")})
    sys.exit(code)


if __name__ == "__main__":
    main()
