"""Ray clusters of simulated hosts, and a folder of real models, for the score-dir tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import busy_colour_model, colour_images, colour_model, save_npz

TESTS = Path(__file__).parents[1]
ROOT = TESTS.parent


def host_node(name: str, gpu: str, folder: Path) -> dict:
    """One simulated host: its own lock file, GPU model (through the fake NVML) and GPU-kind resource."""
    env = {"EDL_HOST_LOCK": str(folder / f"{name}.lock"), "EDL_NVML_MODULE": "fake_pynvml", "FAKE_NVML_MODE": "",
           "FAKE_NVML_NAME": gpu, "FAKE_NVML_WATTS": "50", "FAKE_NVML_TEMPS": "40",
           "EDL_POWERCAP_ROOT": str(folder / "no-powercap"), "EDL_DATA_DIR": str(folder / f"{name}-cache"),
           "PYTHONPATH": f"{TESTS}:{ROOT}", "RAY_AUTH_MODE": "disabled"}
    kind = "edl-gpu-" + gpu.lower().replace(" ", "-")
    return {"num_cpus": 1, "resources": {"edl-host": 1, kind: 1}, "labels": {"edl.host": name}, "env_vars": env,
            "object_store_memory": 100 << 20}


@pytest.fixture(scope="session")
def two_hosts() -> Callable[..., tuple[object, object]]:
    """Makes a cluster of two simulated hosts (host-a: Fake A100, host-b: Fake H200 unless told); returns it and
    host-b's node."""

    def make(folder: Path, second_gpu: str = "Fake H200") -> tuple[object, object]:
        from ray.cluster_utils import Cluster

        os.environ["RAY_AUTH_MODE"] = "disabled"
        cluster = Cluster(initialize_head=True,
                          head_node_args=host_node("host-a", "Fake A100", folder) | {"include_dashboard": False})
        return cluster, cluster.add_node(**host_node("host-b", second_gpu, folder))

    return make


@pytest.fixture
def models(tmp_path):
    images, labels = colour_images(400, correct=380)
    data = save_npz(tmp_path / "d.npz", images, labels)
    subs = tmp_path / "subs"
    subs.mkdir()
    colour_model(subs / "plain.onnx")
    busy_colour_model(subs / "busy.onnx", channels=8)
    (subs / "broken.onnx").write_bytes(b"not a model")
    return data, subs
