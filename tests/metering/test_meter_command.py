"""`edl meter`: the same meter around any command, or the idle machine."""

from __future__ import annotations

import json
import sys

import pytest
from builders import PowercapTree


def test_meter_seconds_measures_known_watts(tmp_path, fake_gpu, monkeypatch, cli):
    fake_gpu(watts=90.0)
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[40.0]) as tree:
        run = cli("meter", "--seconds", "1.5", "--out", tmp_path / "m", "--json")
    assert run.exit_code == 0, run.stderr
    energy = json.loads(run.stdout)["energy"]
    late_j = 40.0 * 2 * tree.lag_s()  # the tree's writer shares this process: late at both edges when loaded
    assert energy["cpu_j"] == pytest.approx(40.0 * energy["window_s"], abs=0.02 * 40.0 * energy["window_s"] + late_j)
    assert energy["gpu_j"] == pytest.approx(90.0 * energy["window_s"], rel=0.02)
    assert json.loads((tmp_path / "m" / "meter.json").read_text())["kind"] == "edl-meter"


def test_meter_a_command_passes_its_exit_code_and_reports_unavailable(tmp_path, cli):
    run = cli("meter", "--out", tmp_path / "m", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert run.exit_code == 3
    assert "total unavailable" in run.stdout and "cpu: unavailable" in run.stdout


@pytest.mark.parametrize(("args", "message"), [
    ((), "give either a command after `--` or --seconds N, not both and not neither"),
    (("--seconds", "-1"), "--seconds -1.0: give a number of seconds, 0 or more"),
    (("--seconds", "1", "--sample-ms", "0"), "--sample-ms 0.0: must be more than 0"),
])
def test_meter_refuses_bad_arguments_in_one_line(tmp_path, cli, args, message):
    run = cli("meter", "--out", tmp_path / "m", *args)
    assert run.exit_code == 2 and run.stderr.strip() == f"error: {message}"  # usage errors exit 2
