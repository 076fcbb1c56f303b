"""Runtime settings: pinned, mapped to provider options, recorded; providers never substituted silently."""

from __future__ import annotations

import pytest
from builders import oracle_model

from evaluator.config import RuntimeConfig
from evaluator.errors import ProviderError
from evaluator.runtime.providers import _missing_library_advice, tensorrt_unavailable_reason
from evaluator.runtime.session import create_session, cuda_options, parse_placement, tensorrt_options


def test_cuda_options_carry_every_pinned_setting():
    options = cuda_options(RuntimeConfig(gpu=2, prefer_nhwc=True, cuda_graph=True, cudnn_search="HEURISTIC"))
    assert options["device_id"] == "2" and options["prefer_nhwc"] == "1" and options["enable_cuda_graph"] == "1"
    assert options["cudnn_conv_algo_search"] == "HEURISTIC" and options["gpu_mem_limit"] == str(32 << 30)
    assert cuda_options(RuntimeConfig())["enable_cuda_graph"] == "1"  # graphs by default
    plain = cuda_options(RuntimeConfig(prefer_nhwc=False, cuda_graph=False))
    assert plain["prefer_nhwc"] == "0" and plain["enable_cuda_graph"] == "0"


def test_tensorrt_options_put_the_engine_cache_where_asked(tmp_path):
    options = tensorrt_options(RuntimeConfig(gpu=1), str(tmp_path))
    assert options["trt_engine_cache_enable"] == "1" and options["trt_engine_cache_path"] == str(tmp_path)
    assert options["device_id"] == "1"


def test_tensorrt_requested_without_tensorrt_is_refused(tmp_path):
    reason = tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT is installed here; the refusal cannot be shown")
    with pytest.raises(ProviderError, match="--provider tensorrt was asked for"):
        create_session(oracle_model(tmp_path / "m.onnx"), RuntimeConfig(provider="tensorrt"))


def test_the_cpu_session_records_what_runs(tmp_path):
    _, info = create_session(oracle_model(tmp_path / "m.onnx"), RuntimeConfig(provider="cpu"))
    assert info.provider == "cpu" and info.providers == ["CPUExecutionProvider"] and info.selection == "requested"
    assert info.nodes_off_provider == [] and info.cuda_graph is False and info.overlap_batches is False
    assert info.placement == {"CPUExecutionProvider": 3}  # Slice, Reshape, Cast


def test_a_missing_driver_is_called_the_driver():
    """libcuda.so.1 belongs to the NVIDIA driver: the advice must not send a user to install CUDA."""
    assert "NVIDIA driver" in _missing_library_advice("libcuda.so.1: cannot open shared object file")
    assert "cuDNN" in _missing_library_advice("libcudnn.so.9: cannot open shared object file")
    assert "CUDA runtime" in _missing_library_advice("libcublasLt.so.12: cannot open shared object file")


def test_node_placement_is_read_from_onnxruntime_log():
    lines = [
        "2026-11-28 10:00:00 [V:onnxruntime:, session_state.cc:1581 VerifyEachNodeIsAssignedToAnEp] Node placements",
        "2026-11-28 10:00:00 [V:onnxruntime:, session_state.cc:1581 VerifyEachNodeIsAssignedToAnEp]  "
        "Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 20",
        "2026-11-28 10:00:00 [V:onnxruntime:, session_state.cc:1581 VerifyEachNodeIsAssignedToAnEp]  "
        "Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2",
        "  Shape (/Shape)",
        "  Gather (/Gather_1)",
        "2026-11-28 10:00:00 [V:onnxruntime:, session_state.cc:1581 something else]",
    ]
    counts, nodes = parse_placement(lines)
    assert counts == {"CUDAExecutionProvider": 20, "CPUExecutionProvider": 2}
    assert nodes["CPUExecutionProvider"] == ["Shape (/Shape)", "Gather (/Gather_1)"]
    all_one, _ = parse_placement(["[V:onnxruntime:] All nodes placed on [CUDAExecutionProvider]. Number of nodes: 7"])
    assert all_one == {"CUDAExecutionProvider": 7}
