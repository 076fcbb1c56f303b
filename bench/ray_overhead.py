"""What does Ray cost? score-dir's wall time on the local backend, on a local Ray instance, and on two simulated hosts.

Scores the same folder (copies of samples/resnet20.onnx on the shared 1,000 test images, CPU provider,
--repeat 1) three ways and prints each wall time, the Ray backend's added seconds per submission against
the local backend, and the 2-host time. On this 2-core machine two simulated hosts share the same two
cores, so the 2-host run cannot be faster than one host: it shows the scheduling works and what it
costs; a real cluster of GPU hosts runs its hosts' scorings truly in parallel.

    python bench/ray_overhead.py [--submissions 4] [--passes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from evaluator.batch.directory import score_directory  # noqa: E402
from evaluator.config import BatchConfig, MeterConfig, RuntimeConfig, ScoreConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "cifar10-test-first1000.npz"


def timed(subs: Path, out: Path, config: ScoreConfig, batch: BatchConfig) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    summary = score_directory(subs, out, config, batch)
    return time.monotonic() - started, summary.counts


def two_host_cluster(folder: Path):  # a ray Cluster
    from ray.cluster_utils import Cluster

    def host(name: str) -> dict:
        env = {"EDL_HOST_LOCK": str(folder / f"{name}.lock"), "RAY_AUTH_MODE": "disabled",
               "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
        return {"num_cpus": 1, "resources": {"edl-host": 1, "edl-gpu-cpu-only": 1}, "labels": {"edl.host": name},
                "env_vars": env, "object_store_memory": 150 << 20}

    cluster = Cluster(initialize_head=True, head_node_args=host("host-a") | {"include_dashboard": False})
    cluster.add_node(**host("host-b"))
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=4)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    config = ScoreConfig(data=args.data, passes=args.passes, runtime=RuntimeConfig(provider="cpu"),
                         meter=MeterConfig(idle_s=0, cooldown_s=0, plot=False))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subs = folder / "subs"
        subs.mkdir()
        for index in range(args.submissions):
            shutil.copy(ROOT / "samples" / "resnet20.onnx", subs / f"resnet20_{index}.onnx")
        local_s, local = timed(subs, folder / "local", config, BatchConfig())
        ray_s, on_ray = timed(subs, folder / "ray", config, BatchConfig(backend="ray"))
        cluster = two_host_cluster(folder)
        try:
            two_s, on_two = timed(subs, folder / "two", config, BatchConfig(backend="ray", ray_address=cluster.address))
        finally:
            cluster.shutdown()
    print(json.dumps({
        "submissions": args.submissions, "passes": args.passes, "images": 1000, "cpu_count": os.cpu_count(),
        "local_backend_s": round(local_s, 2), "ray_local_instance_s": round(ray_s, 2),
        "ray_added_s_per_submission": round((ray_s - local_s) / args.submissions, 2),
        "ray_two_simulated_hosts_s": round(two_s, 2), "counts": [local, on_ray, on_two],
    }, indent=2))


if __name__ == "__main__":
    main()
