"""The graph inspection's cost beside the rest of ``edl check``: seconds of ``find_evidence`` and their share of
the whole check, on given models and on a synthetic chain of many nodes (the --max-nodes default is 100,000).

    python bench/graph_inspection.py [MODEL.onnx ...] [--nodes 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.contract.check import check_submission  # noqa: E402
from evaluator.contract.evidence import find_evidence  # noqa: E402


def chain(nodes: int) -> onnx.ModelProto:
    """A valid classifier of ``nodes`` operators: a long Add/Relu chain, a pool and a linear layer."""
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])
    graph_nodes, previous = [], "pixels"
    for index in range(nodes - 3):
        inputs = [previous, "bias"] if index % 2 == 0 else [previous]
        graph_nodes.append(helper.make_node("Add" if index % 2 == 0 else "Relu", inputs, [f"t{index}"]))
        previous = f"t{index}"
    graph_nodes += [helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
                    helper.make_node("Flatten", ["pooled"], ["flat"]),
                    helper.make_node("MatMul", ["flat", "weights"], ["scores"])]
    initializers = [numpy_helper.from_array(np.full(1, 0.01, np.float32), "bias"),
                    numpy_helper.from_array(np.ones((3, 10), np.float32), "weights")]
    model = helper.make_model(helper.make_graph(graph_nodes, "chain", [x], [y], initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def measure(path: Path, repeat: int) -> None:
    model = onnx.load(path)
    inspection = statistics.median(_seconds(lambda: find_evidence(model)) for _ in range(repeat))
    whole = statistics.median(_seconds(lambda: check_submission(path)) for _ in range(repeat))
    print(f"{path.name}: {len(model.graph.node):,} nodes, inspection {inspection:.3f} s, whole check {whole:.3f} s "
          f"(inspection {inspection / whole:.1%} of it)")


def _seconds(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for path in args.models or [ROOT / "samples" / "resnet20.onnx"]:
        measure(path, args.repeat)
    if args.nodes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"chain-{args.nodes}.onnx"
            onnx.save(chain(args.nodes), path)
            measure(path, 1)


if __name__ == "__main__":
    main()
