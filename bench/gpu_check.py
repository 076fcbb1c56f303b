"""The GPU machine's check, prepared to run in one short call (device time is scarce).

    bash ../shared/device/make-gpu-bundle.sh          # here, once: writes .gpu/
    # device call, carry [".gpu"]:
    source .gpu/prelude.sh && python3 bench/gpu_check.py --out $OUT --passes 200

For each configuration it runs `edl score --provider cuda` in a child process, and beside it a bare
IOBinding loop whose joules come from NVML's total-energy counter read directly before and after
its passes (an independent meter). It prints one table: J per pass from edl and from the bare
loop, their ratio, images/s of both, the nodes off CUDA, and writes every result under --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.data import load_path  # noqa: E402
from evaluator.runtime import BoundRunner, RuntimeSettings, create_session, make_batches  # noqa: E402
from evaluator.submission import check_submission  # noqa: E402

CONFIGS = [  # name, model, extra edl arguments, runtime settings for the bare loop
    ("fp32 default", "samples/resnet20.onnx", [], {}),
    ("fp32 no-nhwc", "samples/resnet20.onnx", ["--no-prefer-nhwc"], {"prefer_nhwc": False}),
    ("fp32 nhwc+graphs", "samples/resnet20.onnx", ["--cuda-graph"], {"cuda_graph": True}),
    ("fp16 nhwc+graphs", "samples/resnet20.fp16.onnx", ["--cuda-graph"], {"cuda_graph": True}),
]


def bare_joules_per_pass(model: Path, images: np.ndarray, passes: int, settings: dict, gpu: int) -> tuple[float, float]:
    """A loop with the same binding as edl, metered only by NVML's counter around its passes."""
    import pynvml

    contract = check_submission(model).contract
    session, info = create_session(model, RuntimeSettings(provider="cuda", gpu=gpu, **settings))
    batches, _ = make_batches(images, contract, contract.batch_size(None)[0])
    runner = BoundRunner(session, contract, batches, info, gpu, len(images))
    runner.run_pass()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
    start_mj, start = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.monotonic()
    for _ in range(passes):
        runner.run_pass()
    seconds = time.monotonic() - start
    joules = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - start_mj) / 1000
    return joules / passes, passes * len(images) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None, help="default: 10,000 images tiled from ../shared")
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="names of configurations to run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:  # the full test set is not on these machines: 10,000 real images, the subset tiled
        subset = load_path(ROOT.parent / "shared" / "data" / "cifar10-test-first1000.npz")
        data = args.out / "tiled10k.npz"
        np.savez(data, x=np.tile(subset.images, (10, 1, 1, 1)), y=np.tile(subset.labels, 10))
    images = load_path(data).images
    env = subprocess.run([sys.executable, "-m", "evaluator", "env", "--json"], capture_output=True, text=True)
    (args.out / "env.json").write_text(env.stdout)
    rows = []
    for name, model, extra, settings in CONFIGS:
        if args.only and name not in args.only:
            continue
        folder = args.out / name.replace(" ", "_").replace("+", "_")
        run = subprocess.run([sys.executable, "-m", "evaluator", "score", str(ROOT / model), "--provider", "cuda",
                              "--gpu", str(args.gpu), "--data", str(data), "--passes", str(args.passes),
                              "--idle-seconds", "5", "--cooldown", "20", "--out", str(folder), "--json", *extra],
                             capture_output=True, text=True)
        if run.returncode:
            rows.append({"config": name, "error": run.stderr.strip().splitlines()[-1:]})
            continue
        result = json.loads(run.stdout)
        bare_j, bare_ips = bare_joules_per_pass(ROOT / model, images, args.passes, settings, args.gpu)
        energy = result["energy"]
        rows.append({
            "config": name,
            "edl_j_per_pass": energy["per_pass_j"],
            "edl_gpu_j_per_pass": energy["gpu_j"] / args.passes if energy["gpu_j"] is not None else None,
            "bare_nvml_j_per_pass": bare_j,
            "gpu_ratio_edl_over_bare": (energy["gpu_j"] / args.passes / bare_j) if energy["gpu_j"] else None,
            "edl_images_per_s": result["images_per_second"],
            "bare_images_per_s": bare_ips,
            "counter_vs_integral": energy["domains"]["gpu"].get("counter_vs_integral"),
            "idle_w": (energy.get("idle") or {}).get("watts"),
            "nodes_off_cuda": len(result["provider"]["nodes_off_provider"]),
            "cuda_graph": result["provider"]["cuda_graph"],
            "accuracy": result["accuracy"],
        })
    (args.out / "gpu_check.json").write_text(json.dumps(rows, indent=2))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
