"""CPU package and DRAM energy from RAPL through the powercap sysfs tree.

The root is configurable (``EDL_POWERCAP_ROOT``) so that containers with sysfs mounted elsewhere,
and tests with a tree written under a temp folder, use the same code as a bare-metal host.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from evaluator.power.base import ENERGY, Channel, MeterUnavailable, PowerSource

DEFAULT_ROOT = "/sys/class/powercap"
ASSUMED_MAX_W = 500.0  # no package or DRAM zone draws more: how soon a counter can wrap is judged at this power
_PACKAGE_ZONE = re.compile(r"^intel-rapl:(\d+)$")
_SUB_ZONE = re.compile(r"^intel-rapl:(\d+):(\d+)$")


def powercap_root() -> Path:
    return Path(os.environ.get("EDL_POWERCAP_ROOT", DEFAULT_ROOT))


@dataclass
class Zone:
    """One RAPL counter: a package, or a package's DRAM sub-zone."""

    path: Path
    domain: str  # cpu | dram
    label: str  # package0, dram0
    max_range_uj: int
    last_uj: int = -1
    total_uj: int = 0

    def read_j(self) -> float:
        """Joules since the source was opened, unwrapping the counter at ``max_energy_range_uj``."""
        raw = int((self.path / "energy_uj").read_text())
        if self.last_uj >= 0:
            delta = raw - self.last_uj
            if delta < 0:  # the counter wrapped (AMD's can within minutes)
                delta += self.max_range_uj
            self.total_uj += delta
        self.last_uj = raw
        return self.total_uj / 1e6


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise MeterUnavailable(
            f"{path} is readable only by root (Linux 5.10+ restricts RAPL since CVE-2020-8694); run as root "
            f"or grant read access: sudo chmod o+r {path.parent}/energy_uj"
        ) from None
    except (OSError, ValueError) as exc:
        raise MeterUnavailable(f"{path} cannot be read ({exc})") from None


def discover_zones(root: Path) -> list[Zone]:
    """Each ``package-N`` once (never its core/uncore sub-zones), and DRAM sub-zones separately."""
    if not root.is_dir():
        raise MeterUnavailable(
            f"{root} does not exist: no RAPL here (a VM, a container without sysfs, or a non-x86 CPU); "
            "set EDL_POWERCAP_ROOT if powercap is mounted elsewhere"
        )
    zones: list[Zone] = []
    seen: set[Path] = set()
    for entry in sorted(root.iterdir()):
        match = _PACKAGE_ZONE.match(entry.name)
        if not match:
            continue
        name = (entry / "name").read_text().strip() if (entry / "name").is_file() else ""
        if not name.startswith("package-"):
            continue  # psys and friends overlap the packages: never summed
        index = name.removeprefix("package-")
        zones.append(_open_zone(entry, "cpu", f"package{index}"))
        seen.add(entry.resolve())
        candidates = list(entry.glob(f"intel-rapl:{match.group(1)}:*")) + list(
            root.glob(f"intel-rapl:{match.group(1)}:*")
        )
        for sub in sorted(candidates):
            if sub.resolve() in seen or not _SUB_ZONE.match(sub.name):
                continue
            seen.add(sub.resolve())
            sub_name = (sub / "name").read_text().strip() if (sub / "name").is_file() else ""
            if sub_name == "dram":
                zones.append(_open_zone(sub, "dram", f"dram{index}"))
    if not zones:
        raise MeterUnavailable(f"{root} has no intel-rapl package zones (no RAPL support exposed here)")
    return zones


def _open_zone(path: Path, domain: str, label: str) -> Zone:
    max_range = _read_int(path / "max_energy_range_uj")
    _read_int(path / "energy_uj")
    return Zone(path=path, domain=domain, label=label, max_range_uj=max_range)


class RaplSource(PowerSource):
    """Every package's (and DRAM's) energy counter under one powercap root."""

    name = "rapl"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.zones = discover_zones(root)
        for zone in self.zones:
            zone.read_j()

    def channels(self) -> list[Channel]:
        return [Channel(f"{zone.domain}_{zone.label}_energy_j", zone.domain, ENERGY) for zone in self.zones]

    def read(self) -> list[float]:
        values = []
        for zone in self.zones:
            try:
                values.append(zone.read_j())
            except (OSError, ValueError):
                values.append(math.nan)
        return values

    def close(self) -> None:
        pass

    def shortest_wrap_seconds(self, assumed_max_w: float = ASSUMED_MAX_W) -> float:
        """How long the fastest-wrapping counter takes to wrap at ``assumed_max_w``: sample faster, and never stall
        for as long (a wrap between two reads is invisible: ``max_energy_range_uj`` would be lost)."""
        return min(zone.max_range_uj / 1e6 / assumed_max_w for zone in self.zones)


@dataclass(frozen=True)
class RaplSpec:
    """Picklable recipe: the powercap root to read."""

    root: str = ""
    name: str = "rapl"

    def open(self) -> RaplSource:
        return RaplSource(Path(self.root) if self.root else powercap_root())
