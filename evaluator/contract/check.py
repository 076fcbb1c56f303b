"""The submission contract, and ``edl check``: validate an untrusted .onnx file without scoring it.

A check never raises for a bad model: it collects one clear message per problem, so a team sees
everything wrong at once, and the scorer refuses a model whose report is not valid.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
from onnx import TensorProto

from evaluator.config import Limits
from evaluator.contract.evidence import Finding, find_evidence
from evaluator.contract.spec import BATCH_METADATA_KEY, IMAGE_SIDE, NUM_CLASSES, Contract
from evaluator.errors import onnxruntime_message
from evaluator.typedjson import JsonObject, to_json

# Operator domains that onnxruntime implements itself; no custom-op library is ever registered.
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
MIN_OPSET, MAX_OPSET = 7, 25
ONNX_INPUT_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.UINT8: "uint8"}
SCORE_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64"}
LABEL_DTYPES = {
    TensorProto.INT64: "int64",
    TensorProto.INT32: "int32",
    TensorProto.INT16: "int16",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.UINT16: "uint16",
    TensorProto.UINT32: "uint32",
    TensorProto.UINT64: "uint64",
}


@dataclass
class CheckReport:
    """Everything ``edl check`` learnt about a submission."""

    path: str
    bytes: int = 0
    sha256: str = ""
    ir_version: int | None = None
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    domains_used: list[str] = field(default_factory=list)
    node_count: int = 0
    parameters: int = 0
    initializer_bytes: int = 0
    external_data: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    contract: Contract | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    evidence: list[Finding] = field(default_factory=list)  # stored answers in the graph? for review, not problems

    @property
    def valid(self) -> bool:
        return not self.problems and self.contract is not None

    def to_json(self) -> JsonObject:
        document = to_json(self)
        assert isinstance(document, dict)
        return document | {"valid": self.valid}


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str | None] | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def _dtype_name(elem: int) -> str:
    try:
        return TensorProto.DataType.Name(elem)
    except ValueError:
        return f"unknown element type {elem}"


def _describe(value_info: onnx.ValueInfoProto) -> str:
    elem = value_info.type.tensor_type.elem_type
    dtype = _dtype_name(elem).lower() if elem else "?"
    dims = _dims(value_info)
    shape = "?" if dims is None else "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
    return f"{value_info.name}: {dtype} {shape}"


def _all_graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    graphs = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                graphs.extend(_all_graphs(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    graphs.extend(_all_graphs(sub))
    return graphs


def _check_external(model: onnx.ModelProto, folder: Path, report: CheckReport) -> None:
    """External tensors must be regular files inside the submission's folder, and big enough."""
    root = folder.resolve()
    for graph in _all_graphs(model.graph):
        for tensor in graph.initializer:
            if tensor.data_location != TensorProto.EXTERNAL:
                continue
            info = {entry.key: entry.value for entry in tensor.external_data}
            location = info.get("location", "")
            if not location or os.path.isabs(location) or ".." in Path(location).parts:
                report.problems.append(
                    f"initializer {tensor.name!r}: external data location {location!r} must be a relative "
                    "path inside the submission's folder"
                )
                continue
            target = folder / location
            if (target.is_symlink() or not target.is_file() or not target.resolve().is_relative_to(root)
                    or target.stat().st_nlink > 1):
                report.problems.append(
                    f"initializer {tensor.name!r}: external data {location!r} is not a regular file inside "
                    f"{folder} (missing, a symbolic or hard link, or leading out); ship it next to the .onnx file"
                )
                continue
            try:
                offset = int(info.get("offset", 0))
                length = int(info["length"]) if "length" in info else target.stat().st_size - offset
            except ValueError:
                report.problems.append(f"initializer {tensor.name!r}: external data offset/length are not integers")
                continue
            if offset < 0 or length < 0 or offset + length > target.stat().st_size:
                report.problems.append(
                    f"initializer {tensor.name!r}: external data {location!r} offset {offset} + length {length} "
                    f"runs past the file's {target.stat().st_size} bytes"
                )
                continue
            report.initializer_bytes += length
            if location not in report.external_data:
                report.external_data.append(location)


def _initializer_stats(model: onnx.ModelProto, report: CheckReport) -> set[str]:
    names: set[str] = set()
    for graph in _all_graphs(model.graph):
        for tensor in graph.initializer:
            names.add(tensor.name)
            report.parameters += int(np.prod(tensor.dims)) if tensor.dims else 1
            if tensor.data_location != TensorProto.EXTERNAL:
                report.initializer_bytes += tensor.ByteSize()
    return names


class _InputPart(NamedTuple):
    name: str
    dtype: str
    layout: str
    fixed_batch: int | None


class _OutputPart(NamedTuple):
    name: str
    kind: str


def _input_contract(model: onnx.ModelProto, initializer_names: set[str], report: CheckReport) -> _InputPart | None:
    inputs = [vi for vi in model.graph.input if vi.name not in initializer_names]
    report.inputs = [_describe(vi) for vi in inputs]
    if len(inputs) != 1:
        report.problems.append(
            f"the model has {len(inputs)} inputs ({', '.join(vi.name for vi in inputs) or 'none'}); the contract "
            "is exactly one image input"
        )
        return None
    (vi,) = inputs
    elem = vi.type.tensor_type.elem_type
    if elem not in ONNX_INPUT_DTYPES:
        report.problems.append(
            f"input {vi.name!r} is {_dtype_name(elem) if elem else 'not a tensor'}; it must be "
            "float32 or float16 pixels in [0, 1], or uint8 raw pixels"
        )
        return None
    dims = _dims(vi)
    if dims is None or len(dims) != 4:
        report.problems.append(
            f"input {vi.name!r} has shape {dims}; it must be rank 4: (N, 3, 32, 32) NCHW or (N, 32, 32, 3) NHWC"
        )
        return None
    if dims[1:] == [3, IMAGE_SIDE, IMAGE_SIDE]:
        layout = "NCHW"
    elif dims[1:] == [IMAGE_SIDE, IMAGE_SIDE, 3]:
        layout = "NHWC"
    else:
        report.problems.append(
            f"input {vi.name!r} has shape {dims}; fix the non-batch dimensions to (3, 32, 32) NCHW or "
            "(32, 32, 3) NHWC"
        )
        return None
    fixed = dims[0] if isinstance(dims[0], int) else None
    return _InputPart(vi.name, ONNX_INPUT_DTYPES[elem], layout, fixed)


def _output_contract(model: onnx.ModelProto, fixed_batch: int | None, report: CheckReport) -> _OutputPart | None:
    outputs = list(model.graph.output)
    report.outputs = [_describe(vi) for vi in outputs]
    if len(outputs) != 1:
        report.problems.append(
            f"the model has {len(outputs)} outputs ({', '.join(vi.name for vi in outputs) or 'none'}); the contract "
            "is exactly one: (N, 10) scores or (N,) integer labels"
        )
        return None
    (vi,) = outputs
    elem = vi.type.tensor_type.elem_type
    dims = _dims(vi)
    if elem in SCORE_DTYPES and (dims is None or len(dims) == 2):
        if dims is not None and isinstance(dims[1], int) and dims[1] != NUM_CLASSES:
            report.problems.append(f"output {vi.name!r} has {dims[1]} scores per image; CIFAR-10 needs 10")
            return None
        kind = "scores"
    elif elem in LABEL_DTYPES and (dims is None or len(dims) == 1):
        kind = "labels"
    else:
        dtype = _dtype_name(elem) if elem else "not a tensor"
        report.problems.append(
            f"output {vi.name!r} is {dtype} with shape {dims}; it must be (N, 10) float scores or (N,) integer labels"
        )
        return None
    if dims is None:
        report.warnings.append(f"output {vi.name!r} declares no shape; it is checked on the first batch instead")
    elif fixed_batch is not None and isinstance(dims[0], int) and dims[0] != fixed_batch:
        report.problems.append(f"output batch dimension {dims[0]} differs from the input's {fixed_batch}")
        return None
    return _OutputPart(vi.name, kind)


def _metadata_batch(model: onnx.ModelProto, report: CheckReport) -> int | None:
    for prop in model.metadata_props:
        if prop.key == BATCH_METADATA_KEY:
            try:
                value = int(prop.value)
            except ValueError:
                value = 0
            if value <= 0:
                report.problems.append(f"metadata {BATCH_METADATA_KEY}={prop.value!r} must be a positive integer")
                return None
            return value
    return None


def _ort_load(path: Path, report: CheckReport) -> None:
    """Let onnxruntime itself load the model on the CPU: the final word on IR version and operators."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        report.problems.append(f"onnxruntime cannot load the model: {onnxruntime_message(exc)}")


def _text(value: str | bytes) -> str:
    """Protobuf hands back bytes for a string field that is not valid UTF-8: a hostile file can do that."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def check_submission(path: Path, limits: Limits | None = None, load_in_runtime: bool = True) -> CheckReport:
    """Validate ``path`` against the contract and the limits; never raises for a bad model."""
    report = CheckReport(path=str(path))
    try:
        return _check(Path(path), limits or Limits(), load_in_runtime, report)
    except Exception as exc:  # noqa: BLE001 - last line of defence: a hostile file must not crash the check
        report.problems.append(f"the model could not be analysed ({type(exc).__name__}: {exc}); it is malformed")
        report.contract = None
        return report


def _read(path: Path, limits: Limits, report: CheckReport) -> onnx.ModelProto | None:
    """The file's bytes parsed as ONNX, after the size limits; None (with the problem) when it is not one."""
    if not path.is_file():
        if path.is_dir():
            report.problems.append(f"{path}: a folder, not a .onnx file; to score every submission in a folder "
                                   "use `edl score-dir`")
        else:
            report.problems.append(f"{path}: no such file; pass the path of a .onnx submission")
        return None
    report.bytes = path.stat().st_size
    if report.bytes == 0:
        report.problems.append(f"{path}: the file is empty")
        return None
    if report.bytes > limits.max_file_bytes:
        report.problems.append(
            f"{path}: {report.bytes} bytes exceeds the {limits.max_file_bytes}-byte limit (--max-file-bytes)"
        )
        return None
    raw = path.read_bytes()
    report.sha256 = hashlib.sha256(raw).hexdigest()
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        report.problems.append(f"{path}: not an ONNX model (protobuf parse failed: {exc})")
        return None
    if not model.HasField("graph"):
        report.problems.append(f"{path}: not an ONNX model (no graph); is it really a .onnx file?")
        return None
    return model


def _check_structure(model: onnx.ModelProto, limits: Limits, report: CheckReport) -> None:
    """Opsets, operator domains and node count."""
    report.ir_version = int(model.ir_version)
    report.producer = f"{_text(model.producer_name)} {_text(model.producer_version)}".strip()
    report.opsets = {(_text(entry.domain) or "ai.onnx"): int(entry.version) for entry in model.opset_import}
    graphs = _all_graphs(model.graph)
    report.node_count = sum(len(graph.node) for graph in graphs)
    report.domains_used = sorted({(_text(node.domain) or "ai.onnx") for graph in graphs for node in graph.node})
    for domain in report.domains_used:
        if domain not in ALLOWED_DOMAINS:
            report.problems.append(
                f"operator domain {domain!r} is not provided by onnxruntime; custom operators are never loaded, "
                "so express the model with standard ONNX operators"
            )
    default_opset = report.opsets.get("ai.onnx")
    if default_opset is None:
        report.problems.append("the model imports no default-domain opset; export with opset 13 or newer")
    elif not MIN_OPSET <= default_opset <= MAX_OPSET:
        report.problems.append(f"opset {default_opset} is outside the accepted range {MIN_OPSET}..{MAX_OPSET}")
    if report.node_count > limits.max_nodes:
        report.problems.append(f"{report.node_count} nodes exceeds the limit of {limits.max_nodes}")


def _check_weights(model: onnx.ModelProto, path: Path, limits: Limits, report: CheckReport) -> set[str]:
    """Weight statistics, external data and the weight limit, then onnx's own checker."""
    initializer_names = _initializer_stats(model, report)
    problems_before = len(report.problems)
    _check_external(model, path.parent, report)
    external_ok = len(report.problems) == problems_before
    if report.initializer_bytes > limits.max_initializer_bytes:
        report.problems.append(
            f"{report.initializer_bytes} bytes of weights exceeds the limit of {limits.max_initializer_bytes}"
        )
    if external_ok:  # else our own message says it better than the checker's
        try:  # with external data, the checker must resolve it from the model's own folder
            onnx.checker.check_model(str(path) if report.external_data else model, full_check=True)
        except Exception as exc:  # noqa: BLE001 - checker and shape inference raise several types
            report.problems.append(f"onnx.checker rejects the model: {str(exc).strip().splitlines()[0]}")
    return initializer_names


def _check(path: Path, limits: Limits, load_in_runtime: bool, report: CheckReport) -> CheckReport:
    model = _read(path, limits, report)
    if model is None:
        return report
    _check_structure(model, limits, report)
    initializer_names = _check_weights(model, path, limits, report)
    input_part = _input_contract(model, initializer_names, report)
    output_part = _output_contract(model, input_part.fixed_batch if input_part else None, report)
    metadata_batch = _metadata_batch(model, report)
    if input_part and output_part:
        report.contract = Contract(input_name=input_part.name, input_dtype=input_part.dtype, layout=input_part.layout,
                                   output_name=output_part.name, output_kind=output_part.kind,
                                   fixed_batch=input_part.fixed_batch, metadata_batch=metadata_batch)
    if load_in_runtime and not report.problems:
        _ort_load(path, report)
    if not report.problems:
        report.evidence = find_evidence(model)
        report.warnings += [evidence_warning(finding) for finding in report.evidence if finding.strength == "strong"]
    return report


def evidence_warning(finding: Finding) -> str:
    return f"graph evidence of stored answers, for review (not a problem by itself): {finding.line}"
