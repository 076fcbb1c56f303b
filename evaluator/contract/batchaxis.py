"""Which axis of each tensor carries the batch, followed from the image input to the output.

An honest classifier computes every image's answer from that image alone: the batch axis passes
through every operator untouched. A graph that reduces over it, contracts it in a MatMul, takes a
Softmax/ArgMax/TopK along it, or folds it into another axis and then works along that axis, lets an
image's answer depend on its batchmates (a batch recogniser does exactly that). Each tensor gets a
state: ``Batch(axis, inner)`` (the batch is ``axis``, the outer factor of it when ``inner`` > 1),
``Mixed`` (batchmates were combined, with the node that did it), ``Lost`` (an operator this module
does not follow), or None (the tensor does not depend on the input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import onnx

from evaluator.contract.graphview import Dim, GraphView, attribute


@dataclass(frozen=True)
class Batch:
    axis: int
    inner: int = 1  # the axis holds batch x inner elements, the batch outermost (a Reshape folded it)


@dataclass(frozen=True)
class Mixed:
    node: str
    op: str
    why: str
    strong: bool  # values of different images are combined (not only moved)


@dataclass(frozen=True)
class Lost:
    node: str
    op: str


State = Batch | Mixed | Lost | None
Rule = Callable[[GraphView, onnx.NodeProto, list[State]], "State | list[State]"]

ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Where", "Equal", "Less", "LessOrEqual",
    "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Not", "Mod", "PRelu", "BitShift", "Relu", "Sigmoid", "Tanh",
    "Cast", "CastLike", "Abs", "Neg", "Exp", "Log", "Sqrt", "Clip", "Dropout", "Identity", "LeakyRelu", "Elu", "Selu",
    "Celu", "HardSigmoid", "HardSwish", "Erf", "Gelu", "FastGelu", "Softplus", "Softsign", "Floor", "Ceil", "Round",
    "Sign", "Reciprocal", "IsNaN", "IsInf", "QuantizeLinear", "DequantizeLinear", "Mish", "ThresholdedRelu", "Sin",
    "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "BatchNormalization",
    "Expand", "Shrink", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
})
PER_IMAGE = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv",
                       "DepthToSpace", "SpaceToDepth", "Resize", "Upsample", "MaxRoiPool", "RoiAlign"})
POOLS = frozenset({"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
                   "InstanceNormalization", "LRN", "QLinearAveragePool", "QLinearGlobalAveragePool"})
REDUCTIONS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin"})
ALONG_AXIS = frozenset({"Softmax", "LogSoftmax", "Hardmax", "TopK", "CumSum", "LpNormalization"})
SHAPE_ONLY = frozenset({"Shape", "Size", "EyeLike", "ConstantOfShape"})


def _rank(view: GraphView, name: str) -> int | None:
    shape = view.shape(name)
    return None if shape is None else len(shape)


def _axes(view: GraphView, node: onnx.NodeProto, input_index: int) -> list[int] | None:
    """An axes list given as an attribute (older opsets) or as a constant input (newer); None when unknown."""
    if len(node.input) > input_index and node.input[input_index]:
        value = view.constant(node.input[input_index])
        return None if value is None else [int(v) for v in value.reshape(-1)]
    found = attribute(node, "axes")
    return [] if found is None else [int(v) for v in found]


def _mixed(view: GraphView, node: onnx.NodeProto, why: str, strong: bool = True) -> Mixed:
    return Mixed(view.node_name(node), node.op_type, why, strong)


def _lost(view: GraphView, node: onnx.NodeProto) -> Lost:
    return Lost(view.node_name(node), node.op_type)


def _elementwise(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    if len(states) == 1 or (sum(s is not None for s in states) == 1 and all(
            s is not None or _rank(view, name) == 0 for s, name in zip(states, node.input, strict=False))):
        first = next(s for s in states if s is not None)
        return first  # one tensor, or one beside scalars: nothing to align
    ranks = [_rank(view, name) if name else None for name in node.input]
    carriers = [(s, ranks[i]) for i, s in enumerate(states) if isinstance(s, Batch)]
    if any(rank is None for _, rank in carriers):
        return _lost(view, node)
    full = max([r for r in ranks if r is not None], default=0)
    aligned = {(s.axis + full - rank, s.inner) for s, rank in carriers if rank is not None}
    if len(aligned) > 1:
        return _mixed(view, node, "combines tensors whose batch axes differ: every image meets every other")
    axis, inner = aligned.pop()
    return Batch(axis, inner)


def _per_image(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state = states[0]
    if not isinstance(state, Batch):
        return _lost(view, node)
    if state.axis != 0 or state.inner != 1:
        return _mixed(view, node, f"{node.op_type} over a tensor whose batch is not the first axis")
    return state


def _pool(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state = states[0]
    if not isinstance(state, Batch):
        return _lost(view, node)
    if state.axis >= 2 or (state.axis == 1 and node.op_type == "LRN"):
        return _mixed(view, node, f"{node.op_type} pools across the batch axis")
    return state


def _reduction(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank = states[0], _rank(view, node.input[0])
    if not isinstance(state, Batch) or rank is None:
        return _lost(view, node)
    keep = bool(attribute(node, "keepdims", 1))
    if node.op_type in ("ArgMax", "ArgMin"):
        axes: list[int] | None = [int(attribute(node, "axis", 0))]
    else:
        axes = _axes(view, node, 1)
        if axes is None:
            return _lost(view, node)
        if not axes:
            if attribute(node, "noop_with_empty_axes", 0):
                return state
            axes = list(range(rank))
    axes = [a % rank for a in axes or []] if rank else []
    if state.axis in axes:
        return _mixed(view, node, f"{node.op_type} over the batch axis ({state.axis})")
    return Batch(state.axis if keep else state.axis - sum(a < state.axis for a in axes), state.inner)


def _along_axis(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State | list[State]:
    state, rank = states[0], _rank(view, node.input[0])
    if not isinstance(state, Batch) or rank is None:
        return _lost(view, node)
    opset = next((o.version for o in view.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if node.op_type == "CumSum":
        axes = _axes(view, node, 1)
        if not axes:
            return _lost(view, node)
        axis = axes[0]
    else:
        default = 1 if node.op_type in ("Softmax", "LogSoftmax", "Hardmax") and opset < 13 else -1
        axis = int(attribute(node, "axis", default))
    axis %= max(rank, 1)
    coerced = node.op_type in ("Softmax", "LogSoftmax", "Hardmax") and opset < 13  # flattened from axis on
    if state.axis == axis or (coerced and state.axis > axis) or (state.inner > 1 and state.axis == axis):
        return _mixed(view, node, f"{node.op_type} along the batch axis ({state.axis})")
    return [state] * len(node.output)


def _matmul(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    ra, rb = _rank(view, node.input[0]), _rank(view, node.input[1])
    if ra is None or rb is None:
        return _lost(view, node)
    full = max(ra, rb, 2)
    found: set[tuple[int, int]] = set()
    for state, rank, row in ((states[0], ra, True), (states[1], rb, False)):
        if not isinstance(state, Batch):
            continue
        contracted = (rank == 1) or (state.axis == rank - 1 if row else state.axis == rank - 2)
        if contracted:
            return _mixed(view, node, f"{node.op_type} sums over the batch axis (the batch is transposed into the "
                                      "contracted dimension)")
        found.add((state.axis + full - rank, state.inner))
    if len(found) > 1:
        return _mixed(view, node, f"{node.op_type} pairs every image with every other")
    axis, inner = found.pop()
    out_rank = full - (ra == 1) - (rb == 1)
    return Batch(min(axis, out_rank - 1), inner)


def _gemm(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    found: set[tuple[int, int]] = set()
    for index, flag in ((0, "transA"), (1, "transB")):
        state = states[index] if index < len(states) else None
        if not isinstance(state, Batch):
            continue
        transposed = bool(attribute(node, flag, 0))
        free_axis = (1 if transposed else 0) if index == 0 else (0 if transposed else 1)
        if state.axis != free_axis:
            return _mixed(view, node, "Gemm sums over the batch axis (the batch is the contracted dimension)")
        found.add((0 if index == 0 else 1, state.inner))
    if len(states) > 2 and isinstance(states[2], Batch):
        rank = _rank(view, node.input[2])
        if rank is None:
            return _lost(view, node)
        found.add((states[2].axis + 2 - rank, states[2].inner))
    if len(found) > 1:
        return _mixed(view, node, "Gemm pairs every image with every other")
    axis, inner = found.pop()
    return Batch(axis, inner)


def _normalise_from_axis(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State | list[State]:
    """LayerNormalization and its fused forms: statistics over the axes from ``axis`` on, per earlier index."""
    state, rank = states[0], _rank(view, node.input[0])
    if not isinstance(state, Batch) or rank is None or any(isinstance(s, Batch) for s in states[1:]):
        return _lost(view, node)
    if state.axis >= int(attribute(node, "axis", -1)) % max(rank, 1) or state.inner > 1:
        return _mixed(view, node, f"{node.op_type} normalises across the batch axis")
    return [state] * len(node.output)


def _einsum(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    """The batch's letter must reach the output (not summed away) and meet no other batch letter."""
    raw = attribute(node, "equation", b"")
    equation = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).replace(" ", "")
    if "..." in equation or "->" not in equation:
        return _lost(view, node)
    operands, output = equation.split("->")
    terms = operands.split(",")
    letters = {terms[i][s.axis] for i, s in enumerate(states) if isinstance(s, Batch) and s.axis < len(terms[i])}
    if len(terms) != len(states) or len(letters) != 1:
        return _lost(view, node) if len(letters) != 2 else _mixed(view, node, "Einsum pairs images")
    (letter,) = letters
    if letter not in output:
        return _mixed(view, node, "Einsum sums over the batch axis")
    inner = next(s.inner for s in states if isinstance(s, Batch))
    return Batch(output.index(letter), inner)


def _transpose(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank = states[0], _rank(view, node.input[0])
    if not isinstance(state, Batch):
        return _lost(view, node)
    perm = attribute(node, "perm")
    perm = list(perm) if perm is not None else (list(range(rank))[::-1] if rank is not None else None)
    if perm is None or state.axis not in perm:
        return _lost(view, node)
    return Batch(perm.index(state.axis), state.inner)


def _unsqueeze(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank, axes = states[0], _rank(view, node.input[0]), _axes(view, node, 1)
    if not isinstance(state, Batch) or rank is None or axes is None:
        return _lost(view, node)
    out_rank = rank + len(axes)
    inserted = sorted(a % out_rank for a in axes)
    kept = [i for i in range(out_rank) if i not in inserted]
    return Batch(kept[state.axis], state.inner) if state.axis < len(kept) else _lost(view, node)


def _squeeze(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, shape, axes = states[0], view.shape(node.input[0]), _axes(view, node, 1)
    if not isinstance(state, Batch) or shape is None or axes is None:
        return _lost(view, node)
    removed = [a % len(shape) for a in axes] if axes else [i for i, d in enumerate(shape) if d == 1]
    if state.axis in removed:
        return _lost(view, node)
    return Batch(state.axis - sum(a < state.axis for a in removed), state.inner)


def _flatten(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, shape = states[0], view.shape(node.input[0])
    if not isinstance(state, Batch) or shape is None:
        return _lost(view, node)
    split = int(attribute(node, "axis", 1)) % (len(shape) + 1)
    return _merge(view, node, state, shape, [list(range(split)), list(range(split, len(shape)))])


def _merge(view: GraphView, node: onnx.NodeProto, state: Batch, shape: Sequence[Dim],
           groups: list[list[int]]) -> State:
    """Axes merged in groups (row-major): the batch stays the outer factor of its group, or batchmates fold."""
    for out_axis, group in enumerate(groups):
        if state.axis not in group:
            continue
        before = group[:group.index(state.axis)]
        after = group[group.index(state.axis) + 1:]
        if any(shape[i] != 1 for i in before):
            return _mixed(view, node, f"{node.op_type} folds the batch inside another axis", strong=False)
        if not all(isinstance(shape[i], int) for i in after):
            return _lost(view, node)
        return Batch(out_axis, state.inner * _product([shape[i] for i in after]))
    return _lost(view, node)


COPIED, EXACT = -2, -3  # target dims: the input's batch-axis dim copied (0), or exactly the image batch


def _reshape_target(view: GraphView, node: onnx.NodeProto, state: Batch, shape: Sequence[Dim]) -> list[int] | None:
    """The Reshape's target with the batch marked: a constant (0 and -1 resolved as onnx does), else the shape
    onnx's inference propagated (a target computed from Shape, as ``x.view(x.size(0), -1)`` exports)."""
    target = view.constant(node.input[1])
    batch = view.batch_dim
    if target is not None:
        allowzero = bool(attribute(node, "allowzero", 0))
        dims = [int(v) for v in target.reshape(-1)]
        return [(COPIED if i == state.axis else int(shape[i] or 0)) if d == 0 and not allowzero and i < len(shape)
                else d for i, d in enumerate(dims)]
    out = view.shape(node.output[0])
    if out is None:
        return None
    out = [None if isinstance(d, str) and d != batch else d for d in out]  # inference's own unk__ symbols
    if sum(d is None for d in out) > 1:
        return None
    return [-1 if d is None else EXACT if isinstance(d, str) else int(d) for d in out]  # one unknown: inferred


def _reshape(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    """Row-major reshape: the batch is at output axis j when the dims before it multiply to the same as before."""
    state, shape = states[0], view.shape(node.input[0])
    if not isinstance(state, Batch) or shape is None:
        return _lost(view, node)
    if not all(isinstance(d, int) for i, d in enumerate(shape) if i != state.axis):
        return _lost(view, node)
    dims = _reshape_target(view, node, state, shape)
    if dims is None or not all(isinstance(d, int) for d in dims):
        return _lost(view, node)
    before, per_batch = _product(shape[:state.axis]), state.inner * _product(shape[state.axis + 1:])
    fixed = view.batch_dim
    prefix = 1
    for j, d in enumerate(dims):
        if prefix == before:
            if d == COPIED:
                return Batch(j, state.inner)
            if d == EXACT:  # exactly the image batch, with the same dims before it: the rest is per image
                _note_shape(view, node.output[0], dims, j, before * per_batch)
                return Batch(j)
            tail = dims[j + 1:]
            if any(x < 0 for x in tail):
                return _lost(view, node)
            rest = _product(tail)
            if d == -1 and rest and per_batch % rest == 0:
                if per_batch == rest:
                    _note_shape(view, node.output[0], dims, j, before * per_batch)
                return Batch(j, per_batch // rest)
            if isinstance(fixed, int) and d > 0 and d % fixed == 0 and (d // fixed) * rest == per_batch:
                return Batch(j, d // fixed)
        if d < 0:
            break
        prefix *= d
        if prefix > before:
            break
    return _mixed(view, node, "Reshape folds the batch into another axis", strong=False)


def _note_shape(view: GraphView, name: str, dims: list[int], batch_axis: int, elements_per_image: int) -> None:
    """Where onnx's inference left a dim unknown (unk__), the shape this module resolved, for the next Reshape."""
    known = _product([d for i, d in enumerate(dims) if i != batch_axis and d >= 0])
    resolved: list[Dim] = [d if d >= 0 else (elements_per_image // known if known else None) for d in dims]
    resolved[batch_axis] = view.batch_dim
    view.shapes[name] = resolved


def _product(dims: Sequence[Dim]) -> int:
    """The product of dims known to be ints (callers check)."""
    total = 1
    for d in dims:
        total *= d if isinstance(d, int) else 1
    return total


def _axis_op(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State | list[State]:
    """Concat and Split: fine along any axis but the batch's."""
    carriers = [s for s in states if isinstance(s, Batch)]
    rank = _rank(view, node.input[0])
    if rank is None or len(set(carriers)) > 1:
        return _lost(view, node)
    state = carriers[0]
    axis = int(attribute(node, "axis", 0)) % max(rank, 1)
    if axis == state.axis:
        return _mixed(view, node, f"{node.op_type} along the batch axis", strong=False)
    return [state] * len(node.output)


def _slice(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank = states[0], _rank(view, node.input[0])
    if not isinstance(state, Batch) or rank is None or any(isinstance(s, Batch) for s in states[1:]):
        return _lost(view, node)
    if len(node.input) == 1:  # opset < 10: attributes
        starts, ends, axes = (attribute(node, key) for key in ("starts", "ends", "axes"))
        steps: Any = None
    else:
        starts, ends = (view.constant(node.input[i]) for i in (1, 2))
        axes, steps = (view.constant(node.input[i]) if len(node.input) > i and node.input[i] else None
                       for i in (3, 4))
    if starts is None or ends is None:
        return _lost(view, node)
    starts_list, ends_list = [int(v) for v in list(starts)], [int(v) for v in list(ends)]
    axes_list = [int(v) % rank for v in list(axes)] if axes is not None else list(range(len(starts_list)))
    steps_list = [int(v) for v in list(steps)] if steps is not None else [1] * len(starts_list)
    for start, end, axis, step in zip(starts_list, ends_list, axes_list, steps_list, strict=False):
        if axis == state.axis and not (start == 0 and step == 1 and end >= 2**31 - 1):
            return _mixed(view, node, "Slice cuts or reorders the batch", strong=False)
    return state


def _gather(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    data, indices = states[0], states[1] if len(states) > 1 else None
    rank, index_rank = _rank(view, node.input[0]), _rank(view, node.input[1])
    if rank is None or index_rank is None:
        return _lost(view, node)
    axis = int(attribute(node, "axis", 0)) % max(rank, 1)
    if isinstance(data, Batch):
        if isinstance(indices, Batch) or axis == data.axis:
            return _mixed(view, node, "Gather picks along the batch axis", strong=False)
        return Batch(data.axis if data.axis < axis else data.axis + index_rank - 1, data.inner)
    if isinstance(indices, Batch):  # rows of a constant picked per image: an embedding (or a lookup)
        return Batch(axis + indices.axis, indices.inner)
    return _lost(view, node)


def _shape_only(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    return None


def _onehot(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank = states[0], _rank(view, node.input[0])
    if not isinstance(state, Batch) or rank is None:
        return _lost(view, node)
    axis = int(attribute(node, "axis", -1)) % (rank + 1)
    return Batch(state.axis if state.axis < axis else state.axis + 1, state.inner)


def _pad_like(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    """Pad and Tile: harmless unless they add to the batch axis."""
    state, rank = states[0], _rank(view, node.input[0])
    if not isinstance(state, Batch) or rank is None:
        return _lost(view, node)
    if len(node.input) > 1:
        value = view.constant(node.input[1])
        amounts = None if value is None else [int(v) for v in value.reshape(-1)]
    else:
        found = attribute(node, "pads")
        amounts = None if found is None else [int(v) for v in found]
    if amounts is None:
        return _lost(view, node)
    if node.op_type == "Tile":
        changed = amounts[state.axis] != 1 if state.axis < len(amounts) else True
    else:
        pad_axes = _axes(view, node, 3) or list(range(rank))
        half = len(amounts) // 2
        changed = any(axis % rank == state.axis and (amounts[i] or amounts[i + half])
                      for i, axis in enumerate(pad_axes[:half]))
    return _mixed(view, node, f"{node.op_type} adds to the batch axis", strong=False) if changed else state


RULES: dict[str, Rule] = {
    **{op: _elementwise for op in ELEMENTWISE},
    **{op: _per_image for op in PER_IMAGE},
    **{op: _pool for op in POOLS},
    **{op: _reduction for op in REDUCTIONS},
    **{op: _along_axis for op in ALONG_AXIS},
    **{op: _shape_only for op in SHAPE_ONLY},
    "MatMul": _matmul, "MatMulInteger": _matmul, "QLinearMatMul": _matmul, "Gemm": _gemm,
    "Transpose": _transpose, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Flatten": _flatten,
    "Reshape": _reshape, "Concat": _axis_op, "Split": _axis_op, "Slice": _slice, "Gather": _gather,
    "OneHot": _onehot, "Pad": _pad_like, "Tile": _pad_like, "Einsum": _einsum,
    "LayerNormalization": _normalise_from_axis, "SimplifiedLayerNormalization": _normalise_from_axis,
    "SkipLayerNormalization": _normalise_from_axis,
}


def _node_states(view: GraphView, index: int, states: dict[str, State]) -> list[State]:
    node, (names, outputs) = view.nodes[index], view.io[index]
    inputs = [states.get(name) if name else None for name in names]
    if all(s is None for s in inputs) and index not in view.with_subgraphs:
        return [None] * len(outputs)  # constants, and shapes computed from the input's shape
    for kind in (Mixed, Lost):
        first = next((s for s in inputs if isinstance(s, kind)), None)
        if first is not None:
            return [first] * len(outputs)
    if index in view.with_subgraphs and any(name in view.dependent for name in outputs):
        return [_lost(view, node)] * len(outputs)  # If/Loop/Scan bodies are not followed
    if not any(isinstance(s, Batch) for s in inputs):
        return [None] * len(outputs)
    rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx", "com.microsoft") else None
    if rule is None:
        return [_lost(view, node)] * len(node.output)
    found = rule(view, node, inputs)
    return found if isinstance(found, list) else [found] * len(node.output)


def track_batch(view: GraphView) -> dict[str, State]:
    """Every tensor's batch state, the image input's batch being its first axis."""
    states: dict[str, State] = {name: Batch(0) for name in view.image_inputs}
    for index, (_, outputs) in enumerate(view.io):
        for name, state in zip(outputs, _node_states(view, index, states), strict=False):
            if name:
                states[name] = state
    return states
