"""The power timeline PNG: instant power of every source, phases shaded; with no source, why not."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evaluator.power.analysis import Samples, Window
from evaluator.power.base import ENERGY, POWER

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def unavailable_note(samples: Samples) -> str:
    """With no power channel at all: that nothing was measured (not 0 W), and why each source was missing.

    Empty when at least one channel was sampled.
    """
    if samples.channels:
        return ""
    reasons = [f"{source}: {reason}" for source, reason in samples.unavailable.items()] or ["no source was asked for"]
    lines = ["No power meter was available: nothing was measured (this is not 0 W)."]
    lines += [textwrap.fill(reason, 110, subsequent_indent="    ") for reason in reasons]
    return "\n".join(lines)


def timeline_figure(samples: Samples, windows: list[Window], title: str) -> Figure:
    """The timeline as a matplotlib figure (the caller saves and closes it)."""
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
    note = unavailable_note(samples)
    if note:  # phases still shown, but no power axis that would read as 0 W
        axes.set_yticks([])
        axes.text(0.5, 0.5, note, transform=axes.transAxes, ha="center", va="center", multialignment="left", fontsize=8,
                  bbox={"facecolor": "white", "edgecolor": "#c33"})
        title += " (no meter)"
    else:
        axes.set_ylabel("watts")
        axes.grid(alpha=0.3)
    axes.set_title(title)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper right", fontsize=7)
    figure.tight_layout()
    return figure


def plot_timeline(samples: Samples, windows: list[Window], path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    figure = timeline_figure(samples, windows, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
