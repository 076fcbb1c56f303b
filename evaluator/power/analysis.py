"""Energy of time windows from a samples file: pure arithmetic, no hardware.

Counter energy of a window is the cumulative counter interpolated at the window's edges; the
integral of instant power over the same window is reported beside it, with their disagreement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.errors import MeterError
from evaluator.power.base import ENERGY, POWER
from evaluator.power.sampler import SAMPLES_FORMAT

NVML_COUNTER_PERIOD_S = 0.1  # NVML's energy counter moves about every 100 ms
DOMAINS = ("gpu", "cpu", "dram")
TOTAL_DOMAINS = ("gpu", "cpu")  # what the competition sums; DRAM is reported apart
WRAPPING_DOMAINS = ("cpu", "dram")  # RAPL's counters wrap at max_energy_range_uj; NVML's 64-bit mJ counter never does
AVERAGED_POWER_NOTE = "averaged"  # nvml.py's channel note when only nvmlDeviceGetPowerUsage (driver-averaged) exists
FINE_COUNTER_STEPS = 1.5  # a counter moving at least every 1.5 sample intervals is as fine as the sampling


@dataclass(frozen=True)
class Window:
    """A named span on the monotonic clock, marked by the scorer."""

    name: str
    start_s: float
    end_s: float

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Samples:
    """A parsed samples file."""

    t_s: np.ndarray
    columns: dict[str, np.ndarray]
    channels: list[dict]
    unavailable: dict[str, str]
    period_s: float  # the period the sampler was asked for
    complete: bool  # the sampler reached its orderly end
    shortest_wrap_s: float | None = None  # the fastest RAPL counter's wrap time at full power; None: none wraps

    def channels_of(self, domain: str, kind: str) -> list[str]:
        return [c["name"] for c in self.channels if c["domain"] == domain and c["kind"] == kind]


def load_samples(path: Path) -> Samples:
    """Read a samples file written by the sampler; refuse anything else."""
    path = Path(path)
    try:
        text = path.read_text()
        lines = text.splitlines()
        if text and not text.endswith("\n"):
            lines = lines[:-1]  # a row still being written (or cut by a crash) is not a sample
    except OSError as exc:
        raise MeterError(f"{path}: cannot read the samples file ({exc})") from None
    if len(lines) < 2 or not lines[0].startswith("# "):
        raise MeterError(f"{path}: not an edl samples file (no header)")
    try:
        meta = json.loads(lines[0][2:])
        if meta.get("format") != SAMPLES_FORMAT:
            raise MeterError(f"{path}: unknown samples format {meta.get('format')!r}")
        header = lines[1].split(",")
        complete = lines[-1] == "# end"
        rows = [line for line in lines[2:] if line and not line.startswith("#")]
        # A row cut short by a crash mid-write is dropped; any other malformed row is an error.
        table = np.array([[float(v) for v in row.split(",")] for row in rows if len(row.split(",")) == len(header)])
    except (ValueError, AttributeError, KeyError) as exc:
        raise MeterError(f"{path}: malformed samples file ({exc})") from None
    if table.size == 0:
        table = np.empty((0, len(header)))
    try:
        channels, period_s = meta["channels"], float(meta["period_s"])
        wrap = meta.get("shortest_wrap_s")  # absent from files written before it was recorded
        shortest_wrap_s = None if wrap is None else float(wrap)
    except (KeyError, TypeError, ValueError) as exc:
        raise MeterError(f"{path}: malformed samples header ({exc})") from None
    return Samples(
        t_s=table[:, 0],
        columns={name: table[:, i] for i, name in enumerate(header) if i},
        channels=channels,
        unavailable=meta.get("unavailable", {}),
        period_s=period_s,
        complete=complete,
        shortest_wrap_s=shortest_wrap_s,
    )


def _valid(t_s: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = ~np.isnan(values)
    return t_s[keep], values[keep]


def _covers(t_s: np.ndarray, window: Window) -> bool:
    return t_s.size >= 2 and t_s[0] <= window.start_s and t_s[-1] >= window.end_s


def counter_energy_j(t_s: np.ndarray, energy_j: np.ndarray, window: Window) -> float:
    """Cumulative counter interpolated linearly at both edges of the window."""
    t_s, energy_j = _valid(t_s, energy_j)
    if not _covers(t_s, window):
        raise MeterError(f"the samples do not cover window {window.name!r}; the sampler stopped early")
    return float(np.interp(window.end_s, t_s, energy_j) - np.interp(window.start_s, t_s, energy_j))


def integrated_power_j(t_s: np.ndarray, power_w: np.ndarray, window: Window) -> float:
    """Trapezoidal integral of instant power over the window, edges interpolated."""
    t_s, power_w = _valid(t_s, power_w)
    if not _covers(t_s, window):
        raise MeterError(f"the samples do not cover window {window.name!r}; the sampler stopped early")
    inside = (t_s > window.start_s) & (t_s < window.end_s)
    times = np.concatenate([[window.start_s], t_s[inside], [window.end_s]])
    watts = np.concatenate(
        [[np.interp(window.start_s, t_s, power_w)], power_w[inside], [np.interp(window.end_s, t_s, power_w)]]
    )
    return float(np.sum((watts[1:] + watts[:-1]) * np.diff(times)) / 2)


def peak_power_w(t_s: np.ndarray, power_w: np.ndarray, window: Window) -> float | None:
    t_s, power_w = _valid(t_s, power_w)
    inside = (t_s >= window.start_s) & (t_s <= window.end_s)
    return float(power_w[inside].max()) if inside.any() else None


def largest_gap_s(t_s: np.ndarray, window: Window) -> float:
    """The longest stretch without a sample inside the window (a stalled or dead sampler)."""
    inside = t_s[(t_s >= window.start_s) & (t_s <= window.end_s)]
    edges = np.concatenate([[window.start_s], inside, [window.end_s]])
    return float(np.diff(edges).max()) if edges.size > 1 else window.seconds


def _bracketing(t_s: np.ndarray, window: Window) -> np.ndarray:
    """The samples a window's arithmetic uses: those inside it and the nearest one either side."""
    first = max(int(np.searchsorted(t_s, window.start_s, side="right")) - 1, 0)
    return t_s[first:int(np.searchsorted(t_s, window.end_s, side="left")) + 1]


def counter_blind_s(t_s: np.ndarray, energy_j: np.ndarray, window: Window) -> float:
    """The longest stretch without a valid reading of one counter around the window, edges' neighbours included.

    A wrapping counter read at both ends of a stretch longer than its wrap time may have wrapped unseen.
    """
    t_s, _ = _valid(t_s, energy_j)
    around = _bracketing(t_s, window)
    return float(np.diff(around).max()) if around.size > 1 else window.seconds


def stall_limit_s(period_s: float) -> float:
    """The longest gap a sampler may leave before it counts as stalled: 20 periods or 0.5 s."""
    return max(20 * period_s, 0.5)


def gap_limit_s(samples: Samples) -> float:
    """The longest gap a valid window may hold: the stall limit, and under half the shortest counter wrap."""
    limit = stall_limit_s(samples.period_s)
    if samples.shortest_wrap_s is not None:
        limit = min(limit, samples.shortest_wrap_s / 2)
    return limit


def check_continuity(samples: Samples, window: Window) -> float:
    """The largest gap between samples in ``window``; a stalled or dead sampler makes it a MeterError.

    A gap that could hide a RAPL counter's wraparound (half its wrap time at full power, or more) is one too:
    the counter would silently lose ``max_energy_range_uj``.
    """
    gap, limit = largest_gap_s(samples.t_s, window), gap_limit_s(samples)
    wrap_note = ""
    if samples.shortest_wrap_s is not None and limit < stall_limit_s(samples.period_s):
        wrap_note = f", and a RAPL counter can wrap in {samples.shortest_wrap_s:.2f} s, so one may have been missed"
    if gap > limit:
        raise MeterError(
            f"the samples have a {gap:.2f} s gap inside the {window.name} window (period {samples.period_s} s, "
            f"limit {limit:.2f} s); the sampler stalled or died{wrap_note}, so the measurement is invalid"
        )
    if samples.shortest_wrap_s is not None:  # a counter whose reads failed is as blind as a stalled sampler
        for name in (n for d in WRAPPING_DOMAINS for n in samples.channels_of(d, ENERGY)):
            blind = counter_blind_s(samples.t_s, samples.columns[name], window)
            if blind > samples.shortest_wrap_s / 2:
                raise MeterError(
                    f"{name} has no valid reading for {blind:.2f} s around the {window.name} window, and a RAPL "
                    f"counter can wrap in {samples.shortest_wrap_s:.2f} s: a wraparound may have been missed, so "
                    "the measurement is invalid"
                )
    return gap


def sample_intervals_s(t_s: np.ndarray, window: Window) -> np.ndarray:
    """The intervals between consecutive samples inside the window: the period the sampler achieved."""
    return np.diff(t_s[(t_s >= window.start_s) & (t_s <= window.end_s)])


def unavailable_reason(samples: Samples, domain: str) -> str:
    """Why a domain has no channel: the source's own reason, recorded by the sampler."""
    source = "nvml" if domain == "gpu" else "rapl"
    if source in samples.unavailable:
        return samples.unavailable[source]
    if domain == "dram":
        return "the RAPL tree has no dram sub-zone"
    return f"no {domain} energy channel was sampled"


COUNTER = "energy counter"
INTEGRAL = "integrated instant power (no energy counter)"


@dataclass(frozen=True)
class DomainReading:
    """One domain's energy over one window, summed over its channels, and how it was obtained."""

    joules: float | None  # None: the domain was not measured (see reason)
    method: str = ""  # energy counter | integrated instant power (no energy counter)
    integrated_power_j: float | None = None  # the integral of instant power, beside a counter
    peak_w: float | None = None
    reason: str = ""

    @property
    def counter_vs_integral(self) -> float | None:
        """Relative disagreement of the power integral with the counter (both present)."""
        if self.method != COUNTER or not self.joules or self.integrated_power_j is None:
            return None
        return (self.integrated_power_j - self.joules) / self.joules


def domain_reading(samples: Samples, domain: str, window: Window) -> DomainReading:
    """Joules of one domain over a window: the counter where there is one, else the power integral."""
    energy_names = samples.channels_of(domain, ENERGY)
    power_names = samples.channels_of(domain, POWER)
    if not energy_names and not power_names:
        return DomainReading(None, reason=unavailable_reason(samples, domain))
    integral = peak = None
    if power_names:
        integral = sum(integrated_power_j(samples.t_s, samples.columns[n], window) for n in power_names)
        peaks = [p for n in power_names if (p := peak_power_w(samples.t_s, samples.columns[n], window)) is not None]
        peak = sum(peaks) if peaks else None
    if energy_names:
        joules = sum(counter_energy_j(samples.t_s, samples.columns[n], window) for n in energy_names)
        return DomainReading(joules, COUNTER, integral, peak)
    return DomainReading(integral, INTEGRAL, integral, peak)


def between_moves(t_s: np.ndarray, energy_j: np.ndarray, window: Window) -> tuple[float, float] | None:
    """Seconds and joules of a counter between its first and last move inside the window; None under two moves.

    A counter that publishes in steps (NVML: ~100 ms) carries, at its first step inside a window, energy spent
    before the window opened: in an idle baseline opened a few ms after the priming pass, part of that work.
    Read between its own moves it holds only the window's energy, and its step quantisation at the edges goes too.
    A counter that moves at every sample (RAPL) loses under one sample interval at each edge.
    """
    t_s, energy_j = _valid(t_s, energy_j)
    inside = (t_s >= window.start_s) & (t_s <= window.end_s)
    t_s, energy_j = t_s[inside], energy_j[inside]
    moved = np.flatnonzero(np.diff(energy_j) != 0) + 1
    if moved.size < 2:
        return None
    first, last = int(moved[0]), int(moved[-1])
    return float(t_s[last] - t_s[first]), float(energy_j[last] - energy_j[first])


BETWEEN_MOVES = "each energy counter between its first and last move inside the window, else instant power integrated"


def mean_watts(samples: Samples, domain: str, window: Window) -> float | None:
    """A domain's mean watts over a quiet window (the idle baseline): each counter read between its own moves
    (``between_moves``), else instant power integrated; None when the domain has no channel."""
    energy_names = samples.channels_of(domain, ENERGY)
    if not energy_names:
        reading = domain_reading(samples, domain, window)
        return None if reading.joules is None or window.seconds <= 0 else reading.joules / window.seconds
    watts = 0.0
    for name in energy_names:
        span = between_moves(samples.t_s, samples.columns[name], window)
        if span is None or span[0] <= 0:  # a counter that hardly moved: read at the window's edges
            watts += counter_energy_j(samples.t_s, samples.columns[name], window) / window.seconds
        else:
            watts += span[1] / span[0]
    return watts


PER_PASS_INTEGRAL = "integrated instant power"


def counter_step_s(t_s: np.ndarray, energy_j: np.ndarray, window: Window) -> float | None:
    """The median time between moves of a cumulative counter inside the window; None when it moved under 3 times.

    Sampled every 10 ms, RAPL (updated every ~1 ms) moves at every sample; NVML's counter every ~100 ms.
    """
    t_s, energy_j = _valid(t_s, energy_j)
    inside = (t_s >= window.start_s) & (t_s <= window.end_s)
    t_s, energy_j = t_s[inside], energy_j[inside]
    moves = t_s[1:][np.diff(energy_j) != 0]
    return float(np.median(np.diff(moves))) if moves.size > 2 else None


def instant_power_channels(samples: Samples, domain: str) -> list[str]:
    """Power channels that read instant power, not a driver's running average."""
    return [c["name"] for c in samples.channels if c["domain"] == domain and c["kind"] == POWER
            and AVERAGED_POWER_NOTE not in c.get("note", "")]


@dataclass(frozen=True)
class PassMethod:
    """How one domain's joules of a single pass are measured: the method, or why the domain is left out."""

    method: str  # PER_PASS_INTEGRAL | COUNTER | "" (left out of per-pass joules)
    reason: str = ""

    def describe(self) -> str:
        return self.method or f"left out: {self.reason}"


def _coarse_counter(samples: Samples, counters: list[str], measured: Window) -> str:
    """Why the domain's counters are too coarse for passes; empty when every one moves at about every sample."""
    intervals = sample_intervals_s(samples.t_s, measured)
    if not intervals.size:
        return "no samples inside the measured window"
    period = float(np.median(intervals))
    steps = [counter_step_s(samples.t_s, samples.columns[n], measured) for n in counters]
    if all(step is not None and step <= FINE_COUNTER_STEPS * period for step in steps):
        return ""
    known = [step for step in steps if step is not None]
    moves = f"moves only every {max(known):.3f} s" if known else "hardly moves"
    return f"its energy counter {moves} (sampled every {period:.3f} s) and there is no instant power"


def pass_method(samples: Samples, domain: str, measured: Window) -> PassMethod:
    """The per-pass method of a domain: instant power integrated where there is some, else a counter as fine as
    the sampling (RAPL), else none: a counter that steps every ~100 ms (NVML) over 15-60 ms passes is
    off by -100 % to several hundred per cent per pass."""
    energy, power = samples.channels_of(domain, ENERGY), samples.channels_of(domain, POWER)
    instant = instant_power_channels(samples, domain)
    if instant and len(instant) == len(power) >= len(energy):
        return PassMethod(PER_PASS_INTEGRAL)
    if energy:
        why = _coarse_counter(samples, energy, measured)
        return PassMethod("", why) if why else PassMethod(COUNTER)
    if power:
        return PassMethod("", "only driver-averaged power and no energy counter")
    return PassMethod("", unavailable_reason(samples, domain))


def pass_joules(samples: Samples, domain: str, window: Window, method: PassMethod) -> float | None:
    """One domain's joules over one (short) window by ``method``; None for a domain left out."""
    if method.method == PER_PASS_INTEGRAL:
        return sum(integrated_power_j(samples.t_s, samples.columns[n], window)
                   for n in instant_power_channels(samples, domain))
    if method.method == COUNTER:
        return sum(counter_energy_j(samples.t_s, samples.columns[n], window)
                   for n in samples.channels_of(domain, ENERGY))
    return None
