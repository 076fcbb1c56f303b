"""The power timeline PNG: instant power of every source, phases shaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluator.power.analysis import Samples, Window
from evaluator.power.base import ENERGY, POWER

PHASE_COLOURS = {"cooldown": "#dddddd", "idle": "#cfe2ff", "warmup": "#ffe5b4", "measured": "#d4f4dd"}


def _derived_power(t_s: np.ndarray, energy_j: np.ndarray, smooth_s: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Watts from a cumulative counter, differenced over ~smooth_s to tame counter steps."""
    keep = ~np.isnan(energy_j)
    t_s, energy_j = t_s[keep], energy_j[keep]
    if t_s.size < 2:
        return t_s[:0], energy_j[:0]
    step = max(1, int(np.searchsorted(t_s, t_s[0] + smooth_s)))
    dt = t_s[step:] - t_s[:-step]
    watts = (energy_j[step:] - energy_j[:-step]) / np.where(dt > 0, dt, np.nan)
    return (t_s[step:] + t_s[:-step]) / 2, watts


def plot_timeline(samples: Samples, windows: list[Window], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    origin = float(samples.t_s[0]) if samples.t_s.size else 0.0
    figure, axes = plt.subplots(figsize=(10, 4), dpi=110)
    for window in windows:
        if window.name in PHASE_COLOURS:
            axes.axvspan(window.start_s - origin, window.end_s - origin, color=PHASE_COLOURS[window.name],
                         label=window.name, zorder=0)
    for channel in samples.channels:
        values = samples.columns[channel["name"]]
        if channel["kind"] == POWER:
            axes.plot(samples.t_s - origin, values, linewidth=0.8, label=channel["name"])
        elif channel["kind"] == ENERGY and not samples.channels_of(channel["domain"], POWER):
            t_mid, watts = _derived_power(samples.t_s, values)
            axes.plot(t_mid - origin, watts, linewidth=0.8, label=channel["name"].replace("energy_j", "w (counter)"))
    axes.set_xlabel("seconds since sampling started")
    axes.set_ylabel("watts")
    axes.set_title(title)
    axes.legend(loc="upper right", fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
