"""The test set resident on the device, one IOBinding per batch, and passes over it.

On CUDA a pass queues every batch and synchronises once, after the last (``overlap_batches``):
the GPU never waits for Python between batches. The runs share one stream, so the last run's
synchronisation covers them all before any output is read. Other images (the generalization
audit, private data) go through the very same bound buffers, and so the same CUDA graphs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evaluator.config import RuntimeConfig
from evaluator.contract.spec import Contract
from evaluator.errors import SubmissionError, onnxruntime_message
from evaluator.runtime.providers import ort
from evaluator.runtime.session import GraphCaptureError, SessionInfo, open_session

# onnxruntime's CUDA provider runs each graph id twice normally, then captures it on the third run.
GRAPH_CAPTURE_RUNS = 3
_NO_SYNC = "disable_synchronize_execution_providers"
_ORT_TO_NUMPY_NAMES = {"float": "float32", "double": "float64"}  # the rest are spelled alike: uint32, float16...


def _numpy_dtype(ort_type: str) -> np.dtype:
    """The numpy dtype of an onnxruntime tensor type such as ``tensor(uint32)``."""
    name = ort_type.removeprefix("tensor(").removesuffix(")")
    return np.dtype(_ORT_TO_NUMPY_NAMES.get(name, name))


def make_batches(images: np.ndarray, contract: Contract, batch_size: int) -> tuple[list[np.ndarray], int]:
    """Build every batch once, in the model's own input form; pad the last one for a fixed batch.

    Returns the batches and the number of padding images (their predictions are discarded).
    """
    if batch_size <= 0:
        raise SubmissionError([f"batch size {batch_size} must be positive"])
    converted = contract.inputs(images)
    count = converted.shape[0]
    padding = 0
    if contract.fixed_batch is not None and count % batch_size:
        padding = batch_size - count % batch_size
        converted = np.concatenate([converted, np.zeros((padding, *converted.shape[1:]), dtype=converted.dtype)])
    batches = [np.ascontiguousarray(converted[i : i + batch_size]) for i in range(0, converted.shape[0], batch_size)]
    return batches, padding


class BoundRunner:
    """All batches uploaded once to the session's device and bound with IOBinding, one binding per batch."""

    def __init__(self, session: Any, contract: Contract, batches: list[np.ndarray], info: SessionInfo, gpu: int,
                 image_count: int, static_outputs: bool = False) -> None:
        """``static_outputs`` binds preallocated output buffers (CUDA graphs need fixed addresses)."""
        self.session = session
        self.info = info  # what runs: the record of the attempt that opened ``session``
        self.contract = contract
        self.image_count = image_count
        self.graphs = info.cuda_graph
        self.device = "cuda" if info.on_gpu else "cpu"
        self._device_id = gpu if info.on_gpu else 0
        self._host = batches
        try:
            self._inputs = [ort().OrtValue.ortvalue_from_numpy(b, self.device, self._device_id) for b in batches]
        except Exception as exc:  # noqa: BLE001 - out of device memory, mostly
            raise SubmissionError([f"cannot place the test set on {self.device}: {exc}"]) from None
        self._sizes = [batch.shape[0] for batch in batches]
        self._output_shapes = [contract.output_shape(size) for size in self._sizes]
        static = static_outputs or info.cuda_graph
        self._output_dtype = _numpy_dtype(session.get_outputs()[0].type) if static else None
        self._bindings = [self._bind(value, shape, static) for value, shape in zip(self._inputs, self._output_shapes,
                                                                                 strict=True)]
        self._run_options = [self._options(index, len(batches), info) for index in range(len(batches))]

    def _bind(self, value: Any, output_shape: tuple[int, ...], static: bool) -> Any:
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.contract.input_name, value)
        if static:
            output = ort().OrtValue.ortvalue_from_shape_and_type(
                list(output_shape), self._output_dtype, self.device, self._device_id)
            binding.bind_ortvalue_output(self.contract.output_name, output)
        else:
            binding.bind_output(self.contract.output_name, self.device, self._device_id)
        return binding

    @staticmethod
    def _options(index: int, count: int, info: SessionInfo) -> Any:
        run_options = ort().RunOptions()
        run_options.log_severity_level = 3
        if info.cuda_graph:
            run_options.add_run_config_entry("gpu_graph_id", str(index))  # one captured graph per batch
        if info.overlap_batches and index < count - 1:
            run_options.add_run_config_entry(_NO_SYNC, "1")  # the pass's last run synchronises
        return run_options

    @property
    def capacity(self) -> int:
        """Images one pass holds, padding included."""
        return sum(self._sizes)

    def prime(self) -> None:
        """Run every batch until its CUDA graph is captured: no capture inside a measured window."""
        for _ in range(GRAPH_CAPTURE_RUNS if self.graphs else 1):
            self.run_pass()

    def run_pass(self) -> np.ndarray:
        """One pass over every batch; returns the predicted label of each real image."""
        return self._pass()[: self.image_count]

    def _pass(self) -> np.ndarray:
        try:
            for binding, run_options in zip(self._bindings, self._run_options, strict=True):
                self.session.run_with_iobinding(binding, run_options)
            outputs = [binding.copy_outputs_to_cpu()[0] for binding in self._bindings]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise SubmissionError([f"onnxruntime failed while running the model: {onnxruntime_message(exc)}"]
                                  ) from None
        for size, shape, out in zip(self._sizes, self._output_shapes, outputs, strict=True):
            if out.shape != shape:
                raise SubmissionError([f"output {self.contract.output_name!r} has shape {out.shape} for a batch of "
                                       f"{size}; the contract needs {shape}"])
        stacked = np.concatenate(outputs)
        if self.contract.output_kind == "scores":
            return np.argmax(stacked, axis=1)
        return stacked.astype(np.int64)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted labels of other uint8 NHWC ``images``, run through the same bound buffers, then restored.

        The images are written into the resident input buffers a pass's worth at a time (padding
        with zeros), so the same kernels and CUDA graphs run them; the test set is put back after.
        """
        saved = [np.array(batch, copy=True) for batch in self._host]
        predictions = []
        try:
            for start in range(0, len(images), self.capacity):
                chunk = self.contract.inputs(images[start : start + self.capacity])
                filler = np.zeros((self.capacity - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
                self._load(np.concatenate([chunk, filler]))
                predictions.append(self._pass()[: len(chunk)])
        finally:
            self._load(np.concatenate(saved))
        return np.concatenate(predictions) if predictions else np.empty(0, np.int64)

    def _load(self, inputs: np.ndarray) -> None:
        """Overwrite the resident input buffers in place (their addresses, which graphs use, stay)."""
        offsets = np.cumsum([0, *self._sizes])
        for value, start, end in zip(self._inputs, offsets[:-1], offsets[1:], strict=True):
            value.update_inplace(np.ascontiguousarray(inputs[start:end]))


def prime_runner(model_path: Path, contract: Contract, batches: list[np.ndarray], config: RuntimeConfig,
                 image_count: int, trt_cache_dir: str = "") -> BoundRunner:
    """The session (``open_session``'s attempts), the batches bound, CUDA graphs captured before any window.

    Graphs are refused at session creation for control flow or nodes off CUDA; a kernel that
    synchronises or allocates inside its run fails only at capture, and the next attempt (without
    graphs) runs, said so in ``runner.info``, the record of what runs.
    """

    def bind(session: Any, info: SessionInfo) -> BoundRunner:
        runner = BoundRunner(session, contract, batches, info, config.gpu, image_count)
        try:
            runner.prime()
        except SubmissionError as exc:
            if info.cuda_graph:
                raise GraphCaptureError(exc.problems) from None
            raise
        return runner

    return open_session(model_path, config, trt_cache_dir, bind)[0]


def plain_predict(session: Any, contract: Contract, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Predicted labels of uint8 NHWC ``images`` by plain ``session.run`` calls of ``batch_size`` images (the last
    one smaller): a second batch composition and size for the audit, apart from the bound buffers and graphs."""
    predictions = []
    try:
        for start in range(0, len(images), batch_size):
            out = session.run([contract.output_name],
                              {contract.input_name: contract.inputs(images[start : start + batch_size])})[0]
            predictions.append(np.argmax(out, axis=1) if contract.output_kind == "scores" else out.astype(np.int64))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise SubmissionError([f"onnxruntime failed while running the model at batch size {batch_size}: "
                               f"{onnxruntime_message(exc)}"]) from None
    return np.concatenate(predictions) if predictions else np.empty(0, np.int64)
