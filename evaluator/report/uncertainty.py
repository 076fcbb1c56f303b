"""How sure a total is: a 95 % interval from the spread of repeated runs and the meters' resolution.

With n >= 2 runs, the half-width is Student's t (two-sided 95 %, n - 1 degrees of freedom) times the
standard error of the runs' totals, plus the largest counter-step bound of the runs (NVML's energy
counter moves in ~100 ms steps, so each run's GPU joules are known only to about one step's worth):
the spread covers what changes between runs, the bound what no number of runs averages away. The
interval is centred on the median, which is what the leaderboard ranks. A t-interval is chosen over
a bootstrap because three to five runs are too few to resample from; it assumes roughly normal
run-to-run noise, which repeated runs on one machine show (bench/RESULTS.md). With one run only
the counter-step bound is known, and the interval says so. Energy is never negative, so the low end
is clipped at zero: a wide interval (two runs: t is 12.7) would otherwise cross it, and the board then
warns that two runs give a wide interval.
"""

from __future__ import annotations

import math
import statistics

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom; beyond that 1.96 (normal).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
T_METHOD = "median ± (t(0.975, n-1) x standard error of the runs + the largest counter-step bound)"
BOUND_ONLY = "one run: median ± the counter-step bound only (the run-to-run spread is unknown)"


def t_975(degrees: int) -> float:
    return T_975[degrees - 1] if degrees <= len(T_975) else 1.96


def interval(totals: list[float], bounds_j: list[float]) -> tuple[float, float, str]:
    """[low, high] around the median of ``totals`` and how it was made; ``bounds_j`` per run (joules)."""
    centre = statistics.median(totals)
    bound = max(bounds_j, default=0.0)
    if len(totals) < 2:
        return max(0.0, centre - bound), centre + bound, BOUND_ONLY
    half = t_975(len(totals) - 1) * statistics.stdev(totals) / math.sqrt(len(totals)) + bound
    return max(0.0, centre - half), centre + half, T_METHOD


def few_runs_warning(names: list[str]) -> str:
    """Two runs make a wide interval (t is 12.7 for one degree of freedom): say so where they are ranked."""
    return (f"{', '.join(names)}: two runs give a wide 95 % interval (Student's t is {t_975(1):g} for one degree "
            "of freedom; its low end is clipped at 0 J): score with --repeat 3 or more before a prize is decided")
