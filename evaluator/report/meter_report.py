"""The meter report: what ``edl meter`` writes about the energy around a command (or around nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from evaluator.report.records import FileRecord, RunEnergy, WindowRecord
from evaluator.typedjson import doc


@dataclass
class MeterReport:
    """What ``edl meter`` measured around a command (or around nothing)."""

    command: list[str] | None
    seconds: float | None = field(metadata=doc("the idle time asked for, without a command"))
    exit_code: int
    window: WindowRecord
    energy: RunEnergy
    samples: FileRecord
    kind: Literal["edl-meter"] = "edl-meter"
