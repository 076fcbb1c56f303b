"""PyTorch to a verified edl submission.

    python -m converters.pytorch_to_onnx --model samples.cifar_resnet:resnet20 \\
        --weights resnet20.th --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --output resnet20.onnx

The model is wrapped so that the ONNX input follows the submission contract (uint8 or float
pixels, NCHW or NHWC) with the normalisation inside the graph, exported, and verified against
PyTorch's own outputs.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from converters.common import (
    ContractOptions,
    ConversionError,
    Verification,
    add_contract_arguments,
    contract_from_args,
    finish,
    require,
    run_cli,
    set_batch_metadata,
)


def load_factory(spec: str) -> Any:
    """``MODULE:FACTORY`` to the model it builds."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ConversionError(f"--model {spec!r}: give MODULE:FACTORY, e.g. samples.cifar_resnet:resnet20")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as exc:
        raise ConversionError(f"--model {spec!r}: cannot import the factory ({exc})") from None
    return factory()


def load_weights(model: Any, path: Path) -> None:
    """A state dict, or a checkpoint wrapping one in ``state_dict``; a ``module.`` prefix is dropped."""
    torch = require("torch", "torch")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for unreadable or unsafe files
        raise ConversionError(f"{path}: not a loadable PyTorch checkpoint ({str(exc).splitlines()[0]})") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: holds no state dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConversionError(f"{path}: weights do not fit the model: {misfit_summary(str(exc))}") from None


SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from "
                           r"checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)")


def misfit_summary(text: str, keys_shown: int = 5, most: int = 8) -> str:
    """torch's ``load_state_dict`` error in one line: missing and unexpected keys (a few, and how many), sizes."""
    parts = []
    for line in text.splitlines()[1:]:  # the first line only says "Error(s) in loading state_dict for X"
        line = line.strip().rstrip(". ")
        head, _, listing = line.partition(": ")
        keys = re.findall(r'"([^"]*)"', listing) if head.endswith("in state_dict") else []
        if keys:
            more = f" and {len(keys) - keys_shown} more" if len(keys) > keys_shown else ""
            line = f"{head.removesuffix(' in state_dict')} ({len(keys)}): {', '.join(keys[:keys_shown])}{more}"
        elif found := SIZE_MISMATCH.fullmatch(line):
            line = f"size mismatch for {found[1]}: checkpoint {found[2]}, model {found[3]}"
        if line:
            parts.append(line)
    if len(parts) > most:
        parts = [*parts[:most], f"and {len(parts) - most} more"]
    return "; ".join(parts) or text.strip().splitlines()[0]


def contract_wrapper(model: Any, options: ContractOptions) -> Any:
    """The model behind the contract's input: to float NCHW in [0, 1], normalised, inside the graph."""
    torch = require("torch", "torch")

    module: Any = torch.nn.Module

    class SubmissionWrapper(module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            mean = options.mean or (0.0, 0.0, 0.0)
            std = options.std or (1.0, 1.0, 1.0)
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, pixels: Any) -> Any:
            x = pixels if options.input_dtype == "float32" else pixels.float()
            if options.input_dtype == "uint8":
                x = x / 255.0
            if options.layout == "nhwc":
                x = x.permute(0, 3, 1, 2)
            if options.mean is not None:
                x = (x - self.mean) / self.std
            return self.model(x)

    return SubmissionWrapper().eval()


def convert(model: Any, output: Path, options: ContractOptions, fp16: bool = False,
            verify_data: Path | None = None, opset: int = 17) -> list[Verification]:
    """Export ``model`` behind the contract to ``output`` and verify it; returns the verifications."""
    torch = require("torch", "torch")
    wrapper = contract_wrapper(model.eval(), options)
    batch = options.batch_size or 2
    shape = (batch, 3, 32, 32) if options.layout == "nchw" else (batch, 32, 32, 3)
    dtype = {"uint8": torch.uint8, "float32": torch.float32, "float16": torch.float16}[options.input_dtype]
    example = torch.zeros(shape, dtype=dtype)
    dynamic = None if options.batch_size else {"pixels": {0: "N"}, "scores": {0: "N"}}
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(wrapper, (example,), str(output), input_names=["pixels"], output_names=["scores"],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise ConversionError(f"torch.onnx.export failed: {str(exc).splitlines()[0]}") from None
    set_batch_metadata(output, options.batch_size)

    def reference(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return wrapper(torch.from_numpy(inputs)).numpy()

    return finish(output, reference, options, fp16, verify_data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a PyTorch model to a verified edl submission.")
    parser.add_argument("--model", required=True, help="MODULE:FACTORY building the model")
    parser.add_argument("--weights", type=Path, help="a state dict or checkpoint (module. prefixes are fine)")
    add_contract_arguments(parser)
    args = parser.parse_args(argv)
    options = contract_from_args(args)
    require("torch", "torch")
    model = load_factory(args.model)
    if args.weights is not None:
        load_weights(model, args.weights)
    for report in convert(model, args.output, options, args.fp16, args.verify_data, args.opset):
        print(report.summary())
    print(f"wrote {args.output}" + (f" and {args.output.with_suffix('.fp16.onnx')}" if args.fp16 else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
