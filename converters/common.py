"""What every converter shares: the contract options, verification against the source, fp16, final check.

A converter is only as good as its proof: every ONNX file it writes is run with onnxruntime on
random inputs and on real CIFAR-10 images and compared with the source framework's outputs;
a disagreement beyond the thresholds is a ``VerificationError`` and the file is not kept.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.contract.spec import BATCH_METADATA_KEY, INPUT_DTYPES, LAYOUTS, model_input
from evaluator.errors import onnxruntime_message

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConversionError(Exception):
    """The source model could not be converted; the message says why."""


class VerificationError(ConversionError):
    """The ONNX model disagrees with the source framework beyond the thresholds."""


class MissingFrameworkError(ConversionError):
    """The converter's framework is not installed."""


def require(module: str, extra: str) -> Any:
    """Import a framework lazily, with the install command when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingFrameworkError(
            f"{module} is not installed ({exc}); install the [{extra}] extra: pip install 'edl-evaluator[{extra}]' "
            f"from the package index, or pip install -e '.[{extra}]' in a checkout of edl"
        ) from None


@dataclass(frozen=True)
class ContractOptions:
    """How the exported model meets the submission contract."""

    input_dtype: str = "float32"  # uint8 | float32 | float16
    layout: str = "nchw"  # nchw | nhwc
    mean: tuple[float, float, float] | None = None  # None: the model normalises (or needs none)
    std: tuple[float, float, float] | None = None
    batch_size: int | None = None  # None: a dynamic batch axis


@dataclass(frozen=True)
class Thresholds:
    max_abs_diff: float = 1e-3
    min_argmax_agreement: float = 0.999


FP16_THRESHOLDS = Thresholds(max_abs_diff=0.1, min_argmax_agreement=0.98)


@dataclass
class Verification:
    """How the ONNX model compares with the source on each input set."""

    label: str
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    argmax_agreement: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{name}: max |diff| {self.max_abs_diff[name]:.2e}, argmax agreement "
                 f"{self.argmax_agreement[name]:.2%}" for name in self.max_abs_diff]
        return f"{self.label}: " + "; ".join(parts)


def parse_triple(text: str | None, what: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConversionError(f"--{what} {text!r}: give three numbers, R,G,B") from None
    if len(values) != 3:
        raise ConversionError(f"--{what} {text!r}: give three numbers, R,G,B")
    return values[0], values[1], values[2]


def add_contract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mean", help="per-channel mean R,G,B of [0,1] pixels, applied inside the graph")
    parser.add_argument("--std", help="per-channel std R,G,B, applied inside the graph")
    parser.add_argument("--input", dest="input_dtype", default="float32", choices=INPUT_DTYPES)
    parser.add_argument("--layout", default="nchw", choices=[layout.lower() for layout in LAYOUTS])
    parser.add_argument("--batch-size", type=int, help="fix the batch dimension (default: dynamic)")
    parser.add_argument("--output", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--fp16", action="store_true", help="also write OUTPUT with .fp16.onnx, verified too")
    parser.add_argument("--verify-data", type=Path, help="real CIFAR-10 images for verification (any --data form)")
    parser.add_argument("--opset", type=int, default=17)


def contract_from_args(args: argparse.Namespace) -> ContractOptions:
    mean, std = parse_triple(args.mean, "mean"), parse_triple(args.std, "std")
    if (mean is None) != (std is None):
        raise ConversionError("give --mean and --std together")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConversionError("--batch-size must be positive")
    return ContractOptions(args.input_dtype, args.layout, mean, std, args.batch_size)


def contract_inputs(images_nhwc: np.ndarray, options: ContractOptions) -> np.ndarray:
    """uint8 NHWC images in the form the exported model takes: the evaluator's own conversion."""
    return model_input(images_nhwc, options.input_dtype, options.layout)


def _real_images(verify_data: Path | None) -> np.ndarray | None:
    """--verify-data, else the CIFAR-10 test set edl has cached (`edl data fetch`), else none."""
    from evaluator.data.store import load_cached, load_path

    if verify_data is not None:
        return load_path(verify_data).images
    cached = load_cached()
    return None if cached is None else cached.images


def verification_sets(options: ContractOptions, verify_data: Path | None, count: int = 256) -> dict[str, np.ndarray]:
    """Random images, and real CIFAR-10 test images when any are at hand."""
    rng = np.random.default_rng(0)
    size = options.batch_size or count
    sets = {"random": contract_inputs(rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8), options)}
    images = _real_images(verify_data)
    if images is not None:
        take = options.batch_size or min(len(images), 1000)
        if len(images) >= take:
            sets["real"] = contract_inputs(images[:take], options)
    return sets


def run_onnx(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def verify(path: Path, reference: Callable[[np.ndarray], np.ndarray], sets: dict[str, np.ndarray],
           thresholds: Thresholds, label: str) -> Verification:
    """Compare onnxruntime's outputs with the source's on each set; raise VerificationError past the thresholds."""
    result = Verification(label)
    problems = []
    for name, inputs in sets.items():
        expected = np.asarray(reference(inputs), dtype=np.float64)
        try:
            got = np.asarray(run_onnx(path, inputs), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise VerificationError(f"{label}: onnxruntime cannot run the exported model: "
                                    f"{onnxruntime_message(exc)}") from None
        if got.shape != expected.shape:
            raise VerificationError(
                f"{label}: ONNX output shape {got.shape} differs from the source's {expected.shape}")
        diff = float(np.max(np.abs(got - expected)))
        agreement = float(np.mean(got.argmax(1) == expected.argmax(1))) if got.ndim == 2 else float(
            np.mean(got == expected))
        result.max_abs_diff[name], result.argmax_agreement[name] = diff, agreement
        if not diff <= thresholds.max_abs_diff:
            problems.append(f"{name} images: max |diff| {diff:.3g} > {thresholds.max_abs_diff:g}")
        if agreement < thresholds.min_argmax_agreement:
            problems.append(f"{name} images: argmax agreement {agreement:.2%} < {thresholds.min_argmax_agreement:.2%}")
    if problems:
        raise VerificationError(f"{label} disagrees with the source model: " + "; ".join(problems))
    return result


def set_batch_metadata(path: Path, batch_size: int | None) -> None:
    if batch_size is None:
        return
    import onnx

    model = onnx.load(path)
    onnx.helper.set_model_props(model, {BATCH_METADATA_KEY: str(batch_size)})
    onnx.save(model, path)


def fp16_copy(path: Path) -> Path:
    """A float16 copy (onnxconverter-common), inputs and outputs kept as they are."""
    import onnx

    float16 = require("onnxconverter_common.float16", "torch")
    try:  # a float16 input makes the converter think the model is converted already: it is not
        model = float16.convert_float_to_float16(onnx.load(path), keep_io_types=True, check_fp16_ready=False)
    except Exception as exc:  # noqa: BLE001 - the converter raises several types
        raise ConversionError(f"float16 conversion failed: {str(exc).splitlines()[0]}") from None
    # The converter leaves the model's own Cast-to-float32 nodes (the contract wrapper's pixel casts)
    # pointing at float32, which then meets float16 weights: retarget them, and drop their stale types.
    retargeted: set[str] = set()
    graph_outputs = {output.name for output in model.graph.output}
    for node in model.graph.node:
        if (node.op_type == "Cast" and not node.name.startswith(("graph_input_cast", "graph_output_cast"))
                and not graph_outputs.intersection(node.output)):
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                    attribute.i = onnx.TensorProto.FLOAT16
                    retargeted.update(node.output)
    kept = [vi for vi in model.graph.value_info if vi.name not in retargeted]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    target = path.with_suffix(".fp16.onnx")
    onnx.save(model, target)
    return target


def final_check(path: Path) -> None:
    """The same checks as `edl check`: a converter never hands over a file the evaluator refuses."""
    from evaluator.contract.check import check_submission

    report = check_submission(path)
    if not report.valid:
        raise ConversionError(f"{path} fails `edl check`: " + "; ".join(report.problems))


def finish(output: Path, reference: Callable[[np.ndarray], np.ndarray], options: ContractOptions,
           make_fp16: bool, verify_data: Path | None) -> list[Verification]:
    """Verify, optionally make and verify the fp16 copy, then check both like `edl check`."""
    sets = verification_sets(options, verify_data)
    try:
        reports = [verify(output, reference, sets, Thresholds(), output.name)]
        final_check(output)
        if make_fp16:
            half = fp16_copy(output)
            try:
                reports.append(verify(half, reference, sets, FP16_THRESHOLDS, half.name))
                final_check(half)
            except ConversionError:
                half.unlink(missing_ok=True)
                raise
    except ConversionError:
        output.unlink(missing_ok=True)
        raise
    return reports


def run_cli(main: Callable[[list[str] | None], int]) -> None:
    """Run a converter's main; its own errors become a message and exit 2, not a traceback."""
    try:
        sys.exit(main(None))
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
