"""The small interface every power source implements, and what a source reports about itself.

A source is opened inside the sampler process from a picklable spec (NVML handles and open files
do not cross a ``spawn``), and reads cumulative energy counters (joules) and instant power (watts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ENERGY = "energy_j"  # a cumulative counter, unwrapped, in joules
POWER = "power_w"  # an instant power reading, in watts


class MeterUnavailable(Exception):  # noqa: N818 - it is a state, reported, not a failure of ours
    """A source cannot be used here; the message says why and how to fix it."""


@dataclass(frozen=True)
class Channel:
    """One column of the samples file."""

    name: str  # e.g. gpu0_energy_j, cpu_package0_energy_j
    domain: str  # gpu | cpu | dram
    kind: str  # ENERGY | POWER
    note: str = ""


class PowerSource(Protocol):
    """What the sampler needs of a source; a source subclasses it to take the defaults."""

    @property
    def name(self) -> str: ...

    def channels(self) -> list[Channel]: ...

    def read(self) -> list[float]:
        """One value per channel, in order; NaN where a single reading failed."""
        ...

    def close(self) -> None: ...

    def shortest_wrap_seconds(self) -> float | None:
        """The least time in which one of its counters can wrap at full power; None: none wraps (the default).

        The sampler must read a wrapping counter at least twice a wrap, or a whole wrap goes unseen."""
        return None


class SourceSpec(Protocol):
    """A picklable recipe for a source, opened in the sampler process."""

    @property
    def name(self) -> str: ...

    def open(self) -> PowerSource:
        """Open the source or raise MeterUnavailable with the reason."""
        ...
