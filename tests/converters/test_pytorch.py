"""Converters from PyTorch and Keras: every contract form, verified against the source framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from converters.common import ContractOptions, MissingFrameworkError, VerificationError, require
from evaluator.contract.check import check_submission
from evaluator.contract.spec import DEFAULT_BATCH_SIZE

ROOT = Path(__file__).parents[2]
FORMS = [("uint8", "nhwc", None), ("float32", "nchw", None), ("float16", "nchw", 64), ("float32", "nhwc", None),
         ("uint8", "nchw", 100)]


def test_missing_framework_says_how_to_install():
    with pytest.raises(MissingFrameworkError) as refused:
        require("surely_not_a_framework", "tf")
    assert "pip install 'edl-evaluator[tf]'" in str(refused.value)  # from the package index
    assert "pip install -e '.[tf]'" in str(refused.value)  # in a checkout


# --- PyTorch ---------------------------------------------------------------------------------------

torch = pytest.importorskip("torch", reason="the [torch] extra is not installed")


def _tiny_torch():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()


@pytest.mark.parametrize(("dtype", "layout", "batch"), FORMS)
def test_pytorch_every_contract_form(tmp_path, dtype, layout, batch):
    from converters.pytorch_to_onnx import convert

    options = ContractOptions(dtype, layout, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), batch)
    reports = convert(_tiny_torch(), tmp_path / "m.onnx", options)
    assert reports[0].argmax_agreement["random"] == 1.0 and reports[0].max_abs_diff["random"] < 1e-4
    contract = check_submission(tmp_path / "m.onnx").contract
    assert (contract.input_dtype, contract.layout.lower(), contract.output_kind) == (dtype, layout, "scores")
    assert contract.batch_size(None)[0] == (batch or DEFAULT_BATCH_SIZE)


def test_pytorch_fp16_copy_is_verified_too(tmp_path):
    from converters.pytorch_to_onnx import convert

    reports = convert(_tiny_torch(), tmp_path / "m.onnx", ContractOptions("uint8", "nhwc"), fp16=True)
    assert [r.label for r in reports] == ["m.onnx", "m.fp16.onnx"]
    assert check_submission(tmp_path / "m.fp16.onnx").valid
    assert (tmp_path / "m.fp16.onnx").stat().st_size < (tmp_path / "m.onnx").stat().st_size


@pytest.mark.slow  # a real converter process, torch imported in it
def test_checkpoint_with_module_prefix_through_the_cli(tmp_path):
    from samples.cifar_resnet import resnet20

    torch.manual_seed(1)
    model = resnet20()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               tmp_path / "ckpt.th")
    run = subprocess.run([sys.executable, "-m", "converters.pytorch_to_onnx",
                          "--model", "samples.cifar_resnet:resnet20",
                          "--weights", str(tmp_path / "ckpt.th"), "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2",
                          "--input", "uint8", "--layout", "nhwc", "--batch-size", "250",
                          "--output", str(tmp_path / "r.onnx")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "argmax agreement 100.00%" in run.stdout
    contract = check_submission(tmp_path / "r.onnx").contract
    assert contract.batch_size(None) == (250, "fixed batch dimension in the graph")


def test_weights_that_do_not_fit_name_every_misfit_in_one_line(tmp_path):
    from converters.common import ConversionError
    from converters.pytorch_to_onnx import load_weights

    state = dict(_tiny_torch().state_dict())
    state["0.weight"] = torch.zeros(4, 3, 3, 3)
    del state["4.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ConversionError) as refused:
        load_weights(_tiny_torch(), tmp_path / "w.pt")
    message = str(refused.value)
    assert "\n" not in message and message == (
        f"{tmp_path / 'w.pt'}: weights do not fit the model: Missing key(s) (1): 4.bias; Unexpected key(s) (1): "
        "extra.weight; size mismatch for 0.weight: checkpoint [4, 3, 3, 3], model [8, 3, 3, 3]")


def test_a_long_key_list_is_cut_with_a_count(tmp_path):
    from converters.common import ConversionError
    from converters.pytorch_to_onnx import load_weights
    from samples.cifar_resnet import resnet20

    torch.save({"fc.weight": torch.zeros(10, 64)}, tmp_path / "w.pt")
    with pytest.raises(ConversionError) as refused:
        load_weights(resnet20(), tmp_path / "w.pt")
    missing = [key for key in resnet20().state_dict() if not key.endswith("num_batches_tracked")]  # torch fills it
    assert (f"Missing key(s) ({len(missing)}): {', '.join(missing[:5])} and {len(missing) - 5} more; "
            "Unexpected key(s) (1): fc.weight") in str(refused.value)
    assert len(str(refused.value)) < 400


@pytest.mark.slow  # a real converter process, torch imported in it
def test_cli_refuses_a_bad_factory_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "converters.pytorch_to_onnx", "--model", "samples.cifar_resnet",
                          "--output", str(tmp_path / "x.onnx")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "MODULE:FACTORY" in run.stderr and "Traceback" not in run.stderr


def test_a_wrong_export_is_refused_with_a_named_error(tmp_path):
    """GELU exported as ReLU (a bad custom symbolic): the ONNX disagrees with PyTorch and is not kept."""
    from converters.pytorch_to_onnx import convert

    torch.onnx.register_custom_op_symbolic("aten::gelu", lambda g, x, approximate: g.op("Relu", x), 17)
    try:
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10), torch.nn.GELU(),
                                    torch.nn.Linear(10, 10)).eval()
        with pytest.raises(VerificationError, match="disagrees with the source model"):
            convert(model, tmp_path / "bad.onnx", ContractOptions())
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::gelu", 17)
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow  # a real network converted and scored
def test_resnet20_from_shared_weights_scores_915_of_1000(tmp_path, shared_data):
    from builders import fast_config

    from converters.pytorch_to_onnx import convert, load_weights
    from evaluator.scoring.pipeline import score
    from samples.cifar_resnet import resnet20

    weights = shared_data.parents[1] / "models" / "resnet20-12fca82f.th"
    model = resnet20()
    load_weights(model, weights)
    reports = convert(model, tmp_path / "resnet20.onnx", ContractOptions("float32", "nchw", (0.485, 0.456, 0.406),
                                                                          (0.229, 0.224, 0.225)),
                      verify_data=shared_data)
    assert reports[0].argmax_agreement["real"] >= 0.999  # verified on real images, not only random ones
    result = score(tmp_path / "resnet20.onnx", fast_config(shared_data, passes=1), tmp_path / "o")
    assert result.correct == 915


@pytest.mark.slow  # a real network scored on the real subset
def test_committed_sample_is_what_the_readme_says(tmp_path, shared_data):
    """samples/small_cnn.onnx, trained by this project on the 4,000 shared training images: 743/1000."""
    from builders import fast_config

    from evaluator.scoring.pipeline import score

    result = score(ROOT / "samples" / "small_cnn.onnx", fast_config(shared_data, passes=1), tmp_path / "o")
    assert result.correct == 743
