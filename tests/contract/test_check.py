"""`edl check`: every contract form accepted, every broken submission refused with a clear reason."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from builders import oracle_model, save
from onnx import TensorProto, helper, numpy_helper

from evaluator.config import Limits
from evaluator.contract.check import check_submission


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("output", ["scores", "labels"])
def test_every_contract_form_is_valid(tmp_path, dtype, layout, output):
    path = oracle_model(tmp_path / "m.onnx", dtype, layout, output)
    report = check_submission(path)
    assert report.valid, report.problems
    assert (report.contract.input_dtype, report.contract.layout, report.contract.output_kind) == (dtype, layout, output)
    assert report.contract.batch_size(None) == (250, "default")


def test_batch_policy_graph_then_metadata_then_option(tmp_path):
    fixed = check_submission(oracle_model(tmp_path / "f.onnx", batch=250, metadata_batch=400)).contract
    meta = check_submission(oracle_model(tmp_path / "m.onnx", metadata_batch=400)).contract
    free = check_submission(oracle_model(tmp_path / "d.onnx")).contract
    assert fixed.batch_size(64) == (250, "fixed batch dimension in the graph")
    assert meta.batch_size(64) == (400, "metadata_props edl.batch_size")
    assert free.batch_size(64) == (64, "--batch-size")


def _graph_model(path, inputs, outputs, nodes, initializers=(), domain_opsets=(("", 17),)):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domain_opsets])
    return save(model, path)


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def test_two_inputs_refused(tmp_path):
    path = _graph_model(tmp_path / "m.onnx", [_vi("a", TensorProto.FLOAT, ["N", 3, 32, 32]),
                                              _vi("b", TensorProto.FLOAT, ["N", 3, 32, 32])],
                        [_vi("y", TensorProto.FLOAT, ["N", 3, 32, 32])], [helper.make_node("Add", ["a", "b"], ["y"])])
    report = check_submission(path)
    assert not report.valid and any("2 inputs" in p for p in report.problems)


def test_wrong_image_shape_and_output_width_refused(tmp_path):
    shape_bad = _graph_model(tmp_path / "s.onnx", [_vi("x", TensorProto.FLOAT, ["N", 3, 28, 28])],
                             [_vi("y", TensorProto.FLOAT, ["N", 3, 28, 28])], [helper.make_node("Relu", ["x"], ["y"])])
    assert any("(3, 32, 32)" in p for p in check_submission(shape_bad).problems)
    five = _graph_model(
        tmp_path / "o.onnx", [_vi("x", TensorProto.FLOAT, ["N", 3, 32, 32])], [_vi("y", TensorProto.FLOAT, ["N", 5])],
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        [numpy_helper.from_array(np.zeros((3072, 5), np.float32), "w")])
    assert any("5 scores" in p for p in check_submission(five).problems)


def test_int_input_refused(tmp_path):
    path = _graph_model(tmp_path / "m.onnx", [_vi("x", TensorProto.INT32, ["N", 3, 32, 32])],
                        [_vi("y", TensorProto.INT32, ["N", 3, 32, 32])], [helper.make_node("Identity", ["x"], ["y"])])
    assert any("float32 or float16" in p for p in check_submission(path).problems)


def test_custom_domain_refused(tmp_path):
    path = _graph_model(tmp_path / "m.onnx", [_vi("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                        [_vi("y", TensorProto.FLOAT, ["N", 10])],
                        [helper.make_node("Magic", ["x"], ["y"], domain="evil.ops")],
                        domain_opsets=(("", 17), ("evil.ops", 1)))
    report = check_submission(path)
    assert any("'evil.ops' is not provided by onnxruntime" in p for p in report.problems)


@pytest.mark.parametrize(("content", "message"), [(b"", "empty"), (b"\x08\x07garbage" * 10, "not an ONNX model")])
def test_garbage_files_refused(tmp_path, content, message):
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    report = check_submission(path)
    assert not report.valid and any(message in p for p in report.problems)


def test_external_data_must_stay_inside_the_folder(tmp_path):
    path = oracle_model(tmp_path / "m.onnx")
    model = onnx.load(path)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")
    save(model, path)
    assert any("relative path inside" in p for p in check_submission(path).problems)
    outside = tmp_path.parent / "outside.bin"
    outside.write_bytes(b"\0" * 64)
    (tmp_path / "link.bin").symlink_to(outside)
    del tensor.external_data[:]
    tensor.external_data.add(key="location", value="link.bin")
    save(model, path)
    assert any("not a regular file inside" in p for p in check_submission(path).problems)
    (tmp_path / "short.bin").write_bytes(b"\0" * 8)
    del tensor.external_data[:]
    tensor.external_data.add(key="location", value="short.bin")
    tensor.external_data.add(key="length", value="24")
    save(model, path)
    assert any("runs past" in p for p in check_submission(path).problems)


def test_ir_version_newer_than_onnxruntime_is_refused(tmp_path):
    path = oracle_model(tmp_path / "m.onnx")
    model = onnx.load(path)
    model.ir_version = 99
    onnx.save(model, path)
    report = check_submission(path)
    assert not report.valid


def test_a_folder_is_pointed_to_score_dir(tmp_path):
    report = check_submission(tmp_path)
    assert report.problems == [f"{tmp_path}: a folder, not a .onnx file; to score every submission in a folder "
                               "use `edl score-dir`"]


def test_limits_apply(tmp_path):
    path = oracle_model(tmp_path / "m.onnx")
    report = check_submission(path, Limits(max_nodes=1, max_file_bytes=10))
    assert any("10-byte limit" in p for p in report.problems)
    report = check_submission(path, Limits(max_nodes=1))
    assert any("exceeds the limit of 1" in p for p in report.problems)


def test_cli_check_exit_codes_and_clean_errors(tmp_path, cli):
    good = oracle_model(tmp_path / "good.onnx", "uint8", "NHWC", "labels")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    ok = cli("check", good)
    assert ok.exit_code == 0, ok.stderr
    assert "uint8 NHWC -> labels" in ok.stdout
    refused = cli("check", bad)
    assert refused.exit_code == 2
    assert "error:" in refused.stderr and "not an ONNX model" in refused.stderr
    limited = cli("check", good, "--max-nodes", "1", "--json")
    assert limited.exit_code == 2 and '"valid": false' in limited.stdout and "exceeds the limit of 1" in limited.stderr


def test_external_data_inside_the_folder_is_accepted_and_scores(tmp_path):
    from builders import conv_model, fast_config, oracle_images, save_npz

    from evaluator.scoring.pipeline import score

    model = onnx.load(conv_model(tmp_path / "tmp.onnx"))
    folder = tmp_path / "team"
    folder.mkdir()
    model.ir_version = 9
    onnx.save(model, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    report = check_submission(folder / "model.onnx")
    assert report.valid, report.problems
    assert report.external_data == ["weights.bin"] and report.initializer_bytes == (16 * 27 + 160) * 4
    images, labels = oracle_images(100, correct=100)
    result = score(folder / "model.onnx", fast_config(save_npz(tmp_path / "d.npz", images, labels), passes=1),
                   tmp_path / "o")
    assert result.status == "scored" and result.model.name == "model"
