from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent
SHARED = ROOT.parent / "shared"
if str(TESTS) not in sys.path:  # builders and fake_pynvml; the spawn sampler inherits sys.path too
    sys.path.insert(0, str(TESTS))


def _isolate(patch: pytest.MonkeyPatch, folders: pytest.TempPathFactory) -> None:
    patch.setenv("EDL_DATA_DIR", str(folders.mktemp("cache")))
    patch.setenv("EDL_POWERCAP_ROOT", str(folders.mktemp("nopowercap") / "absent"))
    patch.setenv("EDL_NVML_MODULE", "fake_pynvml")
    patch.setenv("FAKE_NVML_MODE", "absent")
    patch.setenv("PYTHONPATH", str(TESTS) + ":" + str(ROOT))
    patch.setenv("EDL_HOST_LOCK", str(folders.mktemp("lock") / "edl-scoring.lock"))


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """Never touch the user's cache, the host's RAPL or a real GPU from the tests."""
    _isolate(monkeypatch, tmp_path_factory)


@pytest.fixture(scope="module")
def module_env(tmp_path_factory):
    """The same isolation for a module-scoped fixture (one scoring shared by a module's tests), which runs before
    the autouse one; yields the MonkeyPatch for more."""
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, tmp_path_factory)
        yield patch


@pytest.fixture
def fake_gpu(monkeypatch):
    """A present fake GPU drawing ``watts``; returns a setter.

    ``gpus`` describes several boards (FAKE_NVML_GPUS, see fake_pynvml) and ``watts`` may then be a
    list, "100,250". ``visible`` and ``order`` are CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, unset
    unless given: the host's own would not name the fake's boards.
    """

    def configure(watts: float | str = 100.0, mode: str = "", step_s: float = 0.0, temps: str = "40",
                  gpus: str = "", visible: str | None = None, order: str | None = None) -> None:
        monkeypatch.setenv("FAKE_NVML_MODE", mode)
        monkeypatch.setenv("FAKE_NVML_WATTS", str(watts))
        for name, value in (("FAKE_NVML_GPUS", gpus or None), ("CUDA_VISIBLE_DEVICES", visible),
                            ("CUDA_DEVICE_ORDER", order)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("FAKE_NVML_STEP_S", str(step_s))
        monkeypatch.setenv("FAKE_NVML_EPOCH", str(time.monotonic()))
        monkeypatch.setenv("FAKE_NVML_TEMPS", temps)
        import fake_pynvml

        monkeypatch.setattr(fake_pynvml, "_temperature_calls", 0)

    return configure


@pytest.fixture
def shared_data() -> Path:
    path = SHARED / "data" / "cifar10-test-first1000.npz"
    if not path.is_file():
        pytest.skip(f"real CIFAR-10 subset not available ({path} absent: ../shared is only on project machines)")
    return path


@pytest.fixture
def cli():
    """Run `edl ARGS...` in this process, as a user would from a shell; returns typer's Result."""
    from typer.testing import CliRunner

    from evaluator.cli.main import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke
