"""The other commands, run as a user runs them: `edl data`, `edl env`, `edl meter`, and score's fairness options."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from builders import PowercapTree, conv_model, make_tarball, oracle_images, python_batch_bytes, save_npz

from evaluator import data
from evaluator.errors import MeterError
from evaluator.score import ScoreOptions, score


def edl(*args: str, env_root=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluator", *args], capture_output=True, text=True)


def test_data_info_and_fetch_from_a_local_copy(tmp_path):
    images, labels = oracle_images(20, correct=20)
    tarball = make_tarball(tmp_path / "cifar-10-python.tar.gz", data.PY_MEMBER, python_batch_bytes(images, labels))
    info = edl("data", "info", str(tarball), "--json")
    assert info.returncode == 0, info.stderr
    document = json.loads(info.stdout)
    assert document["images"] == 20 and document["official"] is False
    assert document["fingerprint"] == data.fingerprint(images, labels)
    refused = edl("data", "fetch", "--from", str(tarball))
    assert refused.returncode == 1 and "not the official CIFAR-10 test set" in refused.stderr
    missing = edl("data", "info")
    assert missing.returncode == 1 and "edl data fetch" in missing.stderr and "Traceback" not in missing.stderr


def test_env_says_what_is_missing_and_why():
    run = edl("env", "--json")
    assert run.returncode == 0, run.stderr
    rows = {row["item"]: row for row in json.loads(run.stdout)["rows"]}
    assert rows["gpu energy (nvml)"]["status"] == "unavailable"
    assert "NVML cannot initialise" in rows["gpu energy (nvml)"]["detail"]
    assert rows["cpu energy (rapl)"]["status"] == "unavailable"
    assert "EDL_POWERCAP_ROOT" in rows["cpu energy (rapl)"]["detail"]
    assert "cuda provider" in rows


def test_env_with_a_gpu_and_rapl(tmp_path, fake_gpu, monkeypatch):
    fake_gpu()
    PowercapTree(tmp_path / "pc", package_watts=[10.0], dram_watts=1.0)
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    rows = {row["item"]: row for row in json.loads(edl("env", "--json").stdout)["rows"]}
    assert rows["gpu 0"]["detail"].startswith("Fake GPU")
    assert rows["nvml energy counter"]["status"] == "ok"
    assert "package0" in rows["cpu energy (rapl)"]["detail"] and "dram0" in rows["cpu energy (rapl)"]["detail"]


def test_meter_seconds_measures_known_watts(tmp_path, fake_gpu, monkeypatch):
    fake_gpu(watts=90.0)
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[40.0]):
        run = edl("meter", "--seconds", "1.5", "--out", str(tmp_path / "m"), "--json")
    assert run.returncode == 0, run.stderr
    energy = json.loads(run.stdout)["energy"]
    assert energy["cpu_j"] == pytest.approx(40.0 * energy["window_s"], rel=0.02)
    assert energy["gpu_j"] == pytest.approx(90.0 * energy["window_s"], rel=0.02)
    assert (tmp_path / "m" / "meter.json").is_file()


def test_meter_a_command_passes_its_exit_code_and_reports_unavailable(tmp_path):
    run = edl("meter", "--out", str(tmp_path / "m"), "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert run.returncode == 3
    assert "total unavailable" in run.stdout and "cpu: unavailable" in run.stdout


def test_meter_needs_a_command_or_seconds():
    run = edl("meter")
    assert run.returncode == 1 and "either a command" in run.stderr


def _dataset(tmp_path):
    images, labels = oracle_images(1000, correct=500)
    return save_npz(tmp_path / "d.npz", images, labels)


def test_cooldown_waits_for_the_target_temperature(tmp_path, fake_gpu):
    fake_gpu(temps="70,66,61,55,49,44")
    result = score(conv_model(tmp_path / "m.onnx"), ScoreOptions(
        data=_dataset(tmp_path), out_dir=tmp_path / "o", passes=1, idle_seconds=0, cooldown_seconds=30,
        target_temp_c=50.0, plot=False))
    cooldown = result["fairness"]["cooldown"]
    assert result["fairness"]["gpu_start"]["temperature_c"] == 70
    assert cooldown["reached"] is True and cooldown["start_c"] == 66 and cooldown["end_c"] == 49


def test_cooldown_is_bounded(tmp_path, fake_gpu):
    fake_gpu(temps="80,79,80,79,80,79,80,79,80")
    result = score(conv_model(tmp_path / "m.onnx"), ScoreOptions(
        data=_dataset(tmp_path), out_dir=tmp_path / "o", passes=1, idle_seconds=0, cooldown_seconds=2,
        target_temp_c=40.0, plot=False))
    assert result["fairness"]["cooldown"]["reached"] is False
    assert result["fairness"]["cooldown"]["waited_s"] <= 3.5


def test_exclusive_refuses_when_others_use_the_gpu(tmp_path, fake_gpu, monkeypatch):
    fake_gpu()
    monkeypatch.setenv("FAKE_NVML_PIDS", "4242")
    options = dict(data=_dataset(tmp_path), out_dir=tmp_path / "o", passes=1, idle_seconds=0, cooldown_seconds=0,
                   plot=False)
    result = score(conv_model(tmp_path / "m.onnx"), ScoreOptions(**options))
    assert any("pids [4242]" in w for w in result["warnings"])
    with pytest.raises(MeterError, match="--exclusive refuses"):
        score(conv_model(tmp_path / "m.onnx"), ScoreOptions(**options, exclusive=True))


def test_read_only_results_folder_fails_before_measuring(tmp_path):
    target = tmp_path / "file-not-folder"
    target.write_text("x")
    run = edl("score", str(conv_model(tmp_path / "m.onnx")), "--data", str(_dataset(tmp_path)),
              "--out", str(target / "sub"))
    assert run.returncode == 1 and "cannot write results" in run.stderr and "Traceback" not in run.stderr


def test_score_uses_the_verified_cache_without_data_option(tmp_path):
    """What `edl data fetch` leaves behind is what `edl score` uses by default, marked official."""
    import os

    images, labels = oracle_images(300, correct=270)
    data.store_cache(images, labels, "test archive", True, data.default_cache_dir())
    info = edl("data", "info", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["official"] is True
    run = edl("score", str(conv_model(tmp_path / "m.onnx")), "--passes", "1", "--idle-seconds", "0", "--cooldown",
              "0", "--out", str(tmp_path / "o"), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["data"]["official"] is True and result["data"]["images"] == 300
    assert os.environ["EDL_DATA_DIR"] in str(data.default_cache_dir())
