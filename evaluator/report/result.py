"""The result document: every key edl writes about a scored (or failed) submission.

The records it shares with edl's other documents (the test set, windows, files, the energy totals,
the seal and signature) are ``records``'s; its audit section's are ``audit_record``'s. The batch
summary, the meter report and a review decision are documents of their own, one module each.

``Result`` is written by the scorer and score-dir, read by the leaderboard, verify and the CLI,
always through ``write_result`` / ``read_result``. Its JSON Schema is generated from these
classes (``edl schema``). A failed submission is the same type with ``status == "failed"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evaluator.config import ScoreConfig
from evaluator.power.gpu import GpuIdentity
from evaluator.report.audit_record import Audit
from evaluator.report.records import (
    DataRecord,
    EnergyTotals,
    FileRecord,
    Integrity,
    RunEnergy,
    Signature,
    WindowRecord,
    write_document,
)
from evaluator.typedjson import JsonObject, doc, json_schema, to_json

SCHEMA_VERSION = 3  # 3: passes only in config, one GpuIdentity record per named GPU; 2: edl 0.2; 1: edl 0.1
RESULT_KIND = "edl-result"
RESULT_NAME = "result.json"
# One run's files in a result folder, by run index ("*" gives the pattern of them all).
RUN_RESULT_NAME, SAMPLES_NAME, TIMELINE_NAME = "run-{}.json", "samples-{}.csv", "timeline-{}.png"
SCHEMA_ID = f"https://edl.invalid/schema/result-{SCHEMA_VERSION}.json"
Status = Literal["scored", "failed"]


@dataclass
class GraphFinding:
    """Static evidence in the graph that it stores answers (edl check's findings): for review, never a verdict."""

    kind: str = field(metadata=doc("lookup (table, nearest row, stored answer), labels (stored labels 0..9), batch "
                                   "(the batch axis combined before the output) or analysis (what could not be read)"))
    strength: str = field(metadata=doc("strong: a full path from input to output, an output computed across the "
                                       "batch, or stored labels matching the test labels; note: a weaker sign"))
    nodes: list[str] = field(default_factory=list)
    tensor: str = field(default="", metadata=doc("the stored table or labels, when there is one"))
    shape: list[int] = field(default_factory=list)
    size: int = 0
    explanation: str = ""
    label_match: float | None = field(default=None, metadata=doc(
        "fraction of the test labels that the stored labels repeat in order (null: not compared)"))


@dataclass
class ModelRecord:
    """The submission file that was scored."""

    name: str = field(metadata=doc("the submission's name: its file stem, or the folder holding it"))
    path: str = field(metadata=doc("where it was read, as given to edl"))
    sha256: str = ""
    bytes: int = 0
    parameters: int | None = None
    opsets: dict[str, int] = field(default_factory=dict)
    producer: str = ""
    evidence: list[GraphFinding] = field(default_factory=list, metadata=doc(
        "the graph inspection's findings (empty: none, or a result older than the inspection)"))


@dataclass
class ContractRecord:
    """How the evaluator fed the model and read its answer."""

    input_name: str
    input_dtype: str
    layout: str
    output_name: str
    output_kind: str
    fixed_batch: int | None
    metadata_batch: int | None


@dataclass
class ProviderRecord:
    """What onnxruntime actually ran, with every option it was given."""

    name: str = field(metadata=doc("the provider that ran: tensorrt, cuda or cpu"))
    requested: str
    selection: str = field(metadata=doc("why this provider, and any setting onnxruntime refused"))
    providers: list[str]
    gpu: int | None
    provider_options: dict[str, dict[str, str]]
    session_options: dict[str, str | int]
    placement: dict[str, int] = field(metadata=doc("nodes per provider"))
    nodes_off_provider: list[str]
    cuda_graph: bool = field(metadata=doc("CUDA graphs were captured and replayed"))
    overlap_batches: bool
    environment: dict[str, str | None]


@dataclass
class TuningCandidate:
    batch_size: int
    prefer_nhwc: bool
    cuda_graph: bool
    cudnn_search: str
    error: str | None = None
    cuda_graph_ran: bool | None = None
    passes: int | None = None
    seconds: float | None = None
    images_per_second: float | None = None
    joules_per_image: float | None = field(default=None, metadata=doc("the median over rounds"))
    seconds_per_image: float | None = None
    rounds: list[float] = field(default_factory=list, metadata=doc("the criterion in each round's window"))


@dataclass
class TuningDecision:
    setting: str
    chosen: str
    margin: float = field(metadata=doc("relative difference a challenger had to beat: the counter-step bound of a "
                                       "window, or the rounds' spread, whichever is larger"))
    changed: bool = field(metadata=doc("the setting left its default (or the previous winner)"))


@dataclass
class Tuning:
    """The --tune search: every candidate measured in interleaved rounds, each setting's decision, the winner."""

    criterion: str
    search: str
    window_s: float
    rounds: int
    order: list[str]
    candidates: list[TuningCandidate]
    decisions: list[TuningDecision]
    winner: TuningCandidate


@dataclass
class GpuState:
    """The metered GPU at one moment; ``error``, where it could not be read (the rest is then null)."""

    identity: GpuIdentity | None = field(default=None, metadata=doc("the board (null where it could not be read)"))
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    power_limit_w: float | None = None
    clock_event_reasons: int | None = None
    other_compute_pids: list[int] = field(default_factory=list)
    memory_used_mib: int | None = None
    error: str | None = None


@dataclass
class Cooldown:
    start_c: float | None = None
    end_c: float | None = None
    target_c: float | None = None
    band_c: float | None = None
    reached: bool = False
    waited_s: float = 0.0
    skipped: str = ""


@dataclass
class Fairness:
    """The GPU's state around the run: clocks, temperature, power limit, other processes."""

    gpu_start: GpuState | None
    gpu_end: GpuState | None
    gpu_unavailable: str | None = field(metadata=doc("why no GPU could be read here (NoGpu's reason), if so"))
    cooldown: Cooldown
    service_cpu_s: float | None = field(default=None, metadata=doc(
        "edl serve: CPU seconds the web server's process tree (the server, its check server and the checks it forks, "
        "any other descendant; not the scoring worker, the scoring child or its sampler) used in this run's metered "
        "windows (idle baseline to the end of the measured passes; with Ray the whole run); null: not scored by edl "
        "serve, or not readable"))


@dataclass
class HostRecord:
    hostname: str
    os: str
    cpu: str
    cpu_count: int | None
    gpu: GpuIdentity | None = field(default=None, metadata=doc("the metered board (null: no GPU could be read)"))


@dataclass
class Versions:
    evaluator: str
    python: str = ""
    onnxruntime: str = ""
    onnxruntime_distribution: str = ""
    onnx: str = ""
    numpy: str = ""
    nvidia_ml_py: str | None = None
    gpu_driver: str | None = None


@dataclass
class Run:
    """One measured repeat: cool-down, idle baseline, warm-up, then the measured passes."""

    index: int = field(metadata=doc("1, 2, ... in the order the runs were measured"))
    started_utc: str
    host: HostRecord
    batch_size: int
    warmup_passes: int = field(metadata=doc("warm-up passes run: at least --warmup, and at least --warmup-seconds"))
    warmup_s: float
    start_temp_c: float | None = field(metadata=doc("GPU temperature when the idle baseline began"))
    seconds: float = field(metadata=doc("the measured window"))
    images_per_second: float
    correct: int = field(metadata=doc("correct answers in the first measured pass"))
    prediction_mismatch_passes: list[int] = field(metadata=doc("passes that predicted differently from the first"))
    energy: RunEnergy
    fairness: Fairness
    windows: list[WindowRecord]
    samples: FileRecord | None = None
    timeline: FileRecord | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Energy(EnergyTotals):
    """The submission's energy over its runs: what the leaderboard ranks. Figures are medians over runs."""

    repeats_j: list[float | None] = field(default_factory=list, metadata=doc("each run's total_j, in run order"))
    total_j_interval: list[float] | None = field(default=None, metadata=doc(
        "[low, high]: a 95 % interval for total_j from the repeat spread and the counter-step bound"))
    interval_method: str = ""


@dataclass(frozen=True)
class UpgradedFrom:
    """Not part of the document: the older document a Result was read from (``report.legacy``).

    Its seal, signature and the review decisions bound to it cover that document's canonical bytes,
    not today's form of it; they hold as long as the Result is what the upgrade made of it."""

    schema_version: int
    canonical: bytes
    upgraded: JsonObject


class _Readable:
    """A plain base of Result (not a dataclass), so that its attribute is never a field of the document."""

    upgraded_from: UpgradedFrom | None = None


@dataclass
class Result(_Readable):
    """One submission's result: a summary of its runs (what a leaderboard reads), and every run in full."""

    status: Status
    created_utc: str
    model: ModelRecord
    data: DataRecord | None
    config: ScoreConfig = field(metadata=doc("every scoring option (see edl score --help)"))
    versions: Versions
    host: HostRecord
    contract: ContractRecord | None = None
    provider: ProviderRecord | None = None
    tuning: Tuning | None = None
    batch_size: int | None = None
    batch_size_rule: str = field(default="", metadata=doc("graph, metadata, option, default or --tune"))
    padded_images: int = 0
    warmup_passes: int | None = None
    correct: int | None = field(default=None, metadata=doc("correct answers in one pass (the first run's)"))
    accuracy: float | None = None
    category: float | None = field(default=None, metadata=doc("the highest accuracy threshold reached"))
    thresholds: list[float] = field(default_factory=list)
    prediction_mismatch_passes: list[int] = field(default_factory=list)
    seconds: float | None = field(default=None, metadata=doc("the measured window (median of runs)"))
    images_per_second: float | None = None
    energy: Energy | None = None
    audit: Audit | None = field(default=None, metadata=doc("null: the audit was switched off (--audit-copies 0)"))
    runs: list[Run] = field(default_factory=list)
    reason: str = field(default="", metadata=doc("a failed result: what went wrong, in one line"))
    elapsed_s: float | None = None
    timeout_s: float | None = field(default=None, metadata=doc("a time-out: the --timeout it ran under"))
    warnings: list[str] = field(default_factory=list)
    integrity: Integrity | None = None
    signature: Signature | None = field(default=None, metadata=doc("null: unsigned (no --signing-key)"))
    kind: Literal["edl-result"] = "edl-result"
    schema_version: int = SCHEMA_VERSION

    @property
    def scored(self) -> bool:
        return self.status == "scored"

    @property
    def passes(self) -> int:
        """Measured passes of every run: the setting, stored once (config.passes)."""
        return self.config.passes

    @property
    def written_schema(self) -> int:
        """The schema the document was written in (an older one, where it was upgraded on reading)."""
        return self.upgraded_from.schema_version if self.upgraded_from is not None else self.schema_version

    @property
    def total_j(self) -> float | None:
        return self.energy.total_j if self.energy is not None else None

    @property
    def suspect(self) -> bool:
        return self.audit is not None and self.audit.verdict == "suspect"

    @property
    def gpu_model(self) -> str | None:
        gpu = self.runs[0].host.gpu if self.runs else self.host.gpu
        return gpu.name if gpu is not None else None

    @property
    def why(self) -> str:
        """Why a failed result failed, or why a scored one has no energy; empty otherwise."""
        if self.reason:
            return self.reason
        return self.energy.reason if self.energy is not None else ""


def identify(document: object) -> tuple[object, object]:
    """What a JSON document says it is, before it is read as a Result: its kind and schema version."""
    if not isinstance(document, dict):
        return None, None
    return document.get("kind"), document.get("schema_version")


def result_schema() -> JsonObject:
    """The JSON Schema of the result document (``edl schema``)."""
    return json_schema(Result, "edl result document", SCHEMA_ID)


def result_json(result: Result) -> JsonObject:
    document = to_json(result)
    assert isinstance(document, dict)
    return document


def write_result(path: Path, result: Result) -> None:
    write_document(path, result)
