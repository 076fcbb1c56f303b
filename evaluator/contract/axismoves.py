"""The batch axis through operators that move, fold, cut or pick axes: Transpose, Unsqueeze, Squeeze, Flatten,
Reshape, Concat and Split, Slice, Gather, OneHot, Pad and Tile.

The batch survives them where it stays one axis (or the outer factor of one), whole and in order; a
Reshape or Flatten that folds it inside another axis, or a cut, pick or pad along it, marks the
tensor ``Mixed`` (weakly: values are moved, not yet combined) for the combining rules to judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx

from evaluator.contract.batchstate import Batch, Rule, State, axes_of, lost, mixed, rank_of
from evaluator.contract.graphview import Dim, GraphView, attribute


def _transpose(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank = states[0], rank_of(view, node.input[0])
    if not isinstance(state, Batch):
        return lost(view, node)
    perm = attribute(node, "perm")
    perm = list(perm) if perm is not None else (list(range(rank))[::-1] if rank is not None else None)
    if perm is None or state.axis not in perm:
        return lost(view, node)
    return Batch(perm.index(state.axis), state.inner)


def _unsqueeze(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank, axes = states[0], rank_of(view, node.input[0]), axes_of(view, node, 1)
    if not isinstance(state, Batch) or rank is None or axes is None:
        return lost(view, node)
    out_rank = rank + len(axes)
    inserted = sorted(a % out_rank for a in axes)
    kept = [i for i in range(out_rank) if i not in inserted]
    return Batch(kept[state.axis], state.inner) if state.axis < len(kept) else lost(view, node)


def _squeeze(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, shape, axes = states[0], view.shape(node.input[0]), axes_of(view, node, 1)
    if not isinstance(state, Batch) or shape is None or axes is None:
        return lost(view, node)
    removed = [a % len(shape) for a in axes] if axes else [i for i, d in enumerate(shape) if d == 1]
    if state.axis in removed:
        return lost(view, node)
    return Batch(state.axis - sum(a < state.axis for a in removed), state.inner)


def _flatten(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, shape = states[0], view.shape(node.input[0])
    if not isinstance(state, Batch) or shape is None:
        return lost(view, node)
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
            return mixed(view, node, f"{node.op_type} folds the batch inside another axis", strong=False)
        if not all(isinstance(shape[i], int) for i in after):
            return lost(view, node)
        return Batch(out_axis, state.inner * _product([shape[i] for i in after]))
    return lost(view, node)


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
        return lost(view, node)
    if not all(isinstance(d, int) for i, d in enumerate(shape) if i != state.axis):
        return lost(view, node)
    dims = _reshape_target(view, node, state, shape)
    if dims is None or not all(isinstance(d, int) for d in dims):
        return lost(view, node)
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
                return lost(view, node)
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
    return mixed(view, node, "Reshape folds the batch into another axis", strong=False)


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
    rank = rank_of(view, node.input[0])
    if rank is None or len(set(carriers)) > 1:
        return lost(view, node)
    state = carriers[0]
    axis = int(attribute(node, "axis", 0)) % max(rank, 1)
    if axis == state.axis:
        return mixed(view, node, f"{node.op_type} along the batch axis", strong=False)
    return [state] * len(node.output)


def _slice(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank = states[0], rank_of(view, node.input[0])
    if not isinstance(state, Batch) or rank is None or any(isinstance(s, Batch) for s in states[1:]):
        return lost(view, node)
    if len(node.input) == 1:  # opset < 10: attributes
        starts, ends, axes = (attribute(node, key) for key in ("starts", "ends", "axes"))
        steps: Any = None
    else:
        starts, ends = (view.constant(node.input[i]) for i in (1, 2))
        axes, steps = (view.constant(node.input[i]) if len(node.input) > i and node.input[i] else None
                       for i in (3, 4))
    if starts is None or ends is None:
        return lost(view, node)
    starts_list, ends_list = [int(v) for v in list(starts)], [int(v) for v in list(ends)]
    axes_list = [int(v) % rank for v in list(axes)] if axes is not None else list(range(len(starts_list)))
    steps_list = [int(v) for v in list(steps)] if steps is not None else [1] * len(starts_list)
    for start, end, axis, step in zip(starts_list, ends_list, axes_list, steps_list, strict=False):
        if axis == state.axis and not (start == 0 and step == 1 and end >= 2**31 - 1):
            return mixed(view, node, "Slice cuts or reorders the batch", strong=False)
    return state


def _gather(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    data, indices = states[0], states[1] if len(states) > 1 else None
    rank, index_rank = rank_of(view, node.input[0]), rank_of(view, node.input[1])
    if rank is None or index_rank is None:
        return lost(view, node)
    axis = int(attribute(node, "axis", 0)) % max(rank, 1)
    if isinstance(data, Batch):
        if isinstance(indices, Batch) or axis == data.axis:
            return mixed(view, node, "Gather picks along the batch axis", strong=False)
        return Batch(data.axis if data.axis < axis else data.axis + index_rank - 1, data.inner)
    if isinstance(indices, Batch):  # rows of a constant picked per image: an embedding (or a lookup)
        return Batch(axis + indices.axis, indices.inner)
    return lost(view, node)


def _onehot(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    state, rank = states[0], rank_of(view, node.input[0])
    if not isinstance(state, Batch) or rank is None:
        return lost(view, node)
    axis = int(attribute(node, "axis", -1)) % (rank + 1)
    return Batch(state.axis if state.axis < axis else state.axis + 1, state.inner)


def _pad_like(view: GraphView, node: onnx.NodeProto, states: list[State]) -> State:
    """Pad and Tile: harmless unless they add to the batch axis."""
    state, rank = states[0], rank_of(view, node.input[0])
    if not isinstance(state, Batch) or rank is None:
        return lost(view, node)
    if len(node.input) > 1:
        value = view.constant(node.input[1])
        amounts = None if value is None else [int(v) for v in value.reshape(-1)]
    else:
        found = attribute(node, "pads")
        amounts = None if found is None else [int(v) for v in found]
    if amounts is None:
        return lost(view, node)
    if node.op_type == "Tile":
        changed = amounts[state.axis] != 1 if state.axis < len(amounts) else True
    else:
        pad_axes = axes_of(view, node, 3) or list(range(rank))
        half = len(amounts) // 2
        changed = any(axis % rank == state.axis and (amounts[i] or amounts[i + half])
                      for i, axis in enumerate(pad_axes[:half]))
    return mixed(view, node, f"{node.op_type} adds to the batch axis", strong=False) if changed else state


MOVE_RULES: dict[str, Rule] = {
    "Transpose": _transpose, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Flatten": _flatten, "Reshape": _reshape,
    "Concat": _axis_op, "Split": _axis_op, "Slice": _slice, "Gather": _gather, "OneHot": _onehot, "Pad": _pad_like,
    "Tile": _pad_like,
}
