"""The graph inspection: every memoriser built here is caught by a strong finding; no honest graph is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import colour_model, conv_model, memorizing_model, save
from onnx import TensorProto, helper, numpy_helper

from evaluator.contract.check import check_submission
from evaluator.contract.evidence import TABLE_ROWS, Finding, find_evidence, graph_check, match_labels

ROOT = Path(__file__).parents[2]
ROWS, FEATURES, BATCH = 400, 16, 50
RNG = np.random.default_rng(3)
TABLE = RNG.standard_normal((ROWS, FEATURES)).astype(np.float32)
LABELS = RNG.integers(0, 10, ROWS).astype(np.int64)
ONE_HOT = np.eye(10, dtype=np.float32)[LABELS]
PROJECTION = RNG.standard_normal((3 * 32 * 32, FEATURES)).astype(np.float32)


def _model(path: Path, nodes: list, initializers: dict[str, np.ndarray], output: str = "labels",
           batch: int | str = "N") -> Path:
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, 32, 32])
    if output == "labels":
        y = helper.make_tensor_value_info("labels", TensorProto.INT64, [batch])
    else:
        y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 10])
    inits = [numpy_helper.from_array(value, name) for name, value in initializers.items()]
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _features() -> tuple[list, dict[str, np.ndarray]]:
    """Per-image features: the flattened image projected to FEATURES numbers (N, FEATURES)."""
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "projection"], ["features"], name="project")]
    return nodes, {"projection": PROJECTION}


def _distances(table_nodes: list, table: str = "table") -> list:
    """Squared distance of each image's features to every stored row: (N, ROWS)."""
    return [*table_nodes,
            helper.make_node("Unsqueeze", ["features", "one"], ["column"], name="column"),
            helper.make_node("Sub", ["column", table], ["difference"], name="difference"),
            helper.make_node("Mul", ["difference", "difference"], ["squared"], name="square"),
            helper.make_node("ReduceSum", ["squared", "last"], ["distance"], keepdims=0, name="distance")]


def nearest_neighbour(path: Path, split_table: bool = False, rows: int = ROWS) -> Path:
    nodes, inits = _features()
    inits |= {"one": np.array([1], np.int64), "last": np.array([-1], np.int64), "stored_labels": LABELS[:rows]}
    table_nodes = []
    if split_table:  # the table in two initializers, Concat'ed at run time
        inits |= {"table_a": TABLE[:150], "table_b": TABLE[150:rows]}
        table_nodes = [helper.make_node("Concat", ["table_a", "table_b"], ["table"], axis=0, name="join")]
    else:
        inits["table"] = TABLE[:rows]
    nodes += _distances(table_nodes)
    nodes += [helper.make_node("ArgMin", ["distance"], ["nearest"], axis=1, keepdims=0, name="nearest"),
              helper.make_node("Gather", ["stored_labels", "nearest"], ["labels"], name="answer")]
    return _model(path, nodes, inits)


def negated_norm_nearest(path: Path) -> Path:
    """argmin |f - t|^2 = argmax 2 f.t - |t|^2: the distance as a MatMul and a stored norm."""
    nodes, inits = _features()
    inits |= {"table_t": (2 * TABLE.T).copy(), "norms": -(TABLE**2).sum(1), "stored_labels": LABELS}
    nodes += [helper.make_node("MatMul", ["features", "table_t"], ["dots"], name="dots"),
              helper.make_node("Add", ["dots", "norms"], ["closeness"], name="closeness"),
              helper.make_node("ArgMax", ["closeness"], ["nearest"], axis=1, keepdims=0, name="nearest"),
              helper.make_node("Gather", ["stored_labels", "nearest"], ["labels"], name="answer")]
    return _model(path, nodes, inits)


def one_hot_lookup(path: Path, with_equal: bool = False) -> Path:
    """The nearest row's one-hot scores picked by a one-hot MatMul (OneHot, or Equal against a stored range)."""
    nodes, inits = _features()
    inits |= {"one": np.array([1], np.int64), "last": np.array([-1], np.int64), "table": TABLE,
              "stored_scores": ONE_HOT}
    nodes += _distances([])
    nodes.append(helper.make_node("ArgMin", ["distance"], ["nearest"], axis=1, keepdims=1, name="nearest"))
    if with_equal:
        inits["rows"] = np.arange(ROWS, dtype=np.int64)
        nodes += [helper.make_node("Equal", ["nearest", "rows"], ["hit"], name="hit"),
                  helper.make_node("Cast", ["hit"], ["choice"], to=TensorProto.FLOAT, name="choice")]
    else:
        inits |= {"depth": np.array(ROWS, np.int64), "off_on": np.array([0.0, 1.0], np.float32)}
        nodes += [helper.make_node("Squeeze", ["nearest", "one"], ["index"], name="index"),
                  helper.make_node("OneHot", ["index", "depth", "off_on"], ["choice"], name="choice")]
    nodes.append(helper.make_node("MatMul", ["choice", "stored_scores"], ["scores"], name="answer"))
    return _model(path, nodes, inits, output="scores")


def topk_lookup(path: Path, k: int = 1) -> Path:
    nodes, inits = _features()
    inits |= {"one": np.array([1], np.int64), "last": np.array([-1], np.int64), "table": TABLE,
              "stored_labels": LABELS, "k": np.array([k], np.int64), "first": np.array([0], np.int64)}
    nodes += _distances([])
    nodes += [helper.make_node("TopK", ["distance", "k"], ["best", "nearest"], axis=1, largest=0, name="nearest"),
              helper.make_node("Gather", ["nearest", "first"], ["nearest_one"], axis=1, name="first_of_k"),
              helper.make_node("Squeeze", ["nearest_one", "one"], ["index"], name="index"),
              helper.make_node("Gather", ["stored_labels", "index"], ["labels"], name="answer")]
    return _model(path, nodes, inits)


def batch_recogniser(path: Path, trick: str = "reduce") -> Path:
    """Statistics of the whole batch, the nearest stored batch signature, that batch's stored labels in order."""
    signatures = RNG.random((8, 3)).astype(np.float32)
    batch_labels = RNG.integers(0, 10, (8, BATCH)).astype(np.int64)
    inits = {"signatures": signatures, "batch_labels": batch_labels, "flat_batch": np.array([BATCH], np.int64),
             "one": np.array([1], np.int64), "last": np.array([-1], np.int64)}
    if trick == "reduce":
        nodes = [helper.make_node("ReduceMean", ["pixels"], ["stats"], axes=[0, 2, 3], keepdims=0, name="stats")]
    elif trick == "fold":  # the batch moved behind the channels and folded into one axis, then averaged
        inits["per_channel"] = np.array([3, -1], np.int64)
        nodes = [helper.make_node("Transpose", ["pixels"], ["channels_first"], perm=[1, 0, 2, 3], name="swap"),
                 helper.make_node("Reshape", ["channels_first", "per_channel"], ["rows"], name="fold"),
                 helper.make_node("ReduceMean", ["rows"], ["stats"], axes=[-1], keepdims=0, name="stats")]
    else:  # "matmul": the batch transposed into a MatMul's contracted dimension
        inits["average"] = np.full((BATCH, 1), 1.0 / BATCH, np.float32)
        nodes = [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"], name="pool"),
                 helper.make_node("Flatten", ["pooled"], ["colours"], name="colours"),
                 helper.make_node("Transpose", ["colours"], ["by_channel"], perm=[1, 0], name="swap"),
                 helper.make_node("MatMul", ["by_channel", "average"], ["stats_column"], name="stats"),
                 helper.make_node("Squeeze", ["stats_column", "one"], ["stats"], name="squeeze")]
    nodes += [helper.make_node("Sub", ["signatures", "stats"], ["gap"], name="gap"),
              helper.make_node("Abs", ["gap"], ["size"], name="size"),
              helper.make_node("ReduceSum", ["size", "one"], ["distance"], keepdims=0, name="distance"),
              helper.make_node("ArgMin", ["distance"], ["which"], axis=0, keepdims=1, name="which"),
              helper.make_node("Gather", ["batch_labels", "which"], ["picked"], name="picked"),
              helper.make_node("Reshape", ["picked", "flat_batch"], ["labels"], name="answer")]
    return _model(path, nodes, inits, batch=BATCH)


def _strong(findings: list[Finding], kind: str) -> list[Finding]:
    return [f for f in findings if f.strength == "strong" and f.kind == kind]


MEMORISERS = {
    "nearest neighbour": (nearest_neighbour, "lookup"),
    "nearest neighbour, table split in two": (lambda p: nearest_neighbour(p, split_table=True), "lookup"),
    "nearest neighbour, MatMul and negated norm": (negated_norm_nearest, "lookup"),
    "one-hot MatMul": (one_hot_lookup, "lookup"),
    "one-hot by Equal against a range": (lambda p: one_hot_lookup(p, with_equal=True), "lookup"),
    "TopK": (topk_lookup, "lookup"),
    "TopK of 3, the first taken": (lambda p: topk_lookup(p, k=3), "lookup"),
    "batch recogniser": (batch_recogniser, "batch"),
    "batch recogniser, batch folded by Transpose and Reshape": (lambda p: batch_recogniser(p, "fold"), "batch"),
    "batch recogniser, batch contracted in a MatMul": (lambda p: batch_recogniser(p, "matmul"), "batch"),
    "builders.memorizing_model (the audit's own cheat)": (
        lambda p: memorizing_model(p, *_images(300)), "lookup"),
}


def _images(count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, count).astype(np.uint8)


@pytest.mark.parametrize("case", sorted(MEMORISERS))
def test_every_memoriser_is_caught_by_a_strong_finding(tmp_path, case):
    build, kind = MEMORISERS[case]
    path = build(tmp_path / "m.onnx")
    report = check_submission(path)
    assert report.valid, report.problems  # evidence, never a problem by itself
    assert _strong(report.evidence, kind), [f.line for f in report.evidence]
    assert any("graph evidence of stored answers" in w for w in report.warnings)
    verdict = graph_check(report.evidence)
    assert verdict.verdict == "fail" and verdict.figure >= 1 and kind in verdict.evidence


def test_a_lookup_names_its_nodes_and_table_sizes(tmp_path):
    report = check_submission(nearest_neighbour(tmp_path / "m.onnx", split_table=True))
    (lookup,) = _strong(report.evidence, "lookup")
    assert lookup.nodes == ["difference", "nearest", "answer"]
    assert (lookup.tensor, lookup.shape, lookup.size) == ("stored_labels", [ROWS], ROWS)
    assert "table" in lookup.explanation and str((ROWS, FEATURES)) in lookup.explanation


def test_stored_labels_matching_the_test_labels_in_order_are_strong(tmp_path):
    model = onnx.load(nearest_neighbour(tmp_path / "m.onnx"))
    findings = find_evidence(model)
    (labels,) = [f for f in findings if f.kind == "labels"]
    assert labels.strength == "note" and labels.label_match is None  # alone, a label vector is a weak sign
    matched = match_labels(model, findings, LABELS)
    (labels,) = [f for f in matched if f.kind == "labels"]
    assert labels.strength == "strong" and labels.label_match == 1.0
    assert "100.0% of the first 400 test labels" in labels.explanation
    other = match_labels(model, findings, np.roll(LABELS, 7))  # the same labels out of order: chance
    (labels,) = [f for f in other if f.kind == "labels"]
    assert labels.strength == "note" and labels.label_match < LABEL_CHANCE_BOUND


LABEL_CHANCE_BOUND = 0.25


def test_one_hot_label_tables_and_split_label_vectors_are_read(tmp_path):
    model = onnx.load(one_hot_lookup(tmp_path / "m.onnx"))
    matched = match_labels(model, find_evidence(model), LABELS)
    assert any(f.kind == "labels" and f.label_match == 1.0 and f.strength == "strong" for f in matched)
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("out", TensorProto.INT64, [2 * ROWS])
    graph = helper.make_graph([helper.make_node("Concat", ["a", "b"], ["out"], axis=0, name="join")], "g", [x], [y],
                              [numpy_helper.from_array(LABELS, "a"), numpy_helper.from_array(LABELS, "b")])
    findings = find_evidence(helper.make_model(graph))
    assert [(f.kind, f.tensor, f.size) for f in findings if f.kind == "labels"] == [("labels", "out", 2 * ROWS)]


def test_a_scoring_records_the_findings_and_warns(tmp_path):
    from builders import fast_config, save_npz

    from evaluator.report.reader import read_result
    from evaluator.scoring.pipeline import score

    images, labels = _images(300)
    model = memorizing_model(tmp_path / "cheat.onnx", images, labels)
    data = save_npz(tmp_path / "d.npz", images, labels)
    result = score(model, fast_config(data, passes=1), tmp_path / "out")
    kinds = {(f.kind, f.strength, f.label_match) for f in result.model.evidence}
    assert ("lookup", "strong", 1.0) in kinds and ("labels", "strong", 1.0) in kinds
    assert sum("graph evidence of stored answers" in w for w in result.warnings) == 2
    assert read_result(tmp_path / "out" / "result.json").model.evidence == result.model.evidence


# Honest graphs ------------------------------------------------------------------------------------------------


def _honest_batch_ops(path: Path) -> Path:
    """Legitimate ops on tensors that carry the batch: a Reshape keeping it (constant and computed shapes), a
    fold of the batch with the channels and back, a Flatten, a Softmax over classes, a 512-unit hidden layer."""
    rng = np.random.default_rng(1)
    inits = {"w_conv": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
             "fold": np.array([-1, 32 * 32], np.int64), "keep": np.array([-1, 8 * 32 * 32], np.int64),
             "zero": np.array([0], np.int64), "minus_one": np.array([-1], np.int64),
             "hidden": rng.standard_normal((8 * 32 * 32, 512)).astype(np.float32) * 0.01,
             "head": rng.standard_normal((512, 10)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["pixels", "w_conv"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Shape", ["conv"], ["conv_shape"]),
             helper.make_node("Reshape", ["conv", "fold"], ["per_channel"]),  # (N*8, 1024): batch and channels
             helper.make_node("Softmax", ["per_channel"], ["spatial_weights"], axis=1),
             helper.make_node("Reshape", ["spatial_weights", "conv_shape"], ["unfolded"]),  # back to (N, 8, 32, 32)
             helper.make_node("Gather", ["conv_shape", "zero"], ["batch_size"]),
             helper.make_node("Concat", ["batch_size", "minus_one"], ["computed"], axis=0),
             helper.make_node("Reshape", ["unfolded", "computed"], ["flat_computed"]),  # x.view(x.size(0), -1)
             helper.make_node("Reshape", ["flat_computed", "keep"], ["flat"]),
             helper.make_node("MatMul", ["flat", "hidden"], ["hidden_out"]),
             helper.make_node("Relu", ["hidden_out"], ["hidden_relu"]),
             helper.make_node("MatMul", ["hidden_relu", "head"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["scores"], axis=-1)]
    return _model(path, nodes, inits, output="scores")


def _honest_fixed_batch_tokens(path: Path) -> Path:
    """A fixed batch, a Reshape to a constant (BATCH, tokens, width), a LayerNormalization, attention written
    as Einsum with a Softmax over 256 tokens, and a mean over tokens: per-image work that moves axes around."""
    rng = np.random.default_rng(2)
    inits = {"tokens": np.array([BATCH, 256, 12], np.int64), "scale": np.ones(12, np.float32),
             "bias": np.zeros(12, np.float32), "head": rng.standard_normal((12, 10)).astype(np.float32)}
    nodes = [helper.make_node("Reshape", ["pixels", "tokens"], ["seq"]),
             helper.make_node("LayerNormalization", ["seq", "scale", "bias"], ["normed"], axis=-1),
             helper.make_node("Einsum", ["normed", "normed"], ["affinity"], equation="bid,bjd->bij"),
             helper.make_node("Softmax", ["affinity"], ["attention"], axis=-1),
             helper.make_node("Einsum", ["attention", "normed"], ["mixed"], equation="bij,bjd->bid"),
             helper.make_node("ReduceMean", ["mixed"], ["pooled"], axes=[1], keepdims=0),
             helper.make_node("MatMul", ["pooled", "head"], ["scores"])]
    return _model(path, nodes, inits, output="scores", batch=BATCH)


HONEST = {
    "fixed batch, tokens, LayerNorm, Einsum attention": _honest_fixed_batch_tokens,
    "conv model": conv_model,
    "colour model": colour_model,
    "colour model, fixed batch": lambda p: colour_model(p, batch=BATCH),
    "legitimate batch-axis ops": _honest_batch_ops,
}


@pytest.mark.parametrize("case", sorted(HONEST))
def test_honest_graphs_built_here_show_nothing(tmp_path, case):
    report = check_submission(HONEST[case](tmp_path / "m.onnx"))
    assert report.valid and report.evidence == [], [f.line for f in report.evidence]
    assert graph_check(report.evidence).verdict == "pass"


@pytest.mark.parametrize("sample", ["small_cnn.onnx", "resnet20.onnx", "resnet20.fp16.onnx"])
def test_the_shipped_samples_show_nothing(sample):
    assert find_evidence(onnx.load(ROOT / "samples" / sample)) == []


def test_a_table_padded_past_a_hundred_thousand_rows_is_still_a_lookup(tmp_path):
    """An attack padded the table to 100,001 rows with far-away keys, past the first bound (100,000): caught now."""
    global TABLE, LABELS
    saved = TABLE, LABELS
    rows = 100_001
    TABLE = np.concatenate([saved[0], np.full((rows - ROWS, FEATURES), 1e6, np.float32)])
    LABELS = np.concatenate([saved[1], np.zeros(rows - ROWS, np.int64)])
    try:
        findings = find_evidence(onnx.load(nearest_neighbour(tmp_path / "m.onnx", rows=rows)))
    finally:
        TABLE, LABELS = saved
    assert _strong(findings, "lookup") and graph_check(findings).verdict == "fail", [f.line for f in findings]


def test_a_table_below_the_bound_is_no_lookup(tmp_path):
    """Choosing among fewer than TABLE_ROWS[0] stored rows (a prototype classifier) is not a test-set lookup."""
    findings = find_evidence(onnx.load(nearest_neighbour(tmp_path / "m.onnx", rows=TABLE_ROWS[0] - 1)))
    assert findings == [], [f.line for f in findings]


@pytest.mark.slow  # a real network converted to ONNX in the test (30-60 s each)
@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet44", "resnet56"])
def test_the_shared_resnets_converted_fp32_and_fp16_show_nothing(tmp_path, shared_data, name):
    pytest.importorskip("torch", reason="the [torch] extra is not installed")
    from converters.common import ContractOptions
    from converters.pytorch_to_onnx import convert, load_weights
    from samples import cifar_resnet

    (weights,) = (shared_data.parents[1] / "models").glob(f"{name}-*.th")
    model = getattr(cifar_resnet, name)()
    load_weights(model, weights)
    fixed = 250 if name == "resnet20" else None  # one fixed-batch uint8 NHWC form too
    options = ContractOptions("uint8" if fixed else "float32", "nhwc" if fixed else "nchw", (0.485, 0.456, 0.406),
                              (0.229, 0.224, 0.225), fixed)
    convert(model, tmp_path / f"{name}.onnx", options, fp16=True)
    for path in (tmp_path / f"{name}.onnx", tmp_path / f"{name}.fp16.onnx"):
        report = check_submission(path)
        assert report.valid and report.evidence == [], [f.line for f in report.evidence]


@pytest.mark.slow  # a real network converted to ONNX in the test (30-60 s each)
def test_a_converted_keras_model_shows_nothing(tmp_path):
    keras = pytest.importorskip("keras", reason="the [tf] extra is not installed")
    from converters.common import ContractOptions
    from converters.tf_to_onnx import convert

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    convert(lambda images: model(images, training=False), tmp_path / "k.onnx",
            ContractOptions("uint8", "nhwc", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), None), fp16=True)
    for path in (tmp_path / "k.onnx", tmp_path / "k.fp16.onnx"):
        report = check_submission(path)
        assert report.valid and report.evidence == [], [f.line for f in report.evidence]


def test_edl_check_prints_the_findings_and_keeps_exit_0(tmp_path, cli):
    import json

    path = nearest_neighbour(tmp_path / "cheat.onnx")
    run = cli("check", path)
    assert run.exit_code == 0, run.stderr
    assert "graph evidence strong: lookup at difference, nearest, answer" in run.stdout
    assert "graph evidence of stored answers" in run.stderr  # the strong finding's warning
    document = json.loads(cli("check", path, "--json").stdout)
    assert {(f["kind"], f["strength"]) for f in document["evidence"]} == {("lookup", "strong"), ("labels", "note")}
    honest = cli("check", ROOT / "samples" / "resnet20.onnx")
    assert honest.exit_code == 0 and "graph evidence" not in honest.stdout + honest.stderr
