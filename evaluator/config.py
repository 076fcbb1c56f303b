"""Every scoring option, once: name (unit in the name), type, default, help, validation, comparability.

The dataclasses here are the only place an option is written down. The command line builds its
options from them (``evaluator.cli.options``), a score-dir child receives them as JSON, results
record them, and resume and the leaderboard decide "measured alike" from the same ``comparable``
flags. Nothing here imports the rest of the evaluator beyond the error types and the JSON codec.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from evaluator.errors import ConfigError
from evaluator.typedjson import DOC, JsonValue, to_json

OPTION = "option"  # field metadata key of an OptionSpec
PROVIDERS = ("auto", "cuda", "tensorrt", "cpu")
CUDNN_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
DEFAULT_THRESHOLDS = (0.90, 0.95, 0.99)
SCORE = "score"
SCORE_DIR = "score-dir"
METER = "meter"
ENV = "env"  # edl env: probes the --gpu that score would run on
C = TypeVar("C")


@dataclass(frozen=True)
class OptionSpec:
    """How one option is offered, checked and compared."""

    help: str
    flag: str = ""  # "" means --name-with-dashes
    minimum: float | None = None  # the value must be >= minimum
    maximum: float | None = None  # the value must be <= maximum
    above: float | None = None  # the value must be > above
    choices: tuple[str, ...] = ()
    comparable: bool = True  # runs that differ here are not comparable: not resumed over, not ranked together
    commands: tuple[str, ...] = (SCORE, SCORE_DIR)
    command_defaults: tuple[tuple[str, Any], ...] = ()  # (command, default) where a command's default differs
    envvar: str = ""
    parse: Callable[[str], Any] | None = None  # the command line gives a string; this makes the value
    show: Callable[[Any], str] | None = None  # the value as the command line writes it


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field that is an option (``passes: int = option(200, "Measured passes")``)."""
    return field(default=default, metadata={OPTION: OptionSpec(help=help, **spec), DOC: help})


def group(cls: type) -> Any:
    """A dataclass field that holds a group of options."""
    return field(default_factory=cls, metadata={DOC: (cls.__doc__ or "").strip()})


def _check(value: Any, name: str, spec: OptionSpec) -> None:
    flag = spec.flag or "--" + name.replace("_", "-")
    if value is None:
        return
    if spec.choices and value not in spec.choices:
        listing = ", ".join(spec.choices[:-1]) + f" or {spec.choices[-1]}"
        raise ConfigError(f"{flag} {value!r}: choose {listing}")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f"{flag} {value}: must be {spec.minimum:g} or more")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f"{flag} {value}: must be {spec.maximum:g} or less")
    if spec.above is not None and value <= spec.above:
        raise ConfigError(f"{flag} {value}: must be more than {spec.above:g}")


class Options:
    """Base of the option groups: values are checked when a group is made, however it is made."""

    def __post_init__(self) -> None:
        for spec_field in dataclasses.fields(self):  # type: ignore[arg-type]
            if (spec := spec_field.metadata.get(OPTION)) is not None:
                _check(getattr(self, spec_field.name), spec_field.name, spec)


# --- the options ---------------------------------------------------------------------------------------


def parse_thresholds(text: str) -> tuple[float, ...]:
    """``"90,95,99"`` (percent) to fractions, ascending."""
    try:
        values = tuple(sorted(float(part) / 100 for part in text.split(",") if part.strip()))
    except ValueError:
        raise ConfigError(f"--thresholds {text!r}: give percentages separated by commas, e.g. 90,95,99") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise ConfigError(f"--thresholds {text!r}: each must be a percentage in (0, 100]")
    if all(v <= 0.01 for v in values):  # 0.9,0.95 would be 0.9 % and 0.95 %: fractions meant as percentages
        raise ConfigError(f"--thresholds {text!r}: percentages are expected, e.g. 90,95 (not fractions)")
    return values


def show_thresholds(values: tuple[float, ...]) -> str:
    return ",".join(f"{v * 100:g}" for v in values)


@dataclass(frozen=True)
class RuntimeConfig(Options):
    """How onnxruntime runs every submission: pinned, identical for all, recorded with each result."""

    provider: str = option("auto", "Execution provider; auto: CUDA when it can run, else the CPU, said why",
                           choices=PROVIDERS)
    gpu: int = option(0, "CUDA device id to run on and meter", minimum=0, comparable=False,
                      commands=(SCORE, SCORE_DIR, ENV))
    batch_size: int | None = option(None, "Batch size, unless the graph or its edl.batch_size metadata fixes one "
                                    "[default: 250]", minimum=1)
    prefer_nhwc: bool = option(True, "CUDA: prefer channels-last (NHWC) kernels")
    cuda_graph: bool = option(True, "CUDA: capture one CUDA graph per resident batch (refused: run without)")
    overlap_batches: bool = option(True, "CUDA: queue a pass's batches, one synchronisation per pass")
    cudnn_search: str = option("EXHAUSTIVE", "CUDA: cuDNN convolution algorithm search", choices=CUDNN_SEARCHES)
    tf32: bool = option(True, "Allow TF32 math (--no-tf32 sets NVIDIA_TF32_OVERRIDE=0)")


@dataclass(frozen=True)
class MeterConfig(Options):
    """How energy is measured around the passes."""

    enabled: bool = option(True, "Measure energy (--no-meter: accuracy and speed only)", flag="--meter")
    sample_period_ms: float = option(10.0, "Sampling period of the power sampler (ms)", flag="--sample-ms", above=0,
                                     commands=(SCORE, SCORE_DIR, METER))
    idle_s: float = option(10.0, "Idle baseline before the warm-up (s)", flag="--idle-seconds", minimum=0)
    cooldown_s: float = option(60.0, "Longest wait for the GPU temperature to settle (s)", flag="--cooldown",
                               minimum=0)
    target_temp_c: float | None = option(None, "GPU temperature to cool to (C) [default: until it settles]",
                                         flag="--target-temp")
    temp_band_c: float = option(2.0, "Cool-down band: within this of the target, or this steady over 10 s (C)",
                                flag="--temp-band", above=0)
    exclusive: bool = option(False, "Refuse to measure while other processes use the GPU", comparable=False)
    plot: bool = option(True, "Write the power timeline PNG", comparable=False)

    @property
    def sample_period_s(self) -> float:
        return self.sample_period_ms / 1000.0


@dataclass(frozen=True)
class Limits(Options):
    """What an untrusted submission may be; each limit can be raised on the command line."""

    max_file_bytes: int = option(2 << 30, "Largest accepted .onnx file (bytes)", minimum=1, comparable=False,
                                 commands=(SCORE, SCORE_DIR, "check"))
    max_initializer_bytes: int = option(2 << 30, "Most bytes of weights accepted", minimum=0, comparable=False,
                                        commands=(SCORE, SCORE_DIR, "check"))
    max_nodes: int = option(100_000, "Most graph nodes accepted", minimum=1, comparable=False,
                            commands=(SCORE, SCORE_DIR, "check"))


@dataclass(frozen=True)
class AuditConfig(Options):
    """The generalization audit: the submission also classifies copies of the test set it cannot have memorised.

    Defaults chosen from measurements (bench/audit_strength.py, README "Generalization audit"): real
    models lose at most ~1 point on flipped and 2-pixel-shifted copies, a lookup of the test set ~87.
    """

    audit_copies: int = option(2, "Audit copies of the test set (flips, shifts), run outside the measured "
                               "window; 0 switches the audit off and the result is not ranked", minimum=0)
    # 4 px already costs honest models as much as the tolerance (README "Generalization audit"): no further.
    audit_shift_px: int = option(2, "Largest translation of an audit copy (pixels, reflect padding)", minimum=1,
                                 maximum=4, flag="--audit-shift")
    audit_tolerance_points: float = option(3.0, "Largest accuracy drop on the audit copies that still passes "
                                           "(percentage points)", minimum=0, flag="--audit-tolerance")
    private_data: Path | None = option(None, "Images no team has seen, labelled (any --data form, CIFAR-10.1's "
                                       "_data.npy/_labels.npy pair, or cifar10.1: the copy `edl data fetch "
                                       "--cifar10.1` cached), scored beside the test set, outside the measured "
                                       "window", comparable=False)
    private_tolerance_sd: float = option(3.0, "Allowed shortfall below the accuracy expected on the private images, "
                                         "in standard deviations of the combined error (the fit's spread, the "
                                         "binomial errors of both sets' sizes)", above=0, flag="--private-sd")
    private_tolerance_points: float | None = option(None, "Override: the allowed shortfall below the expected "
                                                    "private accuracy, in percentage points [default: --private-sd "
                                                    "standard deviations]", minimum=0, flag="--private-tolerance")
    train_data: Path | None = option(None, "The official training images for the training-image probe: a CIFAR-10 "
                                     "archive or folder, or an .npz [default: the training part of --data or of the "
                                     "cache]", comparable=False)
    train_probe_images: int = option(2000, "Training images in the secret sample the probe classifies; 0 skips the "
                                     "probe", minimum=0)
    train_tolerance_points: float = option(5.0, "Largest amount by which the training-image probe may fall below "
                                           "the test-set accuracy (percentage points)", minimum=0,
                                           flag="--train-tolerance")
    batch_tolerance_pct: float = option(0.5, "Largest share of images whose prediction may change with their "
                                        "batchmates or batch size (percent)", minimum=0, flag="--batch-tolerance")

    @property
    def off(self) -> bool:
        """--audit-copies 0 switches the whole audit off (the result is then not ranked): the one test of it."""
        return self.audit_copies == 0


@dataclass(frozen=True)
class ScoreConfig(Options):
    """Everything that decides how a submission is scored; all of it is recorded in its result."""

    data: Path | None = option(None, "Test set: cifar-10-python.tar.gz, cifar-10-batches-py/, the binary version, "
                               "or .npz [default: the cached official set]", comparable=False)
    passes: int = option(200, "Measured passes over the whole test set", minimum=1)
    repeat: int = option(1, "Measured runs of the same passes: the result reports their median and a 95 % interval",
                         minimum=1, comparable=False, command_defaults=((SCORE_DIR, 3),))
    warmup_passes: int = option(1, "Warm-up passes (at least), outside the measured window", flag="--warmup",
                                minimum=0)
    warmup_s: float = option(0.25, "Warm-up time (at least): passes continue until both minimums are met (s)",
                             flag="--warmup-seconds", minimum=0)
    tune: bool = option(False, "Search the allowed runtime settings first; measure the winner in full")
    tune_window_s: float = option(2.0, "Window per --tune candidate and round (s)", flag="--tune-seconds", above=0)
    tune_rounds: int = option(2, "Rounds of --tune measurements, candidates interleaved", minimum=1)
    runtime: RuntimeConfig = group(RuntimeConfig)
    meter: MeterConfig = group(MeterConfig)
    audit: AuditConfig = group(AuditConfig)
    limits: Limits = group(Limits)


@dataclass(frozen=True)
class Secrets(Options):
    """What the organiser keeps to itself: used by a scoring, never recorded in a result or printed."""

    audit_secret: str | None = option(None, "Secret that draws the audit copies; only its hash is recorded "
                                      "(scoring: a random one per run when unset; verify: the one "
                                      "the result was scored with)", envvar="EDL_AUDIT_SECRET",
                                      comparable=False, commands=(SCORE, SCORE_DIR, "verify"))
    signing_key: Path | None = option(None, "The organiser's private key (edl keys init): results are signed "
                                      "with it [default: unsigned]", envvar="EDL_SIGNING_KEY", comparable=False,
                                      commands=(SCORE, SCORE_DIR, "review"))


@dataclass(frozen=True)
class BatchConfig(Options):
    """How score-dir runs its children: recorded in batch.json, not in each result."""

    timeout_s: float = option(3600.0, "Seconds one submission may take before its process is killed",
                              flag="--timeout", above=0, commands=(SCORE_DIR,))
    force: bool = option(False, "Move every earlier result in --out to --out/_archive/<utc>/ (nothing is deleted) "
                         "and score everything again", commands=(SCORE_DIR,))
    max_memory_gb: float = option(16.0, "Address-space limit of each CPU scoring child (GiB)", above=0,
                                  commands=(SCORE_DIR,))
    reference: Path | None = option(None, "A reference submission scored before the first submission, every "
                                    "--reference-every submissions and after the last: its drift is recorded",
                                    commands=(SCORE_DIR,))
    reference_every: int = option(10, "Scorings (runs) between two reference runs", minimum=1, commands=(SCORE_DIR,))
    backend: str = option("local", "Where the children run: local (this host, one after another) or ray (the hosts "
                          "of a Ray cluster, one scoring per host)", choices=("local", "ray"), commands=(SCORE_DIR,))
    ray_address: str | None = option(None, "Ray cluster to join [default: start a local Ray instance for the batch]",
                                     commands=(SCORE_DIR,))
    every_gpu_kind: bool = option(False, "Score each submission once on each GPU kind the cluster's hosts offer",
                                  commands=(SCORE_DIR,))
    rematch: tuple[str, ...] = option((), "Submissions (names, comma-separated) to give --repeat more runs each, "
                                      "interleaved: how a tie is broken", commands=(SCORE_DIR,),
                                      parse=lambda text: tuple(n.strip() for n in text.split(",") if n.strip()),
                                      show=lambda names: ",".join(names))


@dataclass(frozen=True)
class MeterRunConfig(Options):
    """What ``edl meter`` measures: a command, or the idle machine, on one GPU, into one folder."""

    seconds: float | None = option(None, "Meter the machine doing nothing for N seconds", comparable=False,
                                   commands=(METER,))
    gpu: int = option(0, "CUDA device id whose board is metered (as score --gpu)", minimum=0, comparable=False,
                      commands=(METER,))
    meter: MeterConfig = group(MeterConfig)  # its --sample-ms
    out_dir: Path = option(Path("results/meter"), "Where samples and the report go", flag="--out", comparable=False,
                           commands=(METER,))


# --- walking the options ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionField:
    """One option found in a (possibly nested) options dataclass."""

    path: tuple[str, ...]  # ("meter", "sample_period_ms")
    name: str  # the last part: also the CLI parameter's name, unique across the family
    hint: Any  # the field's type
    default: Any
    spec: OptionSpec

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    def default_for(self, command: str) -> Any:
        return dict(self.spec.command_defaults).get(command, self.default)


def option_fields(cls: type, command: str | None = None, prefix: tuple[str, ...] = ()) -> Iterator[OptionField]:
    """Every option of ``cls`` (depth first, in declaration order), or only those ``command`` offers."""
    from typing import get_type_hints

    hints = get_type_hints(cls)
    for spec_field in dataclasses.fields(cls):
        hint = hints[spec_field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from option_fields(hint, command, (*prefix, spec_field.name))
            continue
        spec = spec_field.metadata.get(OPTION)
        if spec is None or (command is not None and command not in spec.commands):
            continue
        yield OptionField((*prefix, spec_field.name), spec_field.name, hint, spec_field.default, spec)


def build(cls: type[C], values: dict[str, Any], command: str | None = None) -> C:
    """``cls`` from flat option values keyed by name; options not given take the command's default."""

    def make(current: type, prefix: tuple[str, ...]) -> Any:
        kwargs = {}
        for spec_field in dataclasses.fields(current):
            path = (*prefix, spec_field.name)
            if isinstance(spec_field.default_factory, type) and dataclasses.is_dataclass(spec_field.default_factory):
                kwargs[spec_field.name] = make(spec_field.default_factory, path)
            elif spec_field.name in values:
                kwargs[spec_field.name] = values[spec_field.name]
            elif (spec := spec_field.metadata.get(OPTION)) is not None and command is not None:
                kwargs[spec_field.name] = dict(spec.command_defaults).get(command, spec_field.default)
        return current(**kwargs)

    return typing.cast(C, make(cls, ()))


def comparable_settings(config: Options) -> dict[str, JsonValue]:
    """The options that can change a measurement, flat by dotted path: equal here, comparable results."""
    document = to_json(config)
    settings: dict[str, JsonValue] = {}
    for found in option_fields(type(config)):
        if found.spec.comparable:
            value: JsonValue = document
            for part in found.path:
                value = value[part]  # type: ignore[index,call-overload]
            settings[".".join(found.path)] = value
    return settings
