"""Runtime settings: pinned, mapped to provider options, recorded; providers never substituted silently."""

from __future__ import annotations

import pytest
from builders import oracle_model

from evaluator.config import RuntimeConfig
from evaluator.errors import ProviderError, SubmissionError
from evaluator.runtime import session as session_module
from evaluator.runtime.providers import _missing_library_advice, cuda_unavailable_reason, tensorrt_unavailable_reason
from evaluator.runtime.session import (
    NO_DEVICE,
    REFUSED,
    SessionAttempt,
    create_session,
    cuda_options,
    open_attempts,
    parse_placement,
    session_attempts,
    tensorrt_options,
)


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


def _resolved_as(monkeypatch, provider, selection):
    monkeypatch.setattr(session_module, "resolve_provider", lambda requested: (provider, selection))


def test_the_session_attempts_are_one_list_in_order(monkeypatch):
    """CUDA with graphs, then without them (after a refusal or a failed capture), then with auto the CPU (after no
    device): an explicit request never ends on the CPU."""
    _resolved_as(monkeypatch, "cuda", "auto: the CUDA provider is available")
    attempts = session_attempts(RuntimeConfig())
    assert [(a.name, a.provider, sorted(a.answers)) for a in attempts] == [
        ("cuda with CUDA graphs", "cuda", []), ("cuda without CUDA graphs", "cuda", ["capture failed", REFUSED]),
        ("cpu", "cpu", [NO_DEVICE])]
    assert [a.config.cuda_graph for a in attempts[:2]] == [True, False] and attempts[2].config.provider == "cpu"
    assert [a.name for a in session_attempts(RuntimeConfig(provider="cuda", cuda_graph=False))] == ["cuda"]
    _resolved_as(monkeypatch, "tensorrt", "requested")
    assert [a.name for a in session_attempts(RuntimeConfig(provider="tensorrt"))] == ["tensorrt"]
    monkeypatch.undo()
    assert [a.name for a in session_attempts(RuntimeConfig(provider="cpu"))] == ["cpu"]


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="CUDA runs here: onnxruntime will not refuse it")
def test_auto_without_a_device_runs_the_cpu_and_says_so(tmp_path, monkeypatch):
    """onnxruntime opens a CUDA session here on the CPU (no device): auto's next attempt is the CPU, said so; an
    explicit --provider cuda is refused, never run elsewhere."""
    model = oracle_model(tmp_path / "m.onnx")
    _resolved_as(monkeypatch, "cuda", "auto: the CUDA provider is available")
    _, info = create_session(model, RuntimeConfig())
    assert info.provider == "cpu" and info.attempt == "cpu" and info.cuda_graph is False
    assert info.selection == "auto: the CUDA provider could not be created on a device"
    assert [(f.attempt, f.failure) for f in info.failed] == [("cuda with CUDA graphs", NO_DEVICE)]
    _resolved_as(monkeypatch, "cuda", "requested")
    with pytest.raises(ProviderError, match="refusing to fall back silently"):
        create_session(model, RuntimeConfig(provider="cuda"))


def test_a_refused_session_tries_the_attempt_that_answers_it_then_gives_the_error(tmp_path, monkeypatch):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    attempts = [SessionAttempt("first", "cpu", RuntimeConfig(provider="cpu", gpu=0), "requested"),
                SessionAttempt("after no device", "cpu", RuntimeConfig(provider="cpu", gpu=1), "requested",
                               frozenset({NO_DEVICE})),
                SessionAttempt("after a refusal", "cpu", RuntimeConfig(provider="cpu", gpu=2), "requested",
                               frozenset({REFUSED}))]
    opened = []
    providers = session_module._providers
    monkeypatch.setattr(session_module, "_providers",
                        lambda provider, config, cache: opened.append(config.gpu) or providers(provider, config, cache))
    with pytest.raises(SubmissionError, match="onnxruntime could not create a session for the model"):
        open_attempts(broken, attempts)
    assert opened == [0, 2]  # the refusal skips the attempt that answers only a missing device
    opened.clear()
    _, info = open_attempts(oracle_model(tmp_path / "m.onnx"), attempts)
    assert opened == [0] and info.attempt == "first" and info.failed == ()
