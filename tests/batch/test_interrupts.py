"""Ctrl-C and kill -9 at several moments of a real `edl score-dir` process, then a rerun.

Whatever the moment: every result folder is whole (its result.json and every file it names, by hash)
or absent, no half-measured run is left staged after Ctrl-C, no scoring child outlives the batch,
everything the results root held before is still there byte for byte (moved into _archive/ at most),
and the same command then finishes the batch, measuring exactly the runs that were not yet whole (a run
measured before the interrupt is kept, never measured twice).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import conv_model, oracle_images, oracle_model, save_npz

from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME

pytestmark = pytest.mark.slow
PARTIAL = "_partial"


def _command(subs: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-B", "-m", "evaluator", "score-dir", str(subs), "--data", str(data), "--out", str(out),
            "--passes", "5", "--repeat", "2", "--idle-seconds", "0", "--cooldown", "0", "--no-plot"]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """Data, and a results root holding an earlier batch's result (another submission) under the same settings."""
    root = tmp_path_factory.mktemp("earlier")
    images, labels = oracle_images(1000, correct=960)
    data = save_npz(root / "data.npz", images, labels)
    (root / "old_subs").mkdir()
    oracle_model(root / "old_subs" / "old.onnx")
    out = root / "out"
    env = os.environ | {"PYTHONPATH": f"{Path(__file__).parents[1]}:{Path(__file__).parents[2]}"}
    done = subprocess.run(_command(root / "old_subs", data, out), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return data, out


def _assert_whole_or_absent(out: Path) -> None:
    for folder in out.iterdir():
        if folder.is_dir() and not folder.name.startswith("_"):
            result = read_result(folder / RESULT_NAME)  # raises if absent or cut short
            for run in result.runs:
                for record in (run.samples, run.timeline):
                    if record is not None:
                        file = folder / record.name
                        assert hashlib.sha256(file.read_bytes()).hexdigest() == record.sha256, file


def _assert_earlier_intact(out: Path, before: dict[str, str]) -> None:
    now = _hashes(out)
    for name, digest in before.items():
        places = [path for path, found in now.items() if found == digest
                  and (path == name or (path.startswith("_archive/") and path.endswith("/" + name)))]
        assert places, f"{name} from before the batch is gone or changed"


def _no_child_of(out: Path) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = []
        for entry in Path("/proc").iterdir():
            try:
                command = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"evaluator.batch.child" in command and str(out).encode() in command and state != "Z":
                alive.append(entry.name)
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _staged(out: Path, name: str, run: int) -> Callable[[], bool]:
    return lambda: (out / PARTIAL / name / f"run-{run}.json").exists()


MOMENTS: dict[str, Callable[[Path], Callable[[], bool]]] = {
    "starting": lambda out: lambda: True,  # at once: imports, data, planning
    "first run measuring": lambda out: lambda: (out / PARTIAL / "s1" / ".job.json").exists(),
    "second submission measuring": lambda out: _staged(out, "s1", 1),
    "second round": lambda out: _staged(out, "s1", 2),
    "publishing": lambda out: lambda: (out / "s1" / RESULT_NAME).exists(),
}


# Publishing takes milliseconds: Ctrl-C there would land after it; kill -9 tries, and a unit test
# (test_never_lose) builds the exact state a cut between the two renames leaves.
CASES = [(moment, sig) for sig in (signal.SIGINT, signal.SIGKILL) for moment in MOMENTS
         if not (sig == signal.SIGINT and moment == "publishing")]


@pytest.mark.parametrize(("moment", "sig"), CASES, ids=[f"{'ctrl-c' if sig == signal.SIGINT else 'kill-9'} {moment}"
                                                        for moment, sig in CASES])
def test_interrupted_at_any_moment_leaves_whole_results_and_resumes(tmp_path, earlier, moment, sig):
    data, earlier_out = earlier
    out = tmp_path / "out"
    shutil.copytree(earlier_out, out)
    before = _hashes(out)
    subs = tmp_path / "subs"
    subs.mkdir()
    for seed, name in enumerate(("s1", "s2"), start=1):
        conv_model(subs / f"{name}.onnx", seed=seed)
    command = _command(subs, data, out)
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    reached, deadline = MOMENTS[moment](out), time.monotonic() + 180
    while not reached():
        assert batch.poll() is None and time.monotonic() < deadline, batch.communicate()
        time.sleep(0.01)
    if moment == "starting":
        time.sleep(0.5)
    os.killpg(batch.pid, sig)  # Ctrl-C as a terminal sends it: to the batch's process group
    _, stderr = batch.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert batch.returncode == 130 and "Traceback" not in stderr, stderr
        for staged in (out / PARTIAL).glob("*/samples-*.csv"):  # no half-measured run stays behind
            assert (staged.parent / staged.name.replace("samples-", "run-").replace(".csv", ".json")).exists()
    assert _no_child_of(out), "a scoring child outlived the batch"
    _assert_whole_or_absent(out)
    _assert_earlier_intact(out, before)
    kept = _whole_runs(out)
    rerun = subprocess.run([*command, "--json"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    measured = {item["name"]: item["runs"] for item in json.loads(rerun.stdout)["submissions"]}
    assert measured == {name: [index for index in (1, 2) if index not in kept.get(name, {})] for name in ("s1", "s2")}
    _assert_whole_or_absent(out)
    _assert_earlier_intact(out, before)
    for name in ("s1", "s2", "old"):
        result = read_result(out / name / RESULT_NAME)
        assert result.scored and [run.index for run in result.runs] == [1, 2]
        assert {run.index: run.started_utc for run in result.runs if run.index in kept.get(name, {})} == kept.get(
            name, {})  # the runs measured before the interrupt are those in the result, not measured again
    assert not (out / PARTIAL).exists()


def _whole_runs(out: Path) -> dict[str, dict[int, str]]:
    """Each submission's runs left whole by the interrupted batch (staged, or published with its result), by
    index, with the time each started."""
    whole: dict[str, dict[int, str]] = {}
    for name in ("s1", "s2"):
        published = [path for path in (out / name / RESULT_NAME, out / PARTIAL / name / RESULT_NAME) if path.exists()]
        if published:  # the second place: killed between the two renames of its publication
            whole[name] = {run.index: run.started_utc for run in read_result(published[0]).runs}
            continue
        for staged in (out / PARTIAL / name).glob("run-*.json"):
            run = read_result(staged).runs[0]
            whole.setdefault(name, {})[run.index] = run.started_utc
    return whole
