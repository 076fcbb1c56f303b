"""Hostile submissions, faults and result integrity: a bad submission costs only its own result."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import (
    PowercapTree,
    conv_model,
    memory_hog_model,
    oracle_images,
    oracle_model,
    save,
    save_npz,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from evaluator import leaderboard as lb
from evaluator.batch import score_directory
from evaluator.errors import EdlError, MeterError, SubmissionError
from evaluator.score import ScoreOptions, score
from evaluator.submission import Limits, check_submission
from evaluator.verify import seal, verify_result

FAST = dict(passes=2, idle_seconds=0, cooldown_seconds=0, plot=False)


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
    "a directory": (lambda p, t: _last(p.mkdir(), p), "no such file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_corpus_is_refused_with_one_line_reasons(tmp_path, case, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])
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
    report = check_submission(path)
    assert report.valid or report.problems


def test_fuzzed_models_through_the_cli_exit_0_or_2(tmp_path):
    base = oracle_model(tmp_path / "base.onnx").read_bytes()
    rng = np.random.default_rng(7)
    for index in range(12):
        raw = bytearray(base)
        for at in rng.integers(0, len(raw), size=int(rng.integers(1, 6))):
            raw[at] = int(rng.integers(0, 256))
        path = tmp_path / f"f{index}.onnx"
        path.write_bytes(bytes(raw))
        run = subprocess.run([sys.executable, "-m", "evaluator", "check", str(path)], capture_output=True, text=True)
        assert run.returncode in (0, 2), run.stderr
        assert "Traceback" not in run.stderr


def _data(tmp_path: Path) -> Path:
    images, labels = oracle_images(1000, correct=990)
    return save_npz(tmp_path / "d.npz", images, labels)


def test_runtime_failure_is_a_submission_error(tmp_path):
    """Slices 7 values and reshapes them to rows of 10: valid when loaded, fails on a batch of 3."""
    model = onnx.load(oracle_model(tmp_path / "m.onnx"))
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array([1, 1, 7], np.int64), "ends"))
    save(model, tmp_path / "bad.onnx")
    assert check_submission(tmp_path / "bad.onnx").valid
    with pytest.raises(SubmissionError, match="onnxruntime failed while running the model"):
        score(tmp_path / "bad.onnx", ScoreOptions(data=_data(tmp_path), out_dir=tmp_path / "o", batch_size=3, **FAST))


def test_memory_exhaustion_is_contained_by_the_child_limit(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    memory_hog_model(subs / "hog.onnx", gigabytes=8)
    oracle_model(subs / "ok.onnx")
    summary = score_directory(subs, tmp_path / "out", ScoreOptions(data=_data(tmp_path), provider="cpu", **FAST),
                              timeout_s=120, max_memory_gb=4)
    results = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/result.json")}
    assert results["hog"]["status"] == "failed" and results["ok"]["status"] == "scored"
    assert "onnxruntime" in results["hog"]["reason"] and "\n" not in results["hog"]["reason"]
    assert summary["limits"]["address_space_bytes"] == 4 << 30


def test_sampler_killed_mid_run_invalidates_the_measurement(tmp_path, fake_gpu):
    fake_gpu()
    options = ScoreOptions(data=_data(tmp_path), out_dir=tmp_path / "o", passes=300, idle_seconds=0,
                           cooldown_seconds=0, plot=False)

    def kill_sampler() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                if child.name == "edl-sampler":
                    time.sleep(0.5)
                    os.kill(child.pid, signal.SIGKILL)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_sampler)
    killer.start()
    with pytest.raises(MeterError, match="died during the run"):
        score(conv_model(tmp_path / "m.onnx"), options)
    killer.join()
    assert not (tmp_path / "o" / "result.json").exists()


def test_full_disk_fails_before_measuring(tmp_path):
    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    run = subprocess.run([sys.executable, "-B", "-m", "evaluator", "score", str(oracle_model(tmp_path / "m.onnx")),
                          "--data", str(_data(tmp_path)), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, preexec_fn=small_files)
    assert run.returncode == 1
    assert "cannot write results" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "o" / "samples.csv").exists()


@pytest.fixture
def scored(tmp_path, monkeypatch):
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[50.0]):
        score(conv_model(tmp_path / "m.onnx"), ScoreOptions(data=_data(tmp_path), out_dir=tmp_path / "o",
                                                             passes=20, idle_seconds=0.3, cooldown_seconds=0,
                                                             plot=False))
    return tmp_path / "o" / "result.json"


def _outcomes(path: Path, model: Path | None = None) -> dict[str, str]:
    return {c.name: c.outcome for c in verify_result(path, model)}


def test_verify_passes_an_untouched_result(scored):
    outcomes = _outcomes(scored)
    assert set(outcomes.values()) == {"pass"}, outcomes
    assert outcomes["energy.cpu_j recomputed from samples"] == "pass"
    assert _outcomes(scored.parent) == outcomes  # the result folder names the same result


def test_verify_catches_an_edited_field(scored):
    doc = json.loads(scored.read_text())
    doc["accuracy"] = 0.999
    scored.write_text(json.dumps(doc))
    outcomes = _outcomes(scored)
    assert outcomes["document checksum"] == "fail" and outcomes["accuracy = correct / images"] == "fail"
    with pytest.raises(EdlError, match="checksum does not match"):
        lb.load_results(scored.parent.parent)


def test_verify_catches_resealed_energy_and_tampered_samples(scored):
    doc = json.loads(scored.read_text())
    doc["energy"]["total_j"] *= 0.5
    doc["energy"]["cpu_j"] *= 0.5
    doc["energy"]["per_pass_j"] *= 0.5
    doc["energy"]["per_image_j"] *= 0.5
    scored.write_text(json.dumps(seal(doc)))  # a forger who also recomputes the checksum
    outcomes = _outcomes(scored)
    assert outcomes["document checksum"] == "pass"
    assert outcomes["energy.total_j recomputed from samples"] == "fail"
    samples = scored.parent / "samples.csv"
    samples.write_text(samples.read_text().replace(",", ";", 1))
    assert _outcomes(scored)["samples sha256"] == "fail"


def test_verify_cli_exit_codes_and_model_check(scored, tmp_path):
    good = subprocess.run([sys.executable, "-m", "evaluator", "verify", str(scored)], capture_output=True, text=True)
    assert good.returncode == 0 and "all checks hold" in good.stdout
    other = oracle_model(tmp_path / "other.onnx")
    bad = subprocess.run([sys.executable, "-m", "evaluator", "verify", str(scored), "--model", str(other)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "FAILED" in bad.stdout


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
