"""onnxruntime sessions with pinned settings on the provider that was asked for, and what actually runs.

The same settings are used for every submission and recorded with every result. A session that
does not run on the provider that was asked for is an error, never a silent fallback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluator.config import RuntimeConfig
from evaluator.errors import ProviderError, SubmissionError, onnxruntime_message
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


@dataclass
class SessionInfo:
    """What actually runs: recorded in the result."""

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


def create_session(model_path: Path, config: RuntimeConfig, trt_cache_dir: str = "") -> tuple[Any, SessionInfo]:
    """Create the scoring session on the requested provider; raise ProviderError rather than fall back."""
    provider, selection = resolve_provider(config.provider)
    if not config.tf32 and provider != "cpu":
        os.environ["NVIDIA_TF32_OVERRIDE"] = "0"  # read when CUDA initialises, so before the session
    providers = _providers(provider, config, trt_cache_dir)
    try:
        session, log_lines = _open(model_path, providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        if provider == "cuda" and config.cuda_graph:
            # Graph capture needs every node on CUDA and no control flow: such a model runs without it, said so.
            session, info = create_session(model_path, dataclasses.replace(config, cuda_graph=False), trt_cache_dir)
            info.selection += f"; CUDA graphs refused by onnxruntime ({onnxruntime_message(exc)})"
            return session, info
        raise SubmissionError([f"onnxruntime could not create a session for the model: {onnxruntime_message(exc)}"]
                              ) from None
    active = session.get_providers()
    if provider == "cuda" and active[:1] != [CUDA_EP] and config.provider == "auto":
        # The libraries loaded but no device could be used: auto means the CPU, said so in the result.
        session, info = create_session(model_path, dataclasses.replace(config, provider="cpu"), trt_cache_dir)
        info.selection = "auto: the CUDA provider could not be created on a device"
        return session, info
    wanted = EXECUTION_PROVIDERS[provider]
    if not active or active[0] != wanted:
        raise ProviderError(f"{wanted} was requested but onnxruntime runs {active}; refusing to fall back silently")
    counts, listed = parse_placement(log_lines)
    return session, SessionInfo(
        provider=provider, providers=active, selection=selection,
        provider_options={name: options for name, options in providers.items() if name != CPU_EP} or {CPU_EP: {}},
        session_options={"graph_optimization_level": GRAPH_OPTIMIZATION_LEVEL,
                         "intra_op_num_threads": INTRA_OP_THREADS},
        placement=counts,
        nodes_off_provider=[node for ep, names in listed.items() if ep != wanted for node in names],
        cuda_graph=provider == "cuda" and config.cuda_graph,
        overlap_batches=provider == "cuda" and config.overlap_batches,
        environment={"NVIDIA_TF32_OVERRIDE": os.environ.get("NVIDIA_TF32_OVERRIDE")},
    )
