"""onnxruntime sessions with pinned settings, batches resident on the device, IOBinding runs.

The same settings are used for every submission and recorded with every result. A session that
does not run on the provider that was asked for is an error, never a silent fallback.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.errors import ProviderError, SubmissionError
from evaluator.submission import NUM_CLASSES, Contract

CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
CPU_EP = "CPUExecutionProvider"
PROVIDER_CHOICES = ("auto", "cuda", "tensorrt", "cpu")
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}
_PLACEMENT_RE = re.compile(r"(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_NODE_LINE_RE = re.compile(r"^\s{2}(\S+) \((.*)\)\s*$")
# onnxruntime's CUDA provider runs each graph id twice normally, then captures it on the third run.
GRAPH_CAPTURE_RUNS = 3
_NO_SYNC = "disable_synchronize_execution_providers"


def _ort():  # noqa: ANN202 - onnxruntime is imported lazily: `edl --help` should not pay for it
    import onnxruntime

    return onnxruntime


def _provider_library_error(name: str) -> str | None:
    """Load onnxruntime's provider library ourselves: its dynamic-loader error names what is missing."""
    library = Path(_ort().__file__).parent / "capi" / f"libonnxruntime_providers_{name}.so"
    if not library.exists():
        return None
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        return str(exc)
    return None


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA provider cannot be created here, or None when it can be.

    onnxruntime-gpu lists CUDAExecutionProvider even when CUDA is missing and only logs the
    failure; loading its provider library ourselves gives the real reason (a missing .so).
    """
    ort = _ort()
    if CUDA_EP not in ort.get_available_providers():
        return f"this onnxruntime build ({ort.__version__}) has no CUDA provider; install onnxruntime-gpu"
    if hasattr(ort, "preload_dlls"):  # CUDA libraries from pip's nvidia-* wheels, when installed
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                ort.preload_dlls(directory="")
            except Exception:  # noqa: BLE001 - best effort; the real probe follows
                pass
    if (error := _provider_library_error("cuda")) is not None:
        return f"the CUDA provider library cannot load: {error}. Install CUDA 13 and cuDNN 9 (or a matching build)"
    return None


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything about the runtime that could change a result; identical for every submission."""

    provider: str = "auto"  # auto | cuda | tensorrt | cpu
    gpu: int = 0
    graph_optimization_level: str = "ORT_ENABLE_ALL"
    intra_op_threads: int = 0  # 0: onnxruntime's default (one per physical core)
    prefer_nhwc: bool = True  # CUDA: channels-last kernels (cuDNN's fast path for convolutions)
    cuda_graph: bool = True  # CUDA: capture one graph per resident batch (gpu_graph_id); refused -> without
    overlap_batches: bool = True  # CUDA: queue a pass's batches without waiting; one synchronisation per pass
    cudnn_conv_algo_search: str = "EXHAUSTIVE"  # EXHAUSTIVE | HEURISTIC | DEFAULT
    tf32: bool = True  # False sets NVIDIA_TF32_OVERRIDE=0 (cuDNN's frontend ignores use_tf32)
    trt_cache_dir: str = ""  # TensorRT engine cache; the scorer puts it in the result folder
    base_cuda_options: dict[str, str] = field(
        default_factory=lambda: {
            "do_copy_in_default_stream": "1",
            "arena_extend_strategy": "kNextPowerOfTwo",
            "gpu_mem_limit": str(32 << 30),  # a submission cannot take the whole card
        }
    )

    def cuda_options(self) -> dict[str, str]:
        return {
            "device_id": str(self.gpu),
            **self.base_cuda_options,
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "prefer_nhwc": "1" if self.prefer_nhwc else "0",
            "enable_cuda_graph": "1" if self.cuda_graph else "0",
        }

    def tensorrt_options(self) -> dict[str, str]:
        options = {"device_id": str(self.gpu), "trt_timing_cache_enable": "1"}
        if self.trt_cache_dir:
            options |= {"trt_engine_cache_enable": "1", "trt_engine_cache_path": self.trt_cache_dir,
                        "trt_timing_cache_path": self.trt_cache_dir}
        return options


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT provider cannot be created here, or None when it can (it also needs CUDA)."""
    ort = _ort()
    if TRT_EP not in ort.get_available_providers():
        return f"this onnxruntime build ({ort.__version__}) has no TensorRT provider; install onnxruntime-gpu"
    if (cuda := cuda_unavailable_reason()) is not None:
        return cuda
    if (error := _provider_library_error("tensorrt")) is not None:
        return f"TensorRT is not installed ({error}); install TensorRT 10 (pip install tensorrt) to use it"
    return None


@dataclass
class SessionInfo:
    """What actually runs: recorded in the result."""

    provider: str  # cuda | cpu
    providers: list[str]
    provider_options: dict[str, dict[str, str]]
    session_options: dict[str, object]
    placement: dict[str, int]  # provider -> node count
    nodes_off_provider: list[str]  # "OpType (name)" for nodes not on the requested provider
    selection: str  # why this provider
    cuda_graph: bool = False  # graphs are captured (one per batch)
    overlap_batches: bool = False  # a pass's batches are queued without a wait between them
    environment: dict[str, str | None] = field(default_factory=dict)


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


def _parse_placement(lines: list[str]) -> tuple[dict[str, int], dict[str, list[str]]]:
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


def _resolve_provider(settings: RuntimeSettings) -> tuple[str, str]:
    """The provider that will run, and why; never a silent substitute for an explicit request."""
    if settings.provider not in PROVIDER_CHOICES:
        raise ProviderError(f"unknown provider {settings.provider!r}; choose one of {', '.join(PROVIDER_CHOICES)}")
    if settings.provider == "tensorrt":
        if (reason := tensorrt_unavailable_reason()) is not None:
            raise ProviderError(f"--provider tensorrt was asked for, but {reason}")
        return "tensorrt", "requested"
    if settings.provider == "cpu":
        return "cpu", "requested"
    reason = cuda_unavailable_reason()
    if reason is None:
        return "cuda", "requested" if settings.provider == "cuda" else "auto: the CUDA provider is available"
    if settings.provider == "cuda":
        raise ProviderError(f"--provider cuda was asked for, but {reason}")
    return "cpu", f"auto: CUDA unavailable ({reason})"


def create_session(model_path: Path, settings: RuntimeSettings):  # noqa: ANN201 - onnxruntime type, lazy
    """Create the scoring session on the requested provider; raise ProviderError rather than fall back."""
    ort = _ort()
    provider, selection = _resolve_provider(settings)
    if not settings.tf32 and provider != "cpu":
        os.environ["NVIDIA_TF32_OVERRIDE"] = "0"  # read when CUDA initialises, so before the session
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings.graph_optimization_level)
    options.intra_op_num_threads = settings.intra_op_threads
    options.log_severity_level = 0  # verbose while creating: onnxruntime logs the node placement
    if provider == "tensorrt":
        providers: list = [(TRT_EP, settings.tensorrt_options()), (CUDA_EP, settings.cuda_options()), CPU_EP]
        provider_options = {TRT_EP: settings.tensorrt_options(), CUDA_EP: settings.cuda_options()}
    elif provider == "cuda":
        providers = [(CUDA_EP, settings.cuda_options()), CPU_EP]
        provider_options = {CUDA_EP: settings.cuda_options()}
    else:
        providers = [CPU_EP]
        provider_options = {CPU_EP: {}}
    try:
        with _captured_stderr() as log_lines:
            session = ort.InferenceSession(str(model_path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        message = str(exc).split(" : ", 2)[-1].strip().splitlines()[0]
        if provider == "cuda" and settings.cuda_graph:
            # Graph capture needs every node on CUDA and no control flow: such a model runs without it, said so.
            plain = RuntimeSettings(**{**settings.__dict__, "cuda_graph": False})
            session, info = create_session(model_path, plain)
            info.selection += f"; CUDA graphs refused by onnxruntime ({message})"
            return session, info
        raise SubmissionError([f"onnxruntime could not create a session for the model: {message}"]) from None
    active = session.get_providers()
    if provider == "cuda" and active[:1] != [CUDA_EP] and settings.provider == "auto":
        # The libraries loaded but no device could be used: auto means the CPU, said so in the result.
        fallback = RuntimeSettings(**{**settings.__dict__, "provider": "cpu"})
        session, info = create_session(model_path, fallback)
        info.selection = "auto: the CUDA provider could not be created on a device"
        return session, info
    wanted = {"tensorrt": TRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}[provider]
    if not active or active[0] != wanted:
        raise ProviderError(f"{wanted} was requested but onnxruntime runs {active}; refusing to fall back silently")
    counts, listed = _parse_placement(log_lines)
    off = [node for ep, names in listed.items() if ep != wanted for node in names]
    info = SessionInfo(
        provider=provider,
        providers=active,
        provider_options=provider_options,
        session_options={
            "graph_optimization_level": settings.graph_optimization_level,
            "intra_op_num_threads": settings.intra_op_threads,
        },
        placement=counts,
        nodes_off_provider=off,
        selection=selection,
        cuda_graph=provider == "cuda" and settings.cuda_graph,
        overlap_batches=provider == "cuda" and settings.overlap_batches,
        environment={"NVIDIA_TF32_OVERRIDE": os.environ.get("NVIDIA_TF32_OVERRIDE")},
    )
    return session, info


def make_batches(images: np.ndarray, contract: Contract, batch_size: int) -> tuple[list[np.ndarray], int]:
    """Build every batch once, in the model's own input form; pad the last one for a fixed batch.

    Returns the batches and the number of padding images (their predictions are discarded).
    """
    if batch_size <= 0:
        raise SubmissionError([f"batch size {batch_size} must be positive"])
    pixels = images if contract.layout == "NHWC" else images.transpose(0, 3, 1, 2)
    if contract.input_dtype == "uint8":
        converted = np.ascontiguousarray(pixels)
    else:
        converted = (pixels.astype(np.float32) / np.float32(255.0)).astype(contract.input_dtype)
    count = converted.shape[0]
    padding = 0
    if contract.fixed_batch is not None and count % batch_size:
        padding = batch_size - count % batch_size
        pad = np.zeros((padding, *converted.shape[1:]), dtype=converted.dtype)
        converted = np.concatenate([converted, pad])
    batches = [np.ascontiguousarray(converted[i : i + batch_size]) for i in range(0, converted.shape[0], batch_size)]
    return batches, padding


class BoundRunner:
    """All batches uploaded once to the session's device and bound with IOBinding, one binding per batch.

    On CUDA a pass queues every batch and synchronises once, after the last (``overlap_batches``):
    the GPU never waits for Python between batches. The runs share one stream, so the last run's
    synchronisation covers them all before any output is read.
    """

    def __init__(self, session: Any, contract: Contract, batches: list[np.ndarray], info: SessionInfo, gpu: int,
                 image_count: int, static_outputs: bool = False) -> None:
        """``static_outputs`` binds preallocated output buffers (CUDA graphs need fixed addresses)."""
        ort = _ort()
        self.session = session
        self.contract = contract
        self.image_count = image_count
        self.graphs = info.cuda_graph
        self.device = "cpu" if info.provider == "cpu" else "cuda"
        device_id = gpu if self.device == "cuda" else 0
        try:
            self._inputs = [ort.OrtValue.ortvalue_from_numpy(batch, self.device, device_id) for batch in batches]
        except Exception as exc:  # noqa: BLE001 - out of device memory, mostly
            raise SubmissionError([f"cannot place the test set on {self.device}: {exc}"]) from None
        self._sizes = [batch.shape[0] for batch in batches]
        static = static_outputs or info.cuda_graph
        output_dtype = _ORT_TYPES.get(session.get_outputs()[0].type)
        if static and output_dtype is None:
            raise SubmissionError([f"output type {session.get_outputs()[0].type} cannot be preallocated"])
        self._bindings, self._outputs, self._run_options = [], [], []
        last = len(batches) - 1
        for index, (value, size) in enumerate(zip(self._inputs, self._sizes, strict=True)):
            binding = session.io_binding()
            binding.bind_ortvalue_input(contract.input_name, value)
            if static:
                shape = [size, NUM_CLASSES] if contract.output_kind == "scores" else [size]
                output = ort.OrtValue.ortvalue_from_shape_and_type(shape, output_dtype, self.device, device_id)
                binding.bind_ortvalue_output(contract.output_name, output)
                self._outputs.append(output)
            else:
                binding.bind_output(contract.output_name, self.device, device_id)
            run_options = ort.RunOptions()
            run_options.log_severity_level = 3
            if info.cuda_graph:
                run_options.add_run_config_entry("gpu_graph_id", str(index))  # one captured graph per batch
            if info.overlap_batches and index < last:
                run_options.add_run_config_entry(_NO_SYNC, "1")  # the pass's last run synchronises
            self._bindings.append(binding)
            self._run_options.append(run_options)

    def prime(self) -> None:
        """Run every batch until its CUDA graph is captured: no capture inside a measured window."""
        for _ in range(GRAPH_CAPTURE_RUNS if self.graphs else 1):
            self.run_pass()

    def run_pass(self) -> np.ndarray:
        """One pass over every batch; returns the predicted label of each real image."""
        try:
            for binding, run_options in zip(self._bindings, self._run_options, strict=True):
                self.session.run_with_iobinding(binding, run_options)
            outputs = [binding.copy_outputs_to_cpu()[0] for binding in self._bindings]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            message = str(exc).split(" : ", 2)[-1].strip().splitlines()[0]
            raise SubmissionError([f"onnxruntime failed while running the model: {message}"]) from None
        return self._predictions(outputs)

    def _predictions(self, outputs: list[np.ndarray]) -> np.ndarray:
        for size, out in zip(self._sizes, outputs, strict=True):
            expected = (size, NUM_CLASSES) if self.contract.output_kind == "scores" else (size,)
            if out.shape != expected:
                raise SubmissionError(
                    [f"output {self.contract.output_name!r} has shape {out.shape} for a batch of {size}; "
                     f"the contract needs {expected}"]
                )
        stacked = np.concatenate(outputs)
        if self.contract.output_kind == "scores":
            predictions = np.argmax(stacked, axis=1)
        else:
            predictions = stacked.astype(np.int64)
        return predictions[: self.image_count]


def prime_runner(model_path: Path, session: Any, info: SessionInfo, contract: Contract, batches: list[np.ndarray],
                 settings: RuntimeSettings, image_count: int) -> BoundRunner:
    """Bind the batches and capture CUDA graphs before any window; a capture that fails runs without.

    Graphs are refused at session creation for control flow or nodes off CUDA; a kernel that
    synchronises or allocates inside its run fails only at capture, so that case is handled here.
    ``info`` is updated in place to say what runs.
    """
    runner = BoundRunner(session, contract, batches, info, settings.gpu, image_count)
    try:
        runner.prime()
        return runner
    except SubmissionError as exc:
        if not info.cuda_graph:
            raise
        del runner, session
        plain = replace(settings, cuda_graph=False)
        session, fresh = create_session(model_path, plain)
        fresh.selection += f"; CUDA graph capture failed ({exc.problems[0]}), run without graphs"
        info.__dict__.update(fresh.__dict__)
        runner = BoundRunner(session, contract, batches, info, settings.gpu, image_count)
        runner.prime()
        return runner
