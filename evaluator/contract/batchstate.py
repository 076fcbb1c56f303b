"""The batch state of a tensor, and what every batch-axis rule asks of the graph.

Each tensor gets a state: ``Batch(axis, inner)`` (the batch is ``axis``, the outer factor of it when
``inner`` > 1), ``Mixed`` (batchmates were combined, with the node that did it), ``Lost`` (an operator
the rules do not follow), or None (the tensor does not depend on the input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from evaluator.contract.graphview import GraphView, attribute


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


def rank_of(view: GraphView, name: str) -> int | None:
    shape = view.shape(name)
    return None if shape is None else len(shape)


def axes_of(view: GraphView, node: onnx.NodeProto, input_index: int) -> list[int] | None:
    """An axes list given as an attribute (older opsets) or as a constant input (newer); None when unknown."""
    if len(node.input) > input_index and node.input[input_index]:
        value = view.constant(node.input[input_index])
        return None if value is None else [int(v) for v in value.reshape(-1)]
    found = attribute(node, "axes")
    return [] if found is None else [int(v) for v in found]


def mixed(view: GraphView, node: onnx.NodeProto, why: str, strong: bool = True) -> Mixed:
    return Mixed(view.node_name(node), node.op_type, why, strong)


def lost(view: GraphView, node: onnx.NodeProto) -> Lost:
    return Lost(view.node_name(node), node.op_type)
