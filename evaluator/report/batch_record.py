"""The batch summary, ``batch.json``: what one score-dir run did over a folder of submissions.

Written by score-dir beside the result folders; read by the leaderboard (the reference's drift) and
by ``edl verify`` (the folder that was scored), both through ``report.reader.read_batch``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from evaluator.config import BatchConfig, ScoreConfig
from evaluator.report.records import DataRecord
from evaluator.typedjson import doc

BATCH_NAME = "batch.json"  # score-dir's summary, beside the result folders


@dataclass
class RunPlace:
    index: int
    host: str
    started_utc: str
    seconds: float
    outcome: str = field(default="", metadata=doc("empty: measured; else why not"))


@dataclass
class BatchItem:
    """What score-dir did with one submission."""

    name: str
    outcome: Literal["scored", "failed", "skipped"]
    reason: str = ""
    seconds: float | None = field(default=None, metadata=doc("time spent scoring it in this batch, all runs"))
    status: str = field(default="", metadata=doc("a skipped submission's standing result status"))
    runs: list[int] = field(default_factory=list, metadata=doc("the run indices measured in this batch"))
    places: list[RunPlace] = field(default_factory=list, metadata=doc("which host measured each run, and when"))
    gpu_kind: str | None = None
    archived: str = field(default="", metadata=doc(
        "where the earlier result this batch replaced was moved (a folder under _archive/), if any"))
    failure_file: str = field(default="", metadata=doc(
        "a failed re-run of a submission with a scored result: the failure, recorded beside the result that stands"))


@dataclass
class IgnoredEntry:
    """An entry of the submissions folder that score-dir did not score, and why."""

    name: str
    reason: str


@dataclass
class ThermalRecord:
    """The one thermal state of a batch: every run cools to this GPU temperature before its idle baseline."""

    target_c: float | None
    source: str = field(metadata=doc("--target-temp, the settled idle temperature, or why there is none"))
    band_c: float


@dataclass
class ReferenceRun:
    index: int
    after_scorings: int = field(metadata=doc("scorings done in this batch before this reference run"))
    started_utc: str
    total_j: float | None
    seconds: float | None
    start_temp_c: float | None
    reason: str = ""


@dataclass
class ReferenceRecord:
    """A fixed reference submission scored through the batch: how far the measurement drifted."""

    model: str
    sha256: str
    runs: list[ReferenceRun]
    drift_pct: float | None = field(metadata=doc("(largest - smallest) / median of the reference's totals, in %"))
    drift_limit_pct: float
    warning: str = ""


@dataclass
class ChildLimitsRecord:
    """The limits every scoring child of a batch ran under."""

    timeout_s: float
    cpu_seconds: int | None
    address_space_bytes: int | None


@dataclass
class BatchSummary:
    """``batch.json``: one score-dir run over a folder of submissions."""

    directory: str
    data: DataRecord
    config: ScoreConfig
    batch: BatchConfig
    limits: ChildLimitsRecord
    counts: dict[str, int]
    submissions: list[BatchItem]
    started_utc: str
    wall_s: float
    thermal: ThermalRecord | None = None
    reference: ReferenceRecord | None = None
    backend: str = "local"
    hosts: list[str] = field(default_factory=list, metadata=doc("the hosts that measured runs of this batch"))
    lost_runs: list[str] = field(default_factory=list, metadata=doc(
        "runs whose host died under them: each was run again on another host (or failed, said in its result)"))
    ignored: list[IgnoredEntry] = field(default_factory=list, metadata=doc(
        "entries of the submissions folder that are not submissions, each with its reason"))
    archived: list[str] = field(default_factory=list, metadata=doc(
        "what this batch moved into _archive/ (earlier results it replaced, the previous batch.json): never deleted"))
    kind: Literal["edl-batch"] = "edl-batch"
