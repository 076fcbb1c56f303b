"""A look inside the graph: static evidence that a submission stores answers instead of computing them.

Three shapes of cheat leave marks in the graph itself, whatever images it is later shown:

- **a lookup**: a constant table with a dimension of the order of a test set (``TABLE_ROWS``) compared
  with the input's features (a difference then a norm, or a MatMul/Gemm/Conv against the table), the
  nearest row chosen (ArgMin/ArgMax/TopK, or a Hardmax/Softmax over the rows), and a stored row picked
  by it (Gather, or a one-hot MatMul) on the way to the output;
- **stored labels**: a constant of that length whose values are the labels 0..9 (every class present),
  or a float table of one-hot rows; when the scoring knows the test labels, ``match_labels`` says which
  fraction of them the constant repeats in order;
- **batchmates read**: the batch axis, followed from the input to the output (``batchaxis``), reduced,
  contracted, sorted along or folded into another axis before the output.

Each finding is evidence for a reviewer, never a problem by itself: ``strong`` means the whole path
(input, table, choice, stored answer, output) is in the graph, or an output computed across the batch,
or stored labels that match the test labels; ``note`` a weaker sign. Honest classifiers show none
(the samples, the shared ResNets fp32 and fp16, a converted Keras model: tests/contract/test_evidence.py).
The analysis is static and bounded; anything it cannot read becomes a note, never an exception.
What it cannot see: a lookup inside an If/Loop body, a table computed at run time from an innocent-looking
seed, a hash computed with operators it does not follow, or a network trained on the test set itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from evaluator.contract.batchaxis import track_batch
from evaluator.contract.batchstate import Batch, Lost, Mixed
from evaluator.contract.graphview import MAX_FOLD_ELEMENTS, Dim, GraphView, attribute
from evaluator.contract.spec import NUM_CLASSES

# "Of the order of a test set": CIFAR-10's test set is 10,000 images and its training set 50,000; a table
# of at least 100 rows is a subset worth memorising, and honest CIFAR-10 graphs choose among 10 classes.
# No small upper bound: a table padded past it, or one holding every flipped and shifted variant of the
# test and training images (60,000 x 50), is a lookup all the same (an attack padded one to 100,001 rows).
TABLE_ROWS = (100, 5_000_000)
LABEL_MATCH_STRONG = 0.5  # stored labels repeating at least half the test labels in order (chance: ~0.1)
SELECTORS = frozenset({"ArgMin", "ArgMax", "TopK", "Hardmax", "Softmax"})
COMPARISONS = frozenset({"Sub", "Add", "Mul", "MatMul", "Gemm", "Conv", "Einsum"})
BACK_THROUGH = COMPARISONS | frozenset({
    "Abs", "Neg", "Div", "Pow", "Sqrt", "Exp", "Log", "Relu", "Clip", "Cast", "Identity", "Transpose", "Reshape",
    "Squeeze", "Unsqueeze", "Flatten", "Concat", "ReduceSum", "ReduceL1", "ReduceL2", "ReduceSumSquare",
    "ReduceMean", "ReduceMax", "ReduceMin", "Max", "Min", "Reciprocal"})
FORWARD_THROUGH = frozenset({"Cast", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Transpose", "OneHot",
                             "Equal", "Where", "Add", "Sub", "Mul", "Div", "Concat", "Slice", "Gather"})
PICKS = frozenset({"Gather", "GatherElements", "GatherND", "MatMul", "Gemm", "Einsum", "Mul"})
SEARCH_DEPTH = 12  # nodes walked from a selector, each way
MAX_FINDINGS = 20  # a hostile graph full of decoys gets a bounded list


@dataclass(frozen=True)
class Finding:
    """One piece of evidence, with where it is in the graph."""

    kind: str  # lookup | labels | batch | analysis
    strength: str  # strong | note
    nodes: list[str] = field(default_factory=list)
    tensor: str = ""  # the stored table (or labels), when there is one
    shape: list[int] = field(default_factory=list)
    size: int = 0
    explanation: str = ""
    label_match: float | None = None  # fraction of the test labels the stored labels repeat in order

    @property
    def line(self) -> str:
        table = f" [{self.tensor} {tuple(self.shape)}]" if self.tensor else ""
        where = ", ".join(self.nodes[:4]) + (" ..." if len(self.nodes) > 4 else "")
        return f"{self.strength}: {self.kind} at {where or '-'}{table}: {self.explanation}"


class GraphCheck(NamedTuple):
    """The graph inspection as one named check of the audit."""

    name: str
    verdict: str  # pass | fail
    figure: float  # strong findings
    threshold: float
    evidence: str


def graph_check(findings: list[Finding]) -> GraphCheck:
    """Fails on any strong finding: the result goes under review with the findings, never disqualified by this."""
    strong = [f for f in findings if f.strength == "strong"]
    notes = len(findings) - len(strong)
    if not strong:
        return GraphCheck("graph inspection", "pass", 0.0, 0.0, f"no strong evidence of stored answers ({notes} "
                          "note(s))")
    return GraphCheck("graph inspection", "fail", float(len(strong)), 0.0, "; ".join(f.line for f in strong[:3]))


def find_evidence(model: onnx.ModelProto) -> list[Finding]:
    """Every finding in the model's top-level graph; never raises (a failure of the analysis is a note)."""
    try:
        view = GraphView(model)
        findings = []
        try:
            view.infer_shapes()
        except Exception as exc:  # noqa: BLE001 - onnx's inference raises several types on odd graphs
            findings.append(_analysis_note(f"shape inference failed ({type(exc).__name__}); shapes are partial"))
        findings += _lookups(view) + _label_tables(view) + _batch_findings(view)
        return findings[:MAX_FINDINGS]
    except Exception as exc:  # noqa: BLE001 - a hostile graph must not crash the check
        return [_analysis_note(f"the graph inspection stopped ({type(exc).__name__}: {str(exc)[:120]})")]


def _analysis_note(text: str) -> Finding:
    return Finding("analysis", "note", explanation=text)


def _in_range(value: int) -> bool:
    return TABLE_ROWS[0] <= value <= TABLE_ROWS[1]


def _const_shape(view: GraphView, name: str) -> list[Dim] | None:
    value = view.constant(name)
    return list(value.shape) if value is not None else view.shape(name)


def _has_rows(shape: list[Dim] | None, rows: int | None) -> bool:
    return shape is not None and any(isinstance(d, int) and (d == rows if rows else _in_range(d)) for d in shape)


class _Table(NamedTuple):
    node: str
    tensor: str
    shape: list[Dim]
    reaches_output: bool


def _selected_rows(view: GraphView, node: onnx.NodeProto) -> int | str | None:
    """The size of the axis a selector chooses along: an int, None when unknown, "skip" when not a table's."""
    shape = view.shape(node.input[0])
    if shape is None:
        return None
    opset = next((o.version for o in view.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    default = 0 if node.op_type in ("ArgMin", "ArgMax") else (1 if opset < 13 and node.op_type != "TopK" else -1)
    axis = int(attribute(node, "axis", default))
    if not -len(shape) <= axis < len(shape):
        return "skip"
    dim = shape[axis]
    if dim is None:
        return None
    return dim if isinstance(dim, int) and _in_range(dim) else "skip"


def _walk(view: GraphView, start: str, forward: bool) -> list[tuple[onnx.NodeProto, str]]:
    """Nodes within SEARCH_DEPTH of ``start`` along input-dependent tensors, with the tensor that led there."""
    seen, found, frontier = {start}, [], [start]
    for _ in range(SEARCH_DEPTH):
        following = []
        for name in frontier:
            nodes = view.consumers.get(name, []) if forward else [view.producer[name]] if name in view.producer else []
            for node in nodes:
                found.append((node, name))
                allowed = FORWARD_THROUGH if forward else BACK_THROUGH
                if node.op_type not in allowed:
                    continue
                for item in (node.output if forward else node.input):
                    if item and item in view.dependent and item not in seen:
                        seen.add(item)
                        following.append(item)
        frontier = following
    return found


def _compared_table(view: GraphView, start: str, rows: int | None) -> _Table | None:
    """The largest constant with a dimension of ``rows`` that the selector's scores were compared against."""
    best: _Table | None = None
    for node, _ in _walk(view, start, forward=False):
        if node.op_type not in COMPARISONS or not any(name in view.dependent for name in node.input):
            continue
        for name in node.input:
            if not name or name in view.dependent:
                continue
            shape = _const_shape(view, name)
            if _has_rows(shape, rows) and (best is None or _size(shape) > _size(best.shape)):
                best = _Table(view.node_name(node), name, shape or [], False)
    return best


def _picked_table(view: GraphView, selector: onnx.NodeProto, rows: int | None) -> _Table | None:
    """A constant with ``rows`` rows from which the selector's choice picks (Gather, or a one-hot MatMul)."""
    chosen = selector.output[1] if selector.op_type == "TopK" and len(selector.output) > 1 else selector.output[0]
    for node, via in _walk(view, chosen, forward=True):
        if node.op_type not in PICKS:
            continue
        if node.op_type.startswith("Gather") and (len(node.input) < 2 or node.input[1] != via):
            continue
        for name in node.input:
            if name and name not in view.dependent:
                shape = _const_shape(view, name)
                if _has_rows(shape, rows):
                    reaches = any(out in view.reaching for out in node.output)
                    return _Table(view.node_name(node), name, shape or [], reaches)
    return None


def _size(shape: list[Dim] | None) -> int:
    total = 1
    for dim in shape or []:
        total *= dim if isinstance(dim, int) else 1
    return total


def _lookups(view: GraphView) -> list[Finding]:
    findings = []
    for node in view.nodes:
        if node.op_type not in SELECTORS or node.domain not in ("", "ai.onnx") or not node.input \
                or node.input[0] not in view.dependent:
            continue
        rows = _selected_rows(view, node)
        if rows == "skip":
            continue
        known = rows if isinstance(rows, int) else None
        compared = _compared_table(view, node.input[0], known)
        picked = _picked_table(view, node, known)
        soft = node.op_type == "Softmax"
        if (compared is None and picked is None) or (soft and (compared is None or picked is None)):
            continue
        findings.append(_lookup_finding(view, node, known, compared, picked, soft))
    return findings


def _lookup_finding(view: GraphView, selector: onnx.NodeProto, rows: int | None, compared: _Table | None,
                    picked: _Table | None, soft: bool) -> Finding:
    nodes = [t.node for t in (compared,) if t] + [view.node_name(selector)] + [t.node for t in (picked,) if t]
    stored = picked.tensor if picked else ""
    labels = _labels_of(view.constant(stored)) if stored else None
    complete = compared is not None and picked is not None and picked.reaches_output
    strong = complete and (labels is not None or not soft)
    parts = [f"{selector.op_type} over {rows if rows else 'a table'} rows"]
    if compared:
        parts.insert(0, f"input features compared with {compared.tensor} {tuple(compared.shape)}")
    if picked:
        what = "stored labels" if labels is not None else "a stored row"
        parts.append(f"picks {what} from {picked.tensor} {tuple(picked.shape)}"
                     + (" on the way to the output" if picked.reaches_output else ""))
    if not complete:
        parts.append("(part of a lookup: no full path from input to output)")
    table = picked or compared
    assert table is not None
    return Finding("lookup", "strong" if strong else "note", nodes, table.tensor, [d if isinstance(d, int) else -1
                   for d in table.shape], _size(table.shape), "; ".join(parts))


def _labels_of(value: np.ndarray | None) -> np.ndarray | None:
    """The labels a constant stores, in order: integers 0..9 with every class present, or one-hot rows of 10."""
    if value is None or value.size < TABLE_ROWS[0] or value.size > TABLE_ROWS[1] * NUM_CLASSES \
            or value.dtype.kind not in "iubf" or value.min() < 0 or value.max() > NUM_CLASSES - 1:
        return None  # most weights fail here, before the dearer tests
    if value.dtype.kind in "iub" or (value.dtype.kind == "f" and np.all(np.mod(value, 1) == 0)):
        flat = value.reshape(-1)
        if value.dtype.kind != "b" and flat.size <= TABLE_ROWS[1] and flat.min() >= 0 and flat.max() < NUM_CLASSES \
                and np.unique(flat).size == NUM_CLASSES:
            return flat.astype(np.int64)
    if value.dtype.kind == "f" and value.ndim >= 2:
        for axis in (value.ndim - 1, 0):
            if value.shape[axis] != NUM_CLASSES:
                continue
            rows = np.moveaxis(value, axis, -1).reshape(-1, NUM_CLASSES)
            if _in_range(len(rows)) and np.all((rows == 0) | (rows == 1)) and np.all(rows.sum(axis=1) == 1):
                return rows.argmax(axis=1)
    return None


def _label_candidates(view: GraphView) -> list[tuple[str, str]]:
    """(tensor, node or initializer name) of every constant that could store labels, cheapest test first."""
    found = [(name, name) for name, tensor in view.initializers.items()
             if tensor.data_location != TensorProto.EXTERNAL and TABLE_ROWS[0] <= _size(list(tensor.dims))
             <= TABLE_ROWS[1] * NUM_CLASSES]
    for node in view.nodes:
        if node.op_type in ("Constant", "Concat") and node.output and node.output[0] not in view.dependent:
            found.append((node.output[0], view.node_name(node)))
    return found


def _label_tables(view: GraphView) -> list[Finding]:
    findings, tables = [], {}
    for tensor, where in _label_candidates(view):
        initializer = view.initializers.get(tensor)
        value = numpy_helper.to_array(initializer) if initializer is not None else view.constant(tensor)
        labels = _labels_of(value)
        if labels is not None and value is not None:
            tables[tensor] = (where, value.shape, labels)
    for tensor, (where, shape, labels) in tables.items():
        readers = view.consumers.get(tensor, [])
        if readers and all(r.op_type == "Concat" and r.output[0] in tables for r in readers):
            continue  # a part of a larger stored table, reported whole
        findings.append(Finding("labels", "note", [where], tensor, [int(d) for d in shape], int(np.prod(shape)),
                                f"a constant holding {len(labels)} labels 0..9 (every class present)"))
    return findings


def _batch_findings(view: GraphView) -> list[Finding]:
    states = track_batch(view)
    findings = []
    for output in view.outputs:
        state = states.get(output)
        if isinstance(state, Mixed):
            findings.append(Finding("batch", "strong" if state.strong else "note", [state.node],
                                    explanation=f"{state.why}, and that reaches output {output!r}: an image's answer "
                                    "can depend on its batchmates"))
        elif isinstance(state, Lost):
            findings.append(Finding("batch", "note", [state.node], explanation=f"the batch axis is not followed past "
                                    f"{state.op} (batch independence is not shown statically)"))
        elif isinstance(state, Batch) and (state.axis, state.inner) != (0, 1):
            findings.append(Finding("batch", "note", [], explanation=f"output {output!r} carries the batch on axis "
                                    f"{state.axis} (x{state.inner}), not first"))
    return findings


def match_labels(model: onnx.ModelProto, findings: list[Finding], test_labels: np.ndarray) -> list[Finding]:
    """The findings with ``label_match`` filled in for stored labels: a match in order makes a label table strong."""
    if not any(f.kind in ("labels", "lookup") and f.tensor for f in findings):
        return findings
    try:
        view = GraphView(model)
        truth = np.asarray(test_labels).reshape(-1).astype(np.int64)
        return [_matched(view, f, truth) if f.kind in ("labels", "lookup") and f.tensor else f for f in findings]
    except Exception as exc:  # noqa: BLE001 - the analysis never breaks a scoring
        return [*findings, _analysis_note(f"stored labels not compared ({type(exc).__name__})")]


def _matched(view: GraphView, finding: Finding, truth: np.ndarray) -> Finding:
    value = view.constant(finding.tensor)
    labels = _labels_of(value) if value is not None and value.size <= MAX_FOLD_ELEMENTS else None
    if labels is None or not truth.size:
        return finding
    count = min(len(labels), len(truth))
    match = float(np.mean(labels[:count] == truth[:count]))
    strength = "strong" if match >= LABEL_MATCH_STRONG and count >= TABLE_ROWS[0] else finding.strength
    return replace(finding, label_match=round(match, 4), strength=strength,
                   explanation=f"{finding.explanation}; {match:.1%} of the first {count} test labels repeated in order")
