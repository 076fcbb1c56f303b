"""A read-only view of an untrusted graph for static analysis: who makes and reads each tensor, which tensors
depend on the image input, which reach the output, their inferred shapes, and the value of every constant,
folded through the simple operators an exporter (or a cheat hiding a table) uses to assemble one.

Nothing here runs the model. Folding is lazy and bounded (``MAX_FOLD_ELEMENTS``), so a hostile graph that
assembles a huge constant costs nothing until something asks for it, and then only up to the bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

MAX_FOLD_ELEMENTS = 20_000_000  # larger constants are not read (or built) for the analysis
SHAPE_INIT_ELEMENTS = 4096  # initializers up to this size keep their values for shape inference (shape targets)
Dim = int | str | None


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _elements(dims: Any) -> int:
    total = 1
    for dim in dims:
        total *= max(int(dim), 0)
    return total


class GraphView:
    """The top-level graph of a model, indexed once."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        graph = model.graph
        self.nodes = list(graph.node)
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.image_inputs = [vi.name for vi in graph.input if vi.name not in self.initializers]
        self.outputs = [vi.name for vi in graph.output]
        # Each node's input and output names, read once: protobuf's repeated fields are slow to walk in Python.
        self.io = [(list(node.input), list(node.output)) for node in self.nodes]
        self.with_subgraphs = {index for index, node in enumerate(self.nodes)
                               if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                      for attr in node.attribute)}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node, (inputs, outputs) in zip(self.nodes, self.io, strict=True):
            for name in outputs:
                if name:
                    self.producer[name] = node
            for name in inputs:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.dependent = self._input_dependent()
        self.reaching = self._reaching_outputs()
        self.shapes: dict[str, list[Dim]] = {}
        self._folded: dict[str, np.ndarray | None] = {}

    def _input_dependent(self) -> set[str]:
        """Tensors computed from the image input (nodes are in topological order, as the checker demands)."""
        dependent = set(self.image_inputs)
        for index, (node, (inputs, outputs)) in enumerate(zip(self.nodes, self.io, strict=True)):
            if any(name in dependent for name in inputs) or (index in self.with_subgraphs
                                                               and _reads_outer(node, dependent)):
                dependent.update(name for name in outputs if name)
        return dependent

    def _reaching_outputs(self) -> set[str]:
        reaching, stack = set(self.outputs), list(self.outputs)
        while stack:
            node = self.producer.get(stack.pop())
            if node is None:
                continue
            for name in node.input:
                if name and name not in reaching:
                    reaching.add(name)
                    stack.append(name)
        return reaching

    def node_name(self, node: onnx.NodeProto) -> str:
        return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"

    def infer_shapes(self) -> None:
        """Shapes from onnx's inference on a light copy (large weights replaced by their declared types)."""
        light = onnx.ModelProto()
        light.ir_version = self.model.ir_version
        light.opset_import.extend(self.model.opset_import)
        graph = light.graph
        graph.node.extend(self.nodes)
        graph.input.extend(self.model.graph.input)
        graph.output.extend(self.model.graph.output)
        declared = {vi.name for vi in self.model.graph.input}
        for tensor in self.initializers.values():
            if tensor.data_location != TensorProto.EXTERNAL and _elements(tensor.dims) <= SHAPE_INIT_ELEMENTS:
                graph.initializer.append(tensor)
            elif tensor.name not in declared:
                graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
        for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
            tensor_type = vi.type.tensor_type
            if tensor_type.HasField("shape"):
                self.shapes[vi.name] = [_dim(dim) for dim in tensor_type.shape.dim]

    @property
    def batch_dim(self) -> Dim:
        """The image input's first dimension: its symbol, or a fixed batch size."""
        shape = self.shape(self.image_inputs[0]) if self.image_inputs else None
        return shape[0] if shape else None

    def shape(self, name: str) -> list[Dim] | None:
        """The tensor's shape: a constant's own, else the inferred one (None when unknown)."""
        if name in self.initializers:
            return [int(d) for d in self.initializers[name].dims]
        value = self._folded.get(name)
        if value is not None:
            return list(value.shape)
        return self.shapes.get(name)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a tensor that does not depend on the input, where it is cheap to know; else None."""
        if not name or name in self.dependent:
            return None
        if name not in self._folded:
            self._folded[name] = None  # a cycle in a hostile graph ends here
            self._folded[name] = self._evaluate(name)
        return self._folded[name]

    def _evaluate(self, name: str) -> np.ndarray | None:
        tensor = self.initializers.get(name)
        if tensor is not None:
            if tensor.data_location == TensorProto.EXTERNAL or _elements(tensor.dims) > MAX_FOLD_ELEMENTS:
                return None
            return numpy_helper.to_array(tensor)
        node = self.producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type == "Constant":
            return _constant_node(node)
        fold = FOLDS.get(node.op_type)
        if fold is None or list(node.output).index(name) != 0:
            return None
        values = [self.constant(item) if item else None for item in node.input]
        if any(value is None for value, item in zip(values, node.input, strict=True) if item):
            return None
        try:
            result = fold(node, values)
        except Exception:  # noqa: BLE001 - a malformed constant expression is simply not folded
            return None
        return result if result is not None and result.size <= MAX_FOLD_ELEMENTS else None


def _reads_outer(node: onnx.NodeProto, dependent: set[str]) -> bool:
    """A subgraph (If/Loop/Scan body) that reads an input-dependent tensor of the outer graph."""
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for sub in graphs:
            if any(name in dependent for inner in sub.node for name in inner.input):
                return True
    return False


def _dim(dim: onnx.TensorShapeProto.Dimension) -> Dim:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    return dim.dim_param or None


def _constant_node(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_int"):
            return np.array(onnx.helper.get_attribute_value(attr))
        if attr.name in ("value_floats", "value_ints"):
            return np.array(list(onnx.helper.get_attribute_value(attr)))
    return None


def _ints(value: np.ndarray | None) -> list[int]:
    return [] if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


def _reshape(node: onnx.NodeProto, values: list[np.ndarray | None]) -> np.ndarray:
    data, shape = values[0], _ints(values[1])
    assert data is not None
    target = [data.shape[i] if s == 0 and not attribute(node, "allowzero", 0) else s for i, s in enumerate(shape)]
    return data.reshape(target)


def _slice(node: onnx.NodeProto, values: list[np.ndarray | None]) -> np.ndarray:
    data = values[0]
    assert data is not None
    starts, ends = _ints(values[1]), _ints(values[2])
    axes = _ints(values[3]) if len(values) > 3 and values[3] is not None else list(range(len(starts)))
    steps = _ints(values[4]) if len(values) > 4 and values[4] is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[axis] = slice(start, end, step)
    return data[tuple(index)]


def _unsqueeze(node: onnx.NodeProto, values: list[np.ndarray | None]) -> np.ndarray:
    data = values[0]
    assert data is not None
    axes = _ints(values[1]) if len(values) > 1 and values[1] is not None else list(attribute(node, "axes", []))
    rank = data.ndim + len(axes)
    return np.expand_dims(data, tuple(sorted(a % rank for a in axes)))


def _squeeze(node: onnx.NodeProto, values: list[np.ndarray | None]) -> np.ndarray:
    data = values[0]
    assert data is not None
    axes = _ints(values[1]) if len(values) > 1 and values[1] is not None else list(attribute(node, "axes", []))
    return np.squeeze(data, tuple(axes)) if axes else np.squeeze(data)


def _cast(node: onnx.NodeProto, values: list[np.ndarray | None]) -> np.ndarray:
    assert values[0] is not None
    to = int(attribute(node, "to", TensorProto.FLOAT))
    return values[0].astype(onnx.helper.tensor_dtype_to_np_dtype(to))


def _constant_of_shape(node: onnx.NodeProto, values: list[np.ndarray | None]) -> np.ndarray | None:
    shape = _ints(values[0])
    if _elements(shape) > MAX_FOLD_ELEMENTS:
        return None
    fill = attribute(node, "value")
    filler = numpy_helper.to_array(fill) if isinstance(fill, TensorProto) else np.zeros(1, np.float32)
    return np.full(shape, filler.reshape(-1)[0], filler.dtype)


def _binary(operation: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def fold(node: onnx.NodeProto, values: list[np.ndarray | None]) -> np.ndarray:
        left, right = values[0], values[1]
        assert left is not None and right is not None
        if _elements(np.broadcast_shapes(left.shape, right.shape)) > MAX_FOLD_ELEMENTS:
            raise ValueError("too large to fold")
        return np.asarray(operation(left, right)).astype(left.dtype)
    return fold


def _one(values: list[np.ndarray | None]) -> np.ndarray:
    assert values[0] is not None
    return values[0]


FOLDS: dict[str, Callable[[onnx.NodeProto, list[np.ndarray | None]], np.ndarray | None]] = {
    "Identity": lambda node, values: _one(values),
    "Cast": _cast,
    "Concat": lambda node, values: np.concatenate([v for v in values if v is not None],
                                                  axis=int(attribute(node, "axis", 0))),
    "Reshape": _reshape,
    "Flatten": lambda node, values: _one(values).reshape(
        int(np.prod(_one(values).shape[:int(attribute(node, "axis", 1))])), -1),
    "Transpose": lambda node, values: np.transpose(_one(values), attribute(node, "perm")),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Slice": _slice,
    "Neg": lambda node, values: -_one(values),
    "ConstantOfShape": _constant_of_shape,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(lambda a, b: a / b if a.dtype.kind == "f" else a // b),
}
