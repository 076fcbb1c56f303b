"""Does the harness add work? `edl score` against a bare onnxruntime IOBinding loop, side by side.

Prints images/s of each (best of --rounds, interleaved so that both see the same machine state),
their ratio (target >= 0.97), the start-up time of `edl score` (check + session + upload), and the
peak resident memory of an `edl score` process (target < 1 GB).

    python bench/score_vs_bare.py [--model samples/resnet20.onnx] [--data X.npz] [--provider cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.config import MeterConfig, RuntimeConfig, ScoreConfig  # noqa: E402
from evaluator.contract.check import check_submission  # noqa: E402
from evaluator.data.store import load_path  # noqa: E402
from evaluator.runtime.runner import make_batches  # noqa: E402
from evaluator.scoring.pipeline import score  # noqa: E402


def bare_loop(model: Path, images: np.ndarray, batch_size: int, passes: int, provider: str) -> float:
    """The least a harness can do: one session, batches uploaded once, IOBinding, outputs fetched."""
    providers = ["CUDAExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(model), providers=providers)
    device = "cuda" if provider == "cuda" else "cpu"
    contract = check_submission(model).contract  # the same input form as edl feeds
    batches, _ = make_batches(images, contract, batch_size)
    bindings = []
    for batch in batches:
        value = ort.OrtValue.ortvalue_from_numpy(batch, device, 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input(session.get_inputs()[0].name, value)
        binding.bind_output(session.get_outputs()[0].name, device, 0)
        bindings.append((value, binding))
    for _, binding in bindings:  # warm-up pass
        session.run_with_iobinding(binding)
    start = time.perf_counter()
    for _ in range(passes):
        for _, binding in bindings:
            session.run_with_iobinding(binding)
            binding.copy_outputs_to_cpu()
    return passes * len(images) / (time.perf_counter() - start)


def edl_loop(model: Path, data: Path, passes: int, provider: str, out: Path) -> tuple[float, float]:
    started = time.perf_counter()
    config = ScoreConfig(data=data, passes=passes, runtime=RuntimeConfig(provider=provider),
                         meter=MeterConfig(idle_s=0, cooldown_s=0, plot=False))
    result = score(model, config, out)
    total = time.perf_counter() - started
    return result.runs[0].images_per_second, total - result.runs[0].seconds


def peak_memory_mb(model: Path, data: Path, provider: str, out: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-m", "evaluator", "score", str(model), "--data", str(data), "--passes", "3",
                    "--idle-seconds", "0", "--cooldown", "0", "--provider", provider, "--out", str(out), "--json"],
                   check=True, capture_output=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(before, after) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "samples" / "resnet20.onnx")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-test-first1000.npz")
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if not data.is_file():  # no shared data: synthetic images of the same shape
            rng = np.random.default_rng(0)
            data = Path(tmp) / "synthetic.npz"
            np.savez(data, x=rng.integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, 1000))
        images = load_path(data).images
        bare, harness, startup = [], [], []
        batch_size = check_submission(args.model).contract.batch_size(None)[0]
        for round_index in range(args.rounds):
            bare.append(bare_loop(args.model, images, batch_size, args.passes, args.provider))
            ips, setup = edl_loop(args.model, data, args.passes, args.provider, Path(tmp) / f"r{round_index}")
            harness.append(ips)
            startup.append(setup)
        peak = peak_memory_mb(args.model, data, args.provider, Path(tmp) / "mem")
    report = {
        "model": args.model.name,
        "provider": args.provider,
        "images": len(images),
        "batch_size": batch_size,
        "passes": args.passes,
        "bare_images_per_s": max(bare),
        "edl_images_per_s": max(harness),
        "ratio_edl_over_bare": max(harness) / max(bare),
        "edl_outside_window_s_min": min(startup),  # check, data, session, upload, sampler, report
        "edl_peak_rss_mb": peak,
        "ort": ort.__version__,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
