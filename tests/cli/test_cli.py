"""The commands, run as a user runs them (in process, with typer's runner; a real process where one matters)."""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import sys

import pytest
from builders import PowercapTree, conv_model, make_tarball, oracle_images, oracle_model, python_batch_bytes, save_npz

from evaluator.data import dataset as ds
from evaluator.data import formats, store
from evaluator.report.result import result_schema


@pytest.fixture
def data(tmp_path):
    images, labels = oracle_images(1000, correct=917)
    return save_npz(tmp_path / "set.npz", images, labels)


def test_data_info_and_fetch_from_a_local_copy(tmp_path, cli):
    images, labels = oracle_images(20, correct=20)
    tarball = make_tarball(tmp_path / "cifar-10-python.tar.gz", formats.PY_MEMBER, python_batch_bytes(images, labels))
    info = cli("data", "info", tarball, "--json")
    assert info.exit_code == 0, info.stderr
    document = json.loads(info.stdout)
    assert document["images"] == 20 and document["official"] is False
    assert document["fingerprint"] == ds.fingerprint(images, labels)
    refused = cli("data", "fetch", "--from", tarball)
    assert refused.exit_code == 1 and "not the official CIFAR-10 test set" in refused.stderr
    absent = cli("data", "info", tmp_path / "absent.npz")
    assert absent.exit_code == 1 and absent.stderr.strip() == (
        f"error: {tmp_path / 'absent.npz'}: no such file or folder; pass a CIFAR-10 archive, folder or .npz")


def test_data_info_without_a_cache_says_what_the_default_would_do(cli):
    cache = store.default_cache_dir()
    run = cli("data", "info")
    assert run.exit_code == 0 and run.stderr == ""
    assert run.stdout == f"source       not cached; edl score would download {store.OFFICIAL_URL} into {cache} " \
                         "(edl data fetch)\n" \
                         "cifar10.1    not cached; `edl data fetch --cifar10.1` would download it from " \
                         f"{store.cifar10_1_url()}\n"
    document = json.loads(cli("data", "info", "--json").stdout)
    assert (document["cached"], document["source"], document["cache"], document["download"]) == (
        False, None, str(cache), store.OFFICIAL_URL)
    assert not list(cache.iterdir()), "nothing downloaded"


def test_env_says_what_is_missing_and_why(cli):
    run = cli("env", "--json")
    assert run.exit_code == 0, run.stderr
    rows = {row["item"]: row for row in json.loads(run.stdout)["rows"]}
    assert rows["gpu energy (nvml)"]["status"] == "unavailable"
    assert "NVML cannot initialise" in rows["gpu energy (nvml)"]["detail"]
    assert rows["cpu energy (rapl)"]["status"] == "unavailable"
    assert "EDL_POWERCAP_ROOT" in rows["cpu energy (rapl)"]["detail"]
    assert "cuda provider" in rows


def test_env_with_a_gpu_and_rapl(tmp_path, fake_gpu, monkeypatch, cli):
    fake_gpu()
    PowercapTree(tmp_path / "pc", package_watts=[10.0], dram_watts=1.0)
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    rows = {row["item"]: row for row in json.loads(cli("env", "--json").stdout)["rows"]}
    assert rows["gpu 0"]["detail"].startswith("Fake GPU")
    assert rows["ray resources"]["detail"] == """ray start ... --resources '{"edl-host": 1, "edl-gpu-fake-gpu": 1}'"""
    assert rows["nvml energy counter"]["status"] == "ok"
    assert "package0" in rows["cpu energy (rapl)"]["detail"] and "dram0" in rows["cpu energy (rapl)"]["detail"]


def test_env_gpu_is_the_cuda_device_as_for_score(fake_gpu, cli):
    """--gpu N names CUDA device N everywhere: here the board CUDA_VISIBLE_DEVICES puts first, not NVML's first."""
    first, second = "GPU-aaaaaaaa-1111-4111-8111-111111111111", "GPU-bbbbbbbb-2222-4222-8222-222222222222"
    fake_gpu(gpus=f"{first}@00000000:5E:00.0,{second}@00000000:1A:00.0", visible="GPU-bbbb")
    rows = {row["item"]: row for row in json.loads(cli("env", "--gpu", "0", "--json").stdout)["rows"]}
    assert rows["gpu 0"]["detail"] == f"Fake GPU, driver 999.99, {second}"  # NVML index 0 would be {first}
    assert cli("env", "--gpu", "-1").exit_code == 2  # checked as score's --gpu is


def test_score_json_is_the_only_stdout_and_records_every_setting(tmp_path, data, cli):
    run = cli("score", oracle_model(tmp_path / "m.onnx"), "--data", data, "--passes", "2", "--idle-seconds", "0",
              "--cooldown", "0", "--no-prefer-nhwc", "--cudnn-search", "HEURISTIC", "--no-tf32",
              "--no-overlap-batches", "--sample-ms", "5", "--temp-band", "3", "--out", tmp_path / "o", "--json")
    assert run.exit_code == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["correct"] == 917
    runtime, meter = document["config"]["runtime"], document["config"]["meter"]
    assert (runtime["prefer_nhwc"], runtime["cudnn_search"], runtime["tf32"], runtime["cuda_graph"],
            runtime["overlap_batches"]) == (False, "HEURISTIC", False, True, False)
    assert (meter["sample_period_ms"], meter["temp_band_c"]) == (5.0, 3.0)
    assert (tmp_path / "o" / "samples-1.csv").is_file()


def test_score_prints_a_summary_and_where_the_result_is(tmp_path, data, cli):
    run = cli("score", oracle_model(tmp_path / "m.onnx"), "--data", data, "--passes", "1", "--idle-seconds", "0",
              "--cooldown", "0", "--out", tmp_path / "o")
    assert run.exit_code == 0, run.stderr
    assert "91.70% (917/1000)" in run.stdout and f"result: {tmp_path / 'o' / 'result.json'}" in run.stdout
    assert "unavailable: NVML cannot initialise" in run.stdout
    assert "90 % (unofficial data: not the official test set)" in run.stdout  # said "90%" alone before
    provider = next(line for line in run.stdout.splitlines() if "provider" in line)
    assert provider.count("(") <= 1, provider  # three nested parentheses before


def test_score_says_below_the_lowest_category(tmp_path, cli):
    images, labels = oracle_images(1000, correct=800)
    run = cli("score", oracle_model(tmp_path / "m.onnx"), "--data", save_npz(tmp_path / "low.npz", images, labels),
              "--passes", "1", "--idle-seconds", "0", "--cooldown", "0", "--out", tmp_path / "o")
    assert run.exit_code == 0 and "below 90 % (unofficial data" in run.stdout, run.stdout  # "unranked" before


def test_check_of_a_missing_file_prints_only_the_error(cli):
    run = cli("check", "missing.onnx")
    assert run.exit_code == 2 and run.stdout == "" and run.stderr.startswith("error: missing.onnx: no such file")


def test_verify_says_what_its_argument_is(tmp_path, cli):
    root = tmp_path / "results"
    (root / "a").mkdir(parents=True)
    (root / "a" / "result.json").write_text("{}")
    model = oracle_model(tmp_path / "m.onnx")
    (tmp_path / "notes.txt").write_text("plain words")
    for argument, words in ((root, "a results root (1 result folder(s))"), (model, "a submission, not a result"),
                            (tmp_path / "notes.txt", "not a JSON document"), (tmp_path / "nothing", "no such file")):
        run = cli("verify", argument)
        assert run.exit_code == 2 and run.stderr.count("\n") == 1 and words in run.stderr, run.stderr
        assert "Errno" not in run.stderr and "codec" not in run.stderr


def test_keys_init_warns_inside_a_git_work_tree_unless_ignored(tmp_path, cli):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    inside = cli("keys", "init", repo / "keys")
    assert inside.exit_code == 0 and "inside the git work tree" in inside.stderr and ".gitignore" in inside.stderr
    (repo / ".gitignore").write_text("ignored-keys/\n")
    assert "git work tree" not in cli("keys", "init", repo / "ignored-keys").stderr
    assert "git work tree" not in cli("keys", "init", tmp_path / "outside").stderr


@pytest.mark.parametrize(("args", "message", "code"), [
    (("missing.onnx",), "no such file", 2),
    ((".",), "a folder, not a .onnx file; to score every submission in a folder use `edl score-dir`", 2),
    (("m.onnx", "--cudnn-search", "FASTEST"), "--cudnn-search 'FASTEST': choose EXHAUSTIVE, HEURISTIC or DEFAULT", 2),
    (("m.onnx", "--passes", "0"), "--passes 0: must be 1 or more", 2),
    (("m.onnx", "--passes", "-5"), "--passes -5: must be 1 or more", 2),  # exit 1 before: every usage error is 2
    (("m.onnx", "--provider", "gpu"), "--provider 'gpu': choose auto, cuda, tensorrt or cpu", 2),
    (("m.onnx", "--audit-shift", "40"), "--audit-shift 40: must be 4 or less", 2),  # accepted before
])
def test_score_errors_are_one_line(tmp_path, data, cli, monkeypatch, args, message, code):
    monkeypatch.chdir(tmp_path)
    oracle_model(tmp_path / "m.onnx")
    run = cli("score", *args, "--data", data)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert run.exit_code == code and len(errors) == 1 and message in errors[0]


def test_read_only_results_folder_fails_before_measuring(tmp_path, data, cli):
    target = tmp_path / "file-not-folder"
    target.write_text("x")
    run = cli("score", conv_model(tmp_path / "m.onnx"), "--data", data, "--out", target / "sub")
    assert run.exit_code == 1 and "cannot write results" in run.stderr


def test_full_disk_fails_before_measuring(tmp_path, data):
    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    run = subprocess.run([sys.executable, "-B", "-m", "evaluator", "score", str(oracle_model(tmp_path / "m.onnx")),
                          "--data", str(data), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, preexec_fn=small_files)
    assert run.returncode == 1
    assert "cannot write results" in run.stderr and "Traceback" not in run.stderr
    assert not list((tmp_path / "o").glob("samples*"))


def test_score_uses_the_verified_cache_without_data_option(tmp_path, cli):
    """What `edl data fetch` leaves behind is what `edl score` uses by default, marked official."""
    images, labels = oracle_images(300, correct=270)
    store.store_cache(images, labels, "test archive", True, store.default_cache_dir())
    info = cli("data", "info", "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)["official"] is True
    run = cli("score", conv_model(tmp_path / "m.onnx"), "--passes", "1", "--idle-seconds", "0", "--cooldown", "0",
              "--out", tmp_path / "o", "--json")
    assert run.exit_code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["data"]["official"] is True and result["data"]["images"] == 300


@pytest.mark.parametrize("command", [(), ("score",), ("score-dir",), ("leaderboard",), ("check",), ("verify",),
                                     ("schema",), ("env",), ("meter",), ("data",), ("data", "fetch"), ("data", "info")])
def test_help_shows_no_type_placeholders_for_flags(cli, command):
    run = cli(*command, "--help")
    assert run.exit_code == 0 and "Usage:" in run.stdout
    assert not [word for word in ("<bool>", "BOOLEAN", "<bool", "bool>") if word in run.stdout], run.stdout
    if command in (("score",), ("score-dir",)):
        assert "--prefer-nhwc / --no-prefer-nhwc" in run.stdout
    if command == ("score",):
        assert "--tune-seconds NUMBER" in run.stdout


def test_schema_prints_the_result_schema(cli):
    assert json.loads(cli("schema").stdout) == result_schema()


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_meter_into_an_unwritable_place_is_one_line_and_nothing_else(tmp_path, where):
    if where == "proc":
        out = "/proc/self/meter"  # a folder nobody, not even root, can create files in
    else:
        (tmp_path / "a-file").write_text("x")
        out = str(tmp_path / "a-file" / "meter")
    run = subprocess.run([sys.executable, "-B", "-m", "evaluator", "meter", "--seconds", "0", "--out", out],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stdout == ""
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"error: cannot write results to {out} (") and "pass a writable --out" in run.stderr


def test_line_progress_counts_down_a_wait_with_a_line_every_few_seconds(capsys, monkeypatch, fake_gpu):
    """Piped: the idle and cool-down waits print the time left, every countdown_every_s, not at every tick."""
    from evaluator import events
    from evaluator.cli.progress import LineProgress
    from evaluator.config import MeterConfig
    from evaluator.scoring.cooldown import GpuWatch, cool_down

    monkeypatch.setattr(events, "TICK_S", 0.05)
    every = LineProgress(countdown_every_s=0.0)
    events.wait(every, "idle_baseline", 0.3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "idle baseline: 0 s left" and len(lines) >= 4
    assert all(re.fullmatch(r"idle baseline: \d+ s left", line) for line in lines)
    fake_gpu(temps="60,60,60,55,50,41")
    sparse = LineProgress()  # a line every 5 s: a cool-down of a few polls prints only its first
    cool_down(GpuWatch(0), MeterConfig(cooldown_s=60.0, target_temp_c=40.0), sparse, sleep=lambda seconds: None)
    assert capsys.readouterr().err.splitlines() == ["cool-down: 60 s left"]


def test_live_progress_shows_the_time_left_of_a_wait():
    from evaluator.cli.progress import LiveProgress
    from evaluator.events import ImagesDone, PhaseStarted, Waiting

    live = LiveProgress()
    live(Waiting("idle_baseline", 10.0))
    live(Waiting("idle_baseline", 9.4))
    task = live._progress.tasks[-1]
    assert task.description == "idle baseline" and task.total == 10.0
    assert re.fullmatch(r"(9|10) s left", task.fields["rate"]) and task.completed == pytest.approx(0.6)
    live(PhaseStarted("warmup"))
    live(ImagesDone("warmup", 100, done_passes=1))
    assert live._progress.tasks[-1].completed == 100


def test_line_progress_counts_images_between_phase_lines(capsys):
    from evaluator.cli.progress import LineProgress
    from evaluator.events import ImagesDone, PhaseFinished, PhaseStarted

    progress = LineProgress(every_s=0.0)
    progress(PhaseStarted("pass", 3000, 3))
    progress(ImagesDone("pass", 1000, 3000, 1, 3))
    progress(ImagesDone("pass", 2000, 3000, 2, 3))
    progress(PhaseFinished("pass", 1.5))  # a phase's end prints nothing: the next phase's line says it
    assert capsys.readouterr().err.splitlines() == ["measuring: 3,000 images", "measuring: 1,000 of 3,000 images",
                                                    "measuring: 2,000 of 3,000 images"]


def test_line_progress_says_the_lock_wait_once_and_the_batch_count_and_placements(capsys):
    """The texts of a lock wait, score-dir's count and a cluster's placement, as `edl` printed them before the
    stream; score-dir's view leaves out the runs' own phases, and placements on one host."""
    from evaluator.cli.progress import LineProgress, batch_view
    from evaluator.events import BytesDone, PhaseStarted, RunPlaced, SubmissionsDone, Waiting

    progress = LineProgress()
    progress(Waiting("host_lock", None, "edl pid 7, /run/lock/edl-scoring.lock"))
    progress(Waiting("host_lock", None, "edl pid 7, /run/lock/edl-scoring.lock"))
    progress(PhaseStarted("session"))
    progress(BytesDone("x.tar.gz", 3_000_000, 3_000_000))
    local, cluster = batch_view(progress, placements=False), batch_view(progress, placements=True)
    for view in (local, cluster):
        view(RunPlaced("a", 1, "node-1"))
        view(PhaseStarted("check"))
        view(SubmissionsDone("a", 1, 2, 1, "node-1"))
    progress(SubmissionsDone("", 2, 2))
    assert capsys.readouterr().err.splitlines() == [
        "waiting for the scoring already running on this host (edl pid 7, /run/lock/edl-scoring.lock)...",
        "session...", "download: 3 MB of 3 MB",
        "[1/2] a run 1 on node-1", "start a run 1 on node-1", "[1/2] a run 1 on node-1", "[2/2] done"]


def test_ctrl_c_while_the_commands_are_still_importing_exits_130_without_a_traceback():
    """Seen in the interrupt matrix on a loaded machine: a SIGINT during `import evaluator.cli.main`
    printed Python's traceback and exited -2. The signal is sent from inside that import here."""
    import signal
    import subprocess
    import sys

    code = ("import builtins, os, signal\n"
            "real = builtins.__import__\n"
            "def hooked(name, *args, **kwargs):\n"
            "    if name == 'evaluator.cli.main':\n"
            f"        os.kill(os.getpid(), {int(signal.SIGINT)})\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = hooked\n"
            "from evaluator.cli.entry import run\n"
            "run()\n")
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == "interrupted while starting: nothing was written"
