"""`edl score` as a real process: Ctrl-C, failures and progress through a pipe leave what a user expects."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import conv_model, oracle_images, oracle_model, save_npz


@pytest.fixture
def data(tmp_path):
    images, labels = oracle_images(1000, correct=917)
    return save_npz(tmp_path / "set.npz", images, labels)


def _session(sid: int) -> dict[int, tuple[str, str]]:
    """Processes of session ``sid``: pid to (state, command line)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            command = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[3] == str(sid):
            found[int(name)] = (fields[0], command)
    return found


def _alive(sid: int) -> dict[int, tuple[str, str]]:
    return {pid: info for pid, info in _session(sid).items() if info[0] != "Z"}  # a zombie waits for init only


def _score(model: Path, data: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-B", "-m", "evaluator", "score", str(model), "--data", str(data), "--idle-seconds", "0",
               "--cooldown", "0", "--out", str(out), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _interrupt_while_measuring(model: Path, data: Path, out: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Start a long score, press Ctrl-C (SIGINT to its process group) once it samples; returns it and the sampler."""
    process = _score(model, data, out, "--passes", "100000")
    deadline = time.monotonic() + 120

    def live_samplers() -> list[int]:
        return [pid for pid, (_, command) in _session(process.pid).items() if "multiprocessing.spawn" in command]

    # an earlier run's samples-1.csv may be there already: wait for this run's sampler too (a loaded host is slow)
    while not (out / "samples-1.csv").is_file() or not live_samplers():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(1.0)
    samplers = live_samplers()
    assert len(samplers) == 1, _session(process.pid)
    os.killpg(process.pid, signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    run = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    _assert_quiet_and_alone(run, samplers[0], process.pid)
    return run, samplers[0]


def _assert_quiet_and_alone(run: subprocess.CompletedProcess, sampler: int, sid: int) -> None:
    """Exit 130, no traceback from any process, no sampler or other child left behind."""
    assert run.returncode == 130, run.stderr
    assert "Traceback" not in run.stderr and "edl-sampler" not in run.stderr, run.stderr
    assert sampler not in _alive(sid), "the sampler outlived the scorer"
    deadline = time.monotonic() + 5  # multiprocessing's resource tracker leaves when its pipe closes
    while _alive(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sid), _alive(sid)


def _interrupted_lines(run: subprocess.CompletedProcess) -> list[str]:
    lines = [line for line in run.stderr.splitlines() if "interrupted" in line]
    assert run.stderr.splitlines()[-1:] == lines[-1:], "the interrupted line is the last word"
    return lines


@pytest.mark.slow  # a real `edl score` process interrupted
def test_ctrl_c_leaves_no_folder_no_traceback_and_no_sampler(tmp_path, data):
    out = tmp_path / "results" / "x"
    run, _ = _interrupt_while_measuring(conv_model(tmp_path / "m.onnx"), data, out)
    assert _interrupted_lines(run) == [f"interrupted: nothing was written to {out}"]
    assert not out.exists() and not out.parent.exists(), "the folders this run made are gone"


@pytest.mark.slow  # a real `edl score` process interrupted
def test_ctrl_c_keeps_an_earlier_result_and_its_files(tmp_path, data, cli):
    model, out = conv_model(tmp_path / "m.onnx"), tmp_path / "o"
    earlier = cli("score", model, "--data", data, "--passes", "1", "--idle-seconds", "0", "--cooldown", "0",
                  "--out", out)
    assert earlier.exit_code == 0, earlier.stderr
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert {"result.json", "samples-1.csv", "timeline-1.png"} <= set(before)
    run, _ = _interrupt_while_measuring(model, data, out)
    assert _interrupted_lines(run) == [f"interrupted: {out / 'result.json'} from an earlier run is intact"]
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before, "every earlier file as it was"


def test_a_failed_score_leaves_no_folder_it_made(tmp_path, data, cli):
    no_cuda = cli("score", oracle_model(tmp_path / "m.onnx"), "--data", data, "--provider", "cuda",
                  "--out", tmp_path / "new" / "cuda")
    if no_cuda.exit_code == 0:
        pytest.skip("this machine has CUDA: --provider cuda succeeds")
    assert no_cuda.exit_code == 1 and "cuda" in no_cuda.stderr.lower()
    assert not (tmp_path / "new").exists()
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    invalid = cli("score", tmp_path / "bad.onnx", "--data", data, "--out", tmp_path / "bad-out")
    assert invalid.exit_code == 2 and not (tmp_path / "bad-out").exists()


def test_a_failed_score_leaves_an_existing_folder_as_it_was(tmp_path, data, cli):
    out = tmp_path / "o"
    out.mkdir()
    (out / "samples-1.csv").write_text("an earlier run's samples\n")
    (out / "notes.txt").write_text("mine\n")
    run = cli("score", oracle_model(tmp_path / "m.onnx"), "--data", data, "--provider", "cuda", "--out", out)
    if run.exit_code == 0:
        pytest.skip("this machine has CUDA: --provider cuda succeeds")
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt", "samples-1.csv"]
    assert (out / "samples-1.csv").read_text() == "an earlier run's samples\n"


@pytest.mark.slow  # a real `edl score` process, its progress piped
def test_piped_progress_prints_a_line_per_phase(tmp_path, data):
    process = _score(oracle_model(tmp_path / "m.onnx"), data, tmp_path / "o", "--passes", "2")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    phases = [line.split(":")[0].removesuffix("...") for line in stderr.splitlines() if not line.startswith("warn")]
    assert phases[:5] == ["check", "data", "session", "warmup", "measuring"], stderr
    assert "measuring: 2,000 images" in stderr.splitlines() and "\x1b" not in stderr, "plain lines, no terminal codes"


def test_piped_score_dir_prints_only_its_count_though_its_children_forward_their_phases(tmp_path, data):
    """The children's phases reach the parent's sink now; `edl score-dir`'s stderr is still its count alone."""
    import socket

    subs = tmp_path / "subs"
    subs.mkdir()
    oracle_model(subs / "a.onnx")
    oracle_model(subs / "b.onnx")
    run = subprocess.run([sys.executable, "-B", "-m", "evaluator", "score-dir", str(subs), "--data", str(data),
                          "--passes", "2", "--repeat", "1", "--idle-seconds", "0", "--cooldown", "0", "--out",
                          str(tmp_path / "res")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    host = socket.gethostname()
    assert run.stderr.splitlines() == [f"[1/2] a run 1 on {host}", f"[2/2] b run 1 on {host}"]
