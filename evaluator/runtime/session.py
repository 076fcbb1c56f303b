"""onnxruntime sessions with pinned settings on the provider that was asked for, and what actually runs.

The same settings are used for every submission and recorded with every result. A session that
does not run on the provider that was asked for is an error, never a silent fallback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from evaluator.config import RuntimeConfig
from evaluator.errors import EdlError, ProviderError, SubmissionError, onnxruntime_message
from evaluator.runtime.providers import CPU_EP, CUDA_EP, EXECUTION_PROVIDERS, TRT_EP, ort, resolve_provider

TRT_CACHE_NAME = "trt-cache"  # TensorRT's engine and timing caches, in the result folder
GRAPH_OPTIMIZATION_LEVEL = "ORT_ENABLE_ALL"
INTRA_OP_THREADS = 0  # onnxruntime's default: one per physical core
BASE_CUDA_OPTIONS = {
    "do_copy_in_default_stream": "1",
    "arena_extend_strategy": "kNextPowerOfTwo",
    "gpu_mem_limit": str(32 << 30),  # a submission cannot take the whole card
}
_PLACEMENT_RE = re.compile(r"(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_NODE_LINE_RE = re.compile(r"^\s{2}(\S+) \((.*)\)\s*$")


def cuda_options(config: RuntimeConfig) -> dict[str, str]:
    return {
        "device_id": str(config.gpu),
        **BASE_CUDA_OPTIONS,
        "cudnn_conv_algo_search": config.cudnn_search,
        "prefer_nhwc": "1" if config.prefer_nhwc else "0",
        "enable_cuda_graph": "1" if config.cuda_graph else "0",
    }


def tensorrt_options(config: RuntimeConfig, cache_dir: str = "") -> dict[str, str]:
    options = {"device_id": str(config.gpu), "trt_timing_cache_enable": "1"}
    if cache_dir:
        options |= {"trt_engine_cache_enable": "1", "trt_engine_cache_path": cache_dir,
                    "trt_timing_cache_path": cache_dir}
    return options


@dataclass(frozen=True)
class SessionInfo:
    """What actually runs: recorded in the result. Made once, by the attempt that ran (``open_session``)."""

    provider: str  # tensorrt | cuda | cpu
    providers: list[str]
    provider_options: dict[str, dict[str, str]]
    session_options: dict[str, str | int]
    placement: dict[str, int]  # provider -> node count
    nodes_off_provider: list[str]  # "OpType (name)" for nodes not on the requested provider
    selection: str  # why this provider
    cuda_graph: bool = False  # graphs are captured (one per batch)
    overlap_batches: bool = False  # a pass's batches are queued without a wait between them
    environment: dict[str, str | None] = field(default_factory=dict)
    attempt: str = ""  # the SessionAttempt that runs
    failed: tuple[FailedAttempt, ...] = ()  # the attempts before it, each with why it failed

    @property
    def on_gpu(self) -> bool:
        return self.provider != "cpu"


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to fd 2 (onnxruntime's logger) into a list of lines."""
    lines: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def parse_placement(lines: list[str]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Node counts per provider, and the nodes listed per provider, from onnxruntime's verbose log."""
    counts: dict[str, int] = {}
    nodes: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if match := _PLACEMENT_RE.search(line):
            counts[match.group(1)] = int(match.group(2))
            current = nodes.setdefault(match.group(1), []) if "Node(s)" in line else None
        elif current is not None and (node := _NODE_LINE_RE.match(line)):
            current.append(f"{node.group(1)} ({node.group(2)})")
        else:
            current = None
    return counts, nodes


def _providers(provider: str, config: RuntimeConfig, trt_cache_dir: str) -> dict[str, dict[str, str]]:
    """onnxruntime's provider list, in priority order, with each provider's options."""
    if provider == "tensorrt":
        return {TRT_EP: tensorrt_options(config, trt_cache_dir), CUDA_EP: cuda_options(config), CPU_EP: {}}
    if provider == "cuda":
        return {CUDA_EP: cuda_options(config), CPU_EP: {}}
    return {CPU_EP: {}}


def _open(model_path: Path, providers: dict[str, dict[str, str]]) -> tuple[Any, list[str]]:
    """The session and onnxruntime's verbose creation log (which names each node's provider)."""
    runtime = ort()
    options = runtime.SessionOptions()
    options.graph_optimization_level = getattr(runtime.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVEL)
    options.intra_op_num_threads = INTRA_OP_THREADS
    options.log_severity_level = 0  # verbose while creating: onnxruntime logs the node placement
    with _captured_stderr() as log_lines:
        session = runtime.InferenceSession(str(model_path), options, providers=list(providers.items()))
    return session, log_lines


REFUSED = "refused"  # onnxruntime would not create the session (with CUDA graphs: answered without them)
CAPTURE_FAILED = "capture failed"  # the session opened, but a batch's CUDA graph could not be captured
NO_DEVICE = "no device"  # the session opened, but not on the provider asked for
AFTERWORD = {REFUSED: "CUDA graphs refused by onnxruntime ({})",
             CAPTURE_FAILED: "CUDA graph capture failed ({}), run without graphs"}  # said in the record's selection
T = TypeVar("T")


@dataclass(frozen=True)
class SessionAttempt:
    """One way to open the scoring session. They are tried in order; a later one is tried only after a failure it
    answers, so that nothing ever runs on other settings than asked without the record saying why."""

    name: str
    provider: str  # tensorrt | cuda | cpu
    config: RuntimeConfig
    selection: str  # why this provider, as the record says it when this attempt runs
    answers: frozenset[str] = frozenset()  # the failures of an earlier attempt this one is tried after


@dataclass(frozen=True)
class FailedAttempt:
    """An attempt that did not run, and why: kept in the record of the one that did."""

    attempt: str
    failure: str  # REFUSED | CAPTURE_FAILED | NO_DEVICE
    reason: str


class GraphCaptureError(SubmissionError):
    """A CUDA graph could not be captured on a session that opened with graphs (raised by a ``prime``)."""


def session_attempts(config: RuntimeConfig) -> tuple[SessionAttempt, ...]:
    """The attempts for ``config``, in order: the provider asked for (or auto's choice) with its settings; on CUDA
    with graphs, the same without them; with auto on CUDA, the CPU where no device could be used."""
    provider, selection = resolve_provider(config.provider)
    graphs = provider == "cuda" and config.cuda_graph
    attempts = [SessionAttempt(provider + (" with CUDA graphs" if graphs else ""), provider, config, selection)]
    if graphs:
        attempts.append(SessionAttempt("cuda without CUDA graphs", "cuda",
                                       dataclasses.replace(config, cuda_graph=False), selection,
                                       frozenset({REFUSED, CAPTURE_FAILED})))
    if provider == "cuda" and config.provider == "auto":
        attempts.append(SessionAttempt("cpu", "cpu", dataclasses.replace(config, provider="cpu"),
                                       "auto: the CUDA provider could not be created on a device",
                                       frozenset({NO_DEVICE})))
    return tuple(attempts)


def _info(attempt: SessionAttempt, active: list[str], providers: dict[str, dict[str, str]], log_lines: list[str],
          failed: tuple[FailedAttempt, ...]) -> SessionInfo:
    counts, listed = parse_placement(log_lines)
    wanted, config = EXECUTION_PROVIDERS[attempt.provider], attempt.config
    said = "".join(f"; {AFTERWORD[f.failure].format(f.reason)}" for f in failed if f.failure in AFTERWORD)
    return SessionInfo(
        provider=attempt.provider, providers=active, selection=attempt.selection + said,
        provider_options={name: options for name, options in providers.items() if name != CPU_EP} or {CPU_EP: {}},
        session_options={"graph_optimization_level": GRAPH_OPTIMIZATION_LEVEL,
                         "intra_op_num_threads": INTRA_OP_THREADS},
        placement=counts,
        nodes_off_provider=[node for ep, names in listed.items() if ep != wanted for node in names],
        cuda_graph=attempt.provider == "cuda" and config.cuda_graph,
        overlap_batches=attempt.provider == "cuda" and config.overlap_batches,
        environment={"NVIDIA_TF32_OVERRIDE": os.environ.get("NVIDIA_TF32_OVERRIDE")},
        attempt=attempt.name, failed=failed,
    )


def _as_is(session: Any, info: SessionInfo) -> Any:
    return session


def _try(model_path: Path, attempt: SessionAttempt, trt_cache_dir: str, failed: tuple[FailedAttempt, ...],
         prime: Callable[[Any, SessionInfo], T]) -> tuple[T, SessionInfo] | tuple[FailedAttempt, EdlError]:
    """One attempt: the session, its record and what ``prime`` made of it; or why it failed and the error to raise
    where no later attempt answers that."""
    providers = _providers(attempt.provider, attempt.config, trt_cache_dir)
    try:
        session, log_lines = _open(model_path, providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        message = onnxruntime_message(exc)
        return (FailedAttempt(attempt.name, REFUSED, message),
                SubmissionError([f"onnxruntime could not create a session for the model: {message}"]))
    active, wanted = session.get_providers(), EXECUTION_PROVIDERS[attempt.provider]
    if not active or active[0] != wanted:
        return (FailedAttempt(attempt.name, NO_DEVICE, f"onnxruntime runs {active}"),
                ProviderError(f"{wanted} was requested but onnxruntime runs {active}; refusing to fall back silently"))
    info = _info(attempt, active, providers, log_lines, failed)
    try:
        return prime(session, info), info
    except GraphCaptureError as exc:
        return FailedAttempt(attempt.name, CAPTURE_FAILED, exc.problems[0]), SubmissionError(exc.problems)


def open_attempts(model_path: Path, attempts: Sequence[SessionAttempt], trt_cache_dir: str = "",
                  prime: Callable[[Any, SessionInfo], T] = _as_is) -> tuple[T, SessionInfo]:
    """``attempts`` in order until one opens on its provider and ``prime`` succeeds on it (raising
    ``GraphCaptureError`` where graphs cannot be captured); each failure moves on only to a later attempt that
    answers it, else its error is raised. What ``prime`` made, and the record of what runs (failures included)."""
    failed: tuple[FailedAttempt, ...] = ()
    index = 0
    while True:
        made, second = _try(model_path, attempts[index], trt_cache_dir, failed, prime)
        if isinstance(second, SessionInfo):
            return made, second  # type: ignore[return-value]
        assert isinstance(made, FailedAttempt)
        failed += (made,)
        later = [i for i in range(index + 1, len(attempts)) if made.failure in attempts[i].answers]
        if not later:
            raise second from None
        index = later[0]


def open_session(model_path: Path, config: RuntimeConfig, trt_cache_dir: str = "",
                 prime: Callable[[Any, SessionInfo], T] = _as_is) -> tuple[T, SessionInfo]:
    """The scoring session on the provider ``config`` asks for, through its ``session_attempts``."""
    attempts = session_attempts(config)
    if not config.tf32 and attempts[0].provider != "cpu":
        os.environ["NVIDIA_TF32_OVERRIDE"] = "0"  # read when CUDA initialises, so before the session
    return open_attempts(model_path, attempts, trt_cache_dir, prime)


def create_session(model_path: Path, config: RuntimeConfig, trt_cache_dir: str = "") -> tuple[Any, SessionInfo]:
    """Create the scoring session on the requested provider; raise ProviderError rather than fall back."""
    return open_session(model_path, config, trt_cache_dir)
