"""The result document: every key edl writes about a scored (or failed) submission, in one place.

``Result`` is written by the scorer and score-dir, read by the leaderboard, verify and the CLI,
always through ``write_result`` / ``read_result``. Its JSON Schema is generated from these
classes (``edl schema``). A failed submission is the same type with ``status == "failed"``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evaluator.config import BatchConfig, ScoreConfig
from evaluator.fileio import atomic_write_json
from evaluator.typedjson import JsonObject, doc, json_schema, to_json

SCHEMA_VERSION = 2
RESULT_KIND = "edl-result"
RESULT_NAME = "result.json"
# One run's files in a result folder, by run index ("*" gives the pattern of them all).
RUN_RESULT_NAME, SAMPLES_NAME, TIMELINE_NAME = "run-{}.json", "samples-{}.csv", "timeline-{}.png"
BATCH_NAME = "batch.json"  # score-dir's summary, beside the result folders
SCHEMA_ID = "https://edl.invalid/schema/result-2.json"
Status = Literal["scored", "failed"]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
class DataRecord:
    """The test set the submission saw."""

    fingerprint: str = field(metadata=doc("SHA-256 of the canonical uint8 NHWC images and labels"))
    images: int
    official: bool = field(metadata=doc("verified against the official archive's md5s"))
    source: str


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
class RunEnergy:
    """Joules of one run's measured window (CPU package + GPU), with breakdowns and quality checks."""

    total_j: float | None = field(metadata=doc("CPU package + GPU joules over the measured passes"))
    total_domains: list[str] = field(default_factory=list)
    missing_domains: dict[str, str] = field(default_factory=dict)
    gpu_j: float | None = None
    cpu_j: float | None = None
    dram_j: float | None = field(default=None, metadata=doc("reported apart, never in the total"))
    per_pass_j: float | None = None
    per_image_j: float | None = None
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
    reason: str = field(default="", metadata=doc("why total_j is null, when it is"))


@dataclass
class GpuState:
    index: int | None = field(default=None, metadata=doc("NVML's index of the board (NVML numbers by PCI bus id)"))
    name: str | None = None
    uuid: str | None = field(default=None, metadata=doc("the board's UUID, as nvidia-smi -L shows it"))
    serial: str | None = field(default=None, metadata=doc("the board's serial number, where NVML gives one"))
    pci_bus_id: str | None = None
    mig_uuid: str | None = field(default=None, metadata=doc(
        "the MIG instance the model ran on, where it was one; the rest (and the energy) is the whole board's"))
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
    gpu_unavailable: str | None
    cooldown: Cooldown
    service_cpu_s: float | None = field(default=None, metadata=doc(
        "edl serve: CPU seconds the web server used while this run was scored (an upper bound of its share of the "
        "measured window); null: not scored by edl serve"))


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
class HostRecord:
    hostname: str
    os: str
    cpu: str
    cpu_count: int | None
    gpu: str | None = field(default=None, metadata=doc("the GPU's model name, from NVML"))
    gpu_uuid: str | None = field(default=None, metadata=doc("the metered board's UUID, as nvidia-smi -L shows it"))
    gpu_serial: str | None = field(default=None, metadata=doc("the metered board's serial number, where NVML "
                                                              "gives one"))
    gpu_pci_bus_id: str | None = field(default=None, metadata=doc("the metered board's PCI bus id"))
    gpu_mig_uuid: str | None = field(default=None, metadata=doc(
        "the MIG instance the model ran on, where it was one; the energy is the whole board's"))


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
    passes: int
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
class Energy:
    """The submission's energy over its runs: what the leaderboard ranks. Figures are medians over runs."""

    total_j: float | None = field(metadata=doc("CPU package + GPU joules over the measured passes (median of runs)"))
    total_domains: list[str]
    missing_domains: dict[str, str] = field(metadata=doc("each domain not in the total, and why"))
    gpu_j: float | None
    cpu_j: float | None
    dram_j: float | None = field(metadata=doc("reported apart, never in the total"))
    per_pass_j: float | None
    per_image_j: float | None
    repeats_j: list[float | None] = field(metadata=doc("each run's total_j, in run order"))
    total_j_interval: list[float] | None = field(default=None, metadata=doc(
        "[low, high]: a 95 % interval for total_j from the repeat spread and the counter-step bound"))
    interval_method: str = ""
    reason: str = field(default="", metadata=doc("why total_j is null, when it is"))


@dataclass
class PrivateCheck:
    """The submission on the organiser's held-back images, beside its test-set accuracy."""

    fingerprint: str
    images: int
    correct: int
    accuracy: float
    gap_points: float = field(metadata=doc("test-set accuracy minus private accuracy, in percentage points"))
    tolerance_points: float = field(metadata=doc("the largest gap that still passes: test-set minus expected "
                                                 "accuracy plus allowed_shortfall_points (older results: a "
                                                 "fixed number of points)"))
    expected_accuracy: float | None = field(default=None, metadata=doc(
        "what an honest model of this test-set accuracy is expected to score on images drawn anew (the fit); "
        "null in results made before the fit"))
    fit: str = field(default="", metadata=doc("the fit that gives the expected accuracy"))
    shortfall_points: float | None = field(default=None, metadata=doc(
        "expected minus private accuracy, in percentage points: the check fails above allowed_shortfall_points"))
    allowed_shortfall_points: float | None = field(default=None, metadata=doc(
        "tolerance_sd times combined_sd_points, or the organiser's override in points"))
    tolerance_sd: float | None = field(default=None, metadata=doc(
        "standard deviations allowed (null when the organiser gave the tolerance in points)"))
    combined_sd_points: float | None = field(default=None, metadata=doc(
        "the combined standard deviation: the root sum of squares of the three parts below"))
    fit_sd_points: float | None = field(default=None, metadata=doc(
        "the fit's spread (residuals and the line's own uncertainty) at the expected accuracy"))
    test_sd_points: float | None = field(default=None, metadata=doc(
        "binomial error of the test-set accuracy on test_images images, through the fit's slope"))
    private_sd_points: float | None = field(default=None, metadata=doc(
        "binomial error of the private accuracy on images images, at the expected accuracy"))
    test_images: int | None = field(default=None, metadata=doc("images the test-set accuracy was taken over"))


@dataclass
class TrainingProbe:
    """The submission on a secret sample of the official training images, beside its test-set accuracy.

    An honest model scores at least about its test accuracy there (more where it trained on them);
    a memoriser of the test set scores near chance."""

    fingerprint: str = field(metadata=doc("of the training images the sample was drawn from"))
    available: int = field(metadata=doc("training images given"))
    images: int = field(metadata=doc("training images in the secret sample"))
    correct: int
    accuracy: float
    gap_points: float = field(metadata=doc("test-set accuracy minus probe accuracy, in percentage points"))
    tolerance_points: float


@dataclass
class BatchIndependence:
    """The same images in two secret batch compositions: an honest model's predictions do not depend on their
    batchmates."""

    images: int
    changed: int = field(metadata=doc("images whose prediction differs between the two compositions"))
    changed_pct: float
    tolerance_pct: float
    batch_sizes: list[int] = field(metadata=doc("the batch size of each composition (two where the graph's batch "
                                                "is free)"))
    second_session: bool = field(default=False, metadata=doc("the second composition ran on a plain session "
                                                             "without CUDA graphs"))


CheckVerdict = Literal["pass", "fail", "not_run"]


@dataclass
class AuditCheck:
    """One named piece of evidence that the model generalises: its figure against its threshold."""

    name: str
    figure: float | None = field(metadata=doc("what was measured (None: not run)"))
    threshold: float | None = field(metadata=doc("the largest figure that passes"))
    verdict: CheckVerdict
    evidence: str = field(metadata=doc("one line: what was measured, or why it did not run"))


@dataclass
class Audit:
    """The generalization audit: accuracy on secret flipped and shifted copies of the test set, every named check,
    and the verdict (suspect when any check fails)."""

    verdict: Literal["pass", "suspect"]
    reason: str = field(metadata=doc("one line: why suspect (empty on pass)"))
    family: str = field(metadata=doc("the transforms, in words"))
    copies: int
    shift_px: int
    seed_commitment: str = field(metadata=doc("sha256 of the audit secret (never the secret itself)"))
    organiser_secret: bool = field(metadata=doc("drawn from the organiser's secret (re-checkable by edl verify) "
                                                "rather than a one-off random one"))
    correct: list[int] = field(metadata=doc("correct answers on each copy"))
    accuracy: float = field(metadata=doc("mean accuracy over the copies"))
    drop_points: float = field(metadata=doc("test-set accuracy minus audit accuracy, in percentage points"))
    tolerance_points: float
    private: PrivateCheck | None = None
    provider: str = field(default="", metadata=doc("where the audit ran: the scoring's provider"))
    seconds: float | None = field(default=None, metadata=doc("wall time the audit added to the scoring"))
    checks: list[AuditCheck] = field(default_factory=list, metadata=doc(
        "every named check (copies, batch independence, training probe, private images); the verdict is suspect "
        "when any fails. Empty in results written before checks were named"))
    secret_order: bool = field(default=False, metadata=doc("every audit set reached the model in an order drawn "
                                                           "from the secret"))
    batch: BatchIndependence | None = None
    training: TrainingProbe | None = None


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


REVIEW_FOLDER = "review"  # beside result.json: the organiser's decisions on it, one file each, never overwritten
REVIEW_NAME = "decision-{}.json"  # by the decision's UTC time stamp
REVIEW_KIND = "edl-review"


@dataclass
class ReviewDecision:
    """The organiser's decision on one result: signed, and bound to that result's sealed sha256."""

    decision: Literal["clear", "disqualify"] = field(metadata=doc(
        "clear: ranked despite the audit, with the note; disqualify: listed apart with the reason"))
    why: str = field(metadata=doc("the organiser's reason, shown on every board"))
    bound_to_sha256: str = field(metadata=doc("the reviewed result's integrity.sha256: the decision counts for "
                                              "that document only"))
    submission: str = field(metadata=doc("the reviewed result's model.name, for a reader"))
    decided_utc: str
    signer_key: str = field(metadata=doc("the signer's raw Ed25519 public key, base64"))
    signature: Signature | None = None
    kind: Literal["edl-review"] = "edl-review"
    version: int = 1


@dataclass
class Result:
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
    passes: int | None = None
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
    def total_j(self) -> float | None:
        return self.energy.total_j if self.energy is not None else None

    @property
    def suspect(self) -> bool:
        return self.audit is not None and self.audit.verdict == "suspect"

    @property
    def gpu_model(self) -> str | None:
        return self.runs[0].host.gpu if self.runs else self.host.gpu

    @property
    def why(self) -> str:
        """Why a failed result failed, or why a scored one has no energy; empty otherwise."""
        if self.reason:
            return self.reason
        return self.energy.reason if self.energy is not None else ""


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


def write_document(path: Path, document: object) -> None:
    """Write a dataclass document atomically (temp file, fsync, rename): readers see the old or the new."""
    atomic_write_json(path, to_json(document))


def write_result(path: Path, result: Result) -> None:
    write_document(path, result)
