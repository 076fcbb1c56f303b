"""What ``edl verify`` reports: named checks, each pass, fail or skip (could not be made), with a detail."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

REL_TOL = 1e-9


@dataclass
class Check:
    name: str
    outcome: str  # pass | fail | skip
    detail: str = ""


@dataclass
class Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool | None, detail: str = "") -> None:
        """``ok`` None records a check that could not be made (skip)."""
        self.items.append(Check(name, "skip" if ok is None else ("pass" if ok else "fail"), detail))


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9)
