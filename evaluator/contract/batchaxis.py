"""Which axis of each tensor carries the batch, followed from the image input to the output.

An honest classifier computes every image's answer from that image alone: the batch axis passes
through every operator untouched. A graph that reduces over it, contracts it in a MatMul, takes a
Softmax/ArgMax/TopK along it, or folds it into another axis and then works along that axis, lets an
image's answer depend on its batchmates (a batch recogniser does exactly that). Each tensor gets a
state (``batchstate``); the operators that combine values are judged here, those that move, fold, cut
or pick axes in ``axismoves``.
"""

from __future__ import annotations

import onnx

from evaluator.contract.axismoves import MOVE_RULES
from evaluator.contract.batchstate import Batch, Lost, Mixed, Rule, State, axes_of, lost, mixed, rank_of
from evaluator.contract.graphview import GraphView, attribute

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


def _elementwise(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    if len(states) == 1 or (sum(s is not None for s in states) == 1 and all(
            s is not None or rank_of(view, name) == 0 for s, name in zip(states, node.input, strict=False))):
        first = next(s for s in states if s is not None)
        return first  # one tensor, or one beside scalars: nothing to align
    ranks = [rank_of(view, name) if name else None for name in node.input]
    carriers = [(s, ranks[i]) for i, s in enumerate(states) if isinstance(s, Batch)]
    if any(rank is None for _, rank in carriers):
        return lost(view, node)
    full = max([r for r in ranks if r is not None], default=0)
    aligned = {(s.axis + full - rank, s.inner) for s, rank in carriers if rank is not None}
    if len(aligned) > 1:
        return mixed(view, node, "combines tensors whose batch axes differ: every image meets every other")
    axis, inner = aligned.pop()
    return Batch(axis, inner)


def _per_image(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state = states[0]
    if not isinstance(state, Batch):
        return lost(view, node)
    if state.axis != 0 or state.inner != 1:
        return mixed(view, node, f"{node.op_type} over a tensor whose batch is not the first axis")
    return state


def _pool(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state = states[0]
    if not isinstance(state, Batch):
        return lost(view, node)
    if state.axis >= 2 or (state.axis == 1 and node.op_type == "LRN"):
        return mixed(view, node, f"{node.op_type} pools across the batch axis")
    return state


def _reduction(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank = states[0], rank_of(view, node.input[0])
    if not isinstance(state, Batch) or rank is None:
        return lost(view, node)
    keep = bool(attribute(node, "keepdims", 1))
    if node.op_type in ("ArgMax", "ArgMin"):
        axes: list[int] | None = [int(attribute(node, "axis", 0))]
    else:
        axes = axes_of(view, node, 1)
        if axes is None:
            return lost(view, node)
        if not axes:
            if attribute(node, "noop_with_empty_axes", 0):
                return state
            axes = list(range(rank))
    axes = [a % rank for a in axes or []] if rank else []
    if state.axis in axes:
        return mixed(view, node, f"{node.op_type} over the batch axis ({state.axis})")
    return Batch(state.axis if keep else state.axis - sum(a < state.axis for a in axes), state.inner)


def _along_axis(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State | list[State]:
    state, rank = states[0], rank_of(view, node.input[0])
    if not isinstance(state, Batch) or rank is None:
        return lost(view, node)
    opset = next((o.version for o in view.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if node.op_type == "CumSum":
        axes = axes_of(view, node, 1)
        if not axes:
            return lost(view, node)
        axis = axes[0]
    else:
        default = 1 if node.op_type in ("Softmax", "LogSoftmax", "Hardmax") and opset < 13 else -1
        axis = int(attribute(node, "axis", default))
    axis %= max(rank, 1)
    coerced = node.op_type in ("Softmax", "LogSoftmax", "Hardmax") and opset < 13  # flattened from axis on
    if state.axis == axis or (coerced and state.axis > axis) or (state.inner > 1 and state.axis == axis):
        return mixed(view, node, f"{node.op_type} along the batch axis ({state.axis})")
    return [state] * len(node.output)


def _matmul(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    ra, rb = rank_of(view, node.input[0]), rank_of(view, node.input[1])
    if ra is None or rb is None:
        return lost(view, node)
    full = max(ra, rb, 2)
    found: set[tuple[int, int]] = set()
    for state, rank, row in ((states[0], ra, True), (states[1], rb, False)):
        if not isinstance(state, Batch):
            continue
        contracted = (rank == 1) or (state.axis == rank - 1 if row else state.axis == rank - 2)
        if contracted:
            return mixed(view, node, f"{node.op_type} sums over the batch axis (the batch is transposed into the "
                                      "contracted dimension)")
        found.add((state.axis + full - rank, state.inner))
    if len(found) > 1:
        return mixed(view, node, f"{node.op_type} pairs every image with every other")
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
            return mixed(view, node, "Gemm sums over the batch axis (the batch is the contracted dimension)")
        found.add((0 if index == 0 else 1, state.inner))
    if len(states) > 2 and isinstance(states[2], Batch):
        rank = rank_of(view, node.input[2])
        if rank is None:
            return lost(view, node)
        found.add((states[2].axis + 2 - rank, states[2].inner))
    if len(found) > 1:
        return mixed(view, node, "Gemm pairs every image with every other")
    axis, inner = found.pop()
    return Batch(axis, inner)


def _normalise_from_axis(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State | list[State]:
    """LayerNormalization and its fused forms: statistics over the axes from ``axis`` on, per earlier index."""
    state, rank = states[0], rank_of(view, node.input[0])
    if not isinstance(state, Batch) or rank is None or any(isinstance(s, Batch) for s in states[1:]):
        return lost(view, node)
    if state.axis >= int(attribute(node, "axis", -1)) % max(rank, 1) or state.inner > 1:
        return mixed(view, node, f"{node.op_type} normalises across the batch axis")
    return [state] * len(node.output)


def _einsum(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    """The batch's letter must reach the output (not summed away) and meet no other batch letter."""
    raw = attribute(node, "equation", b"")
    equation = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).replace(" ", "")
    if "..." in equation or "->" not in equation:
        return lost(view, node)
    operands, output = equation.split("->")
    terms = operands.split(",")
    letters = {terms[i][s.axis] for i, s in enumerate(states) if isinstance(s, Batch) and s.axis < len(terms[i])}
    if len(terms) != len(states) or len(letters) != 1:
        return lost(view, node) if len(letters) != 2 else mixed(view, node, "Einsum pairs images")
    (letter,) = letters
    if letter not in output:
        return mixed(view, node, "Einsum sums over the batch axis")
    inner = next(s.inner for s in states if isinstance(s, Batch))
    return Batch(output.index(letter), inner)


def _shape_only(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    return None



RULES: dict[str, Rule] = {
    **{op: _elementwise for op in ELEMENTWISE},
    **{op: _per_image for op in PER_IMAGE},
    **{op: _pool for op in POOLS},
    **{op: _reduction for op in REDUCTIONS},
    **{op: _along_axis for op in ALONG_AXIS},
    **{op: _shape_only for op in SHAPE_ONLY},
    "MatMul": _matmul, "MatMulInteger": _matmul, "QLinearMatMul": _matmul, "Gemm": _gemm, "Einsum": _einsum,
    "LayerNormalization": _normalise_from_axis, "SimplifiedLayerNormalization": _normalise_from_axis,
    "SkipLayerNormalization": _normalise_from_axis,
    **MOVE_RULES,
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
        return [lost(view, node)] * len(outputs)  # If/Loop/Scan bodies are not followed
    if not any(isinstance(s, Batch) for s in inputs):
        return [None] * len(outputs)
    rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx", "com.microsoft") else None
    if rule is None:
        return [lost(view, node)] * len(node.output)
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
