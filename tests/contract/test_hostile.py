"""Hostile submissions: every malformed or malicious file is refused with one-line reasons, never a crash."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from builders import conv_model, oracle_model, save
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from evaluator.config import Limits
from evaluator.contract.check import check_submission


def _external(model_path: Path, location: str, extra: dict[str, str] | None = None) -> Path:
    model = onnx.load(model_path)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("int64_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    for key, value in (extra or {}).items():
        tensor.external_data.add(key=key, value=value)
    return save(model, model_path)


def _custom_op_in_subgraph(path: Path) -> Path:
    then_branch = helper.make_graph([helper.make_node("Evil", [], ["t"], domain="evil")], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])])
    else_branch = helper.make_graph([helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(
        np.zeros(1, np.float32)))], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1])])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch)]
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(np.array(True), "c")])
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("evil", 1)]),
                path)


def _string_input(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.STRING, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, ["N"])
    return save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                                  opset_imports=[helper.make_opsetid("", 17)]), path)


def _opset(path: Path, version: int) -> Path:
    model = onnx.load(oracle_model(path))
    model.opset_import[0].version = version
    return save(model, path)


def _outside_file(tmp_path: Path) -> Path:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(b"\0" * 1024)
    return outside


def _last(*steps: object) -> object:
    """Run the steps (already evaluated, left to right) and keep the last: the model's path."""
    return steps[-1]


HOSTILE = {
    "empty file": (lambda p, t: _last(p.write_bytes(b""), p), "empty"),
    "protobuf garbage": (lambda p, t: _last(p.write_bytes(os.urandom(4096)), p), "not an ONNX model"),
    "truncated model": (lambda p, t: _last(p.write_bytes(Path("samples/resnet20.onnx").read_bytes()[:50_000]), p),
                        "not an ONNX model"),
    "absolute external path": (lambda p, t: _external(oracle_model(p), "/etc/passwd"), "relative path"),
    "dot-dot external path": (lambda p, t: _external(oracle_model(p), "../secret.bin"), "relative path"),
    "symlink leading out": (lambda p, t: _last((p.parent / "w.bin").symlink_to(_outside_file(t)),
                                               _external(oracle_model(p), "w.bin")), "symbolic or hard link"),
    "hard link leading out": (lambda p, t: _last(os.link(_outside_file(t), p.parent / "h.bin"),
                                                 _external(oracle_model(p), "h.bin")), "symbolic or hard link"),
    "offset past the end": (lambda p, t: _last((p.parent / "d.bin").write_bytes(b"\0" * 16),
                                               _external(oracle_model(p), "d.bin", {"offset": "8", "length": "24"})),
                            "runs past"),
    "custom op in a subgraph": (lambda p, t: _custom_op_in_subgraph(p), "'evil' is not provided"),
    "string input": (lambda p, t: _string_input(p), "float32 or float16"),
    "ancient opset": (lambda p, t: _opset(p, 3), "outside the accepted range"),
    "future opset": (lambda p, t: _opset(p, 99), "outside the accepted range"),
    "a directory": (lambda p, t: _last(p.mkdir(), p), "a folder, not a .onnx file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_corpus_is_refused_with_one_line_reasons(tmp_path, case, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])
    build, expected = HOSTILE[case]
    folder = tmp_path / "sub"
    folder.mkdir()
    path = build(folder / "model.onnx", tmp_path)
    report = check_submission(path)
    assert not report.valid
    assert any(expected in problem for problem in report.problems), report.problems
    assert all("\n" not in problem for problem in report.problems)


def test_node_and_weight_limits(tmp_path):
    path = conv_model(tmp_path / "m.onnx")
    assert any("nodes exceeds" in p for p in check_submission(path, Limits(max_nodes=3)).problems)
    assert any("bytes of weights" in p for p in check_submission(path, Limits(max_initializer_bytes=100)).problems)


@pytest.mark.slow  # a property test: 150 generated files
@settings(max_examples=150, deadline=None, derandomize=True,  # the same cases in every CI run
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_model_bytes_never_raise(tmp_path_factory, data):
    """Mutate a valid model's bytes every which way: the check always ends in a report, never an exception."""
    folder = tmp_path_factory.mktemp("fuzz")
    base = oracle_model(folder / "base.onnx").read_bytes()
    raw = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if action == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del raw[at : at + data.draw(st.integers(1, 16))]
        elif action == "truncate":
            del raw[at:]
        else:
            raw[at : at + 4] = data.draw(st.binary(min_size=4, max_size=4))
    path = folder / "fuzzed.onnx"
    path.write_bytes(bytes(raw))
    report = check_submission(path)  # must return, whatever the bytes: an exception fails this test
    assert report.problems or report.contract is not None  # a refusal always says why
    assert all(problem and "\n" not in problem for problem in report.problems)
    if report.valid:  # a mutation that left a valid model: onnxruntime, asked here, loads it as the contract says
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == [report.contract.input_name]
        assert report.contract.output_name in [o.name for o in session.get_outputs()]
        assert report.sha256 and report.contract.layout in ("NCHW", "NHWC")


def test_fuzzed_models_through_the_cli_exit_0_or_2(tmp_path, cli):
    base = oracle_model(tmp_path / "base.onnx").read_bytes()
    rng = np.random.default_rng(7)
    codes = set()
    for index in range(12):
        raw = bytearray(base)
        for at in rng.integers(0, len(raw), size=int(rng.integers(1, 6))):
            raw[at] = int(rng.integers(0, 256))
        path = tmp_path / f"f{index}.onnx"
        path.write_bytes(bytes(raw))
        run = cli("check", path)
        assert run.exit_code in (0, 2), run.stderr
        codes.add(run.exit_code)
    assert 2 in codes


def test_invalid_utf8_and_unknown_enums_are_problems_not_crashes(tmp_path):
    """Found by fuzzing: protobuf returns bytes for a non-UTF-8 string field, and unknown enum values."""
    model = onnx.load(oracle_model(tmp_path / "m.onnx"))
    model.graph.input[0].type.tensor_type.elem_type = 40
    save(model, tmp_path / "enum.onnx")
    report = check_submission(tmp_path / "enum.onnx")
    assert not report.valid and any("unknown element type 40" in p for p in report.problems)
    raw = _custom_op_in_subgraph(tmp_path / "custom.onnx").read_bytes()
    (tmp_path / "utf8.onnx").write_bytes(raw.replace(b"evil", b"ev\xffl"))  # the domain is no longer UTF-8
    report = check_submission(tmp_path / "utf8.onnx")
    assert any("'ev\ufffdl' is not provided by onnxruntime" in p for p in report.problems), report.problems


def test_a_failure_inside_the_graph_inspection_is_a_note_not_a_crash(tmp_path, monkeypatch):
    import evaluator.contract.evidence as evidence

    def broken(view: object) -> list:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(evidence, "_lookups", broken)
    report = check_submission(conv_model(tmp_path / "m.onnx"))
    assert report.valid
    (note,) = report.evidence
    assert (note.kind, note.strength) == ("analysis", "note") and "RecursionError" in note.explanation


def test_hostile_graphs_for_the_inspection_stay_bounded(tmp_path):
    """Forty decoy lookups, and a 'table' that would be 4 GB if folded: a bounded list, nothing built."""
    from evaluator.contract.evidence import MAX_FINDINGS, find_evidence

    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"]),
             helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]),
             helper.make_node("MatMul", ["flat", "huge"], ["wide"])]
    for index in range(40):
        nodes += [helper.make_node("MatMul", ["flat", "table"], [f"d{index}"]),
                  helper.make_node("ArgMax", [f"d{index}"], [f"i{index}"], axis=1)]
    nodes.append(helper.make_node("Slice", ["flat", "s", "e", "a"], ["scores"]))
    inits = [numpy_helper.from_array(np.array([3072, 2**18], np.int64), "huge_shape"),
             numpy_helper.from_array(np.zeros((3072, 100), np.float32), "table"),
             numpy_helper.from_array(np.array([0], np.int64), "s"),
             numpy_helper.from_array(np.array([10], np.int64), "e"),
             numpy_helper.from_array(np.array([1], np.int64), "a")]
    model = helper.make_model(helper.make_graph(nodes, "decoys", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    findings = find_evidence(model)
    assert len(findings) == MAX_FINDINGS and all(f.strength == "note" for f in findings)
