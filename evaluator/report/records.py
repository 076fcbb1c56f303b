"""The small records more than one document embeds: the test set, windows, files, energy, the seal and signature.

Each is defined here once; the documents (``result``, ``meter_report``, ``batch_record``,
``review_record``) embed them. ``EnergyTotals`` is the one totals record: a run's energy, the
submission's energy over its runs and ``edl meter``'s report all carry exactly its fields.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.fileio import atomic_write_json
from evaluator.typedjson import doc, to_json


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_document(path: Path, document: object) -> None:
    """Write a dataclass document atomically (temp file, fsync, rename): readers see the old or the new."""
    atomic_write_json(path, to_json(document))


@dataclass
class DataRecord:
    """The test set the submission saw."""

    fingerprint: str = field(metadata=doc("SHA-256 of the canonical uint8 NHWC images and labels"))
    images: int
    official: bool = field(metadata=doc("verified against the official archive's md5s"))
    source: str


@dataclass
class WindowRecord:
    name: str
    start_s: float
    end_s: float


@dataclass
class FileRecord:
    name: str = field(metadata=doc("the file's name in the result's folder"))
    sha256: str | None = None


@dataclass
class DomainEnergy:
    joules: float | None
    method: str = ""
    integrated_power_j: float | None = None
    counter_vs_integral: float | None = None
    peak_w: float | None = None
    mean_w: float | None = None
    reason: str = ""


@dataclass
class IdleRecord:
    seconds: float
    watts: dict[str, float | None] = field(metadata=doc(
        "mean watts per domain; each energy counter read between its first and last move inside the idle window, so "
        "a step carrying energy from before it (the priming pass's) is not counted"))
    total_w: float | None
    reason: str = field(default="", metadata=doc(
        "why the watts are null: the idle window failed the measured window's gap and wrap rules, or there is no "
        "meter and the idle baseline was skipped"))
    method: str = field(default="", metadata=doc(
        "how the watts were read; empty in results written before idle counters were read between their moves"))


@dataclass
class EnergyTotals:
    """The totals every energy section carries: the joules counted, their domains, and per pass and per image."""

    total_j: float | None = field(metadata=doc("CPU package + GPU joules over the measured passes (a summary over "
                                               "runs: the median of the runs')"))
    total_domains: list[str] = field(default_factory=list)
    missing_domains: dict[str, str] = field(default_factory=dict, metadata=doc("each domain not in the total, "
                                                                               "and why"))
    gpu_j: float | None = None
    cpu_j: float | None = None
    dram_j: float | None = field(default=None, metadata=doc("reported apart, never in the total"))
    per_pass_j: float | None = None
    per_image_j: float | None = None
    reason: str = field(default="", metadata=doc("why total_j is null, when it is"))


@dataclass
class RunEnergy(EnergyTotals):
    """Joules of one run's measured window (CPU package + GPU), with breakdowns and quality checks."""

    mean_w: float | None = None
    window_s: float | None = None
    domains: dict[str, DomainEnergy] = field(default_factory=dict)
    sample_period_s: float | None = field(default=None, metadata=doc("the sample period asked for"))
    sample_period_achieved_s: float | None = field(
        default=None, metadata=doc("median interval between samples inside the measured window"))
    sample_period_p95_s: float | None = field(
        default=None, metadata=doc("95th percentile of the intervals between samples inside the measured window"))
    samples_in_window: int | None = None
    largest_gap_s: float | None = None
    gap_limit_s: float | None = field(default=None, metadata=doc(
        "the largest gap allowed: 20 sample periods or 0.5 s, and under half the time in which the fastest RAPL "
        "counter can wrap at 500 W"))
    gpu_counter_quantisation_bound: float | None = None
    idle: IdleRecord | None = None
    above_idle_j: float | None = None
    passes_j: list[float | None] = field(default_factory=list, metadata=doc(
        "joules of each measured pass, summed over the domains passes_j_method does not leave out"))
    passes_j_method: dict[str, str] = field(default_factory=dict, metadata=doc(
        "per domain of the total, how passes_j was measured: integrated instant power, energy counter (only one "
        "that moves at about every sample), or left out with the reason (a counter stepping every ~100 ms)"))


@dataclass
class Integrity:
    algorithm: str
    sha256: str


@dataclass
class Signature:
    """The organiser's signature over the canonical document (all but integrity and signature)."""

    algorithm: str
    public_key_sha256: str = field(metadata=doc("sha256 of the raw public key that verifies it"))
    signature: str = field(metadata=doc("base64"))
