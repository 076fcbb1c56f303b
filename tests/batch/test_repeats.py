"""score-dir's repeats: interleaved across submissions, one thermal state, a reference for drift, ties, rematches."""

from __future__ import annotations

import dataclasses
import json

import pytest
from builders import (
    PowercapTree,
    busy_colour_model,
    colour_images,
    colour_model,
    fast_config,
    passes_lasting,
    save_npz,
    twin_of,
)

from evaluator.batch.directory import REFERENCE_RUN, run_order, score_directory
from evaluator.batch.target_temp import batch_target
from evaluator.config import BatchConfig
from evaluator.report.batch_record import BATCH_NAME, ThermalRecord
from evaluator.report.leaderboard import batch_warnings, load_results, rank
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME


@pytest.fixture
def metered(tmp_path, monkeypatch, fake_gpu):
    fake_gpu(watts=60.0, temps="41")
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[40.0]):
        yield


def _data(tmp_path, count=1000):
    images, labels = colour_images(count, correct=int(count * 0.95))
    return save_npz(tmp_path / "d.npz", images, labels)


@pytest.mark.slow
def test_a_model_under_two_names_ties_and_a_slower_one_does_not(tmp_path, metered):
    """The issue's check: --repeat 3, a model and its twin (one more metadata entry) and a model three times
    slower, under fake meters."""
    data = _data(tmp_path)
    subs = tmp_path / "subs"
    subs.mkdir()
    busy_colour_model(subs / "copy_a.onnx", channels=8)
    twin_of(subs / "copy_a.onnx", subs / "copy_b.onnx")  # other bytes: a byte-identical copy is a duplicate
    busy_colour_model(subs / "slow.onnx", channels=96)  # the same answers, several times the time: clear of any
    # spread a loaded 2-core machine adds (channels=40, about three times, tied with the fast one at load 13)
    passes = passes_lasting(subs / "copy_a.onnx", images=1000, seconds=0.5, least=5)  # 0.5 s windows for copy_a
    config = dataclasses.replace(fast_config(data, passes=passes), repeat=3)
    summary = score_directory(subs, tmp_path / "out", config)
    assert summary.counts["scored"] == 3
    for name in ("copy_a", "copy_b", "slow"):
        result = read_result(tmp_path / "out" / name / RESULT_NAME)
        low, high = result.energy.total_j_interval
        assert len(result.energy.repeats_j) == 3 and low <= result.total_j <= high
        assert [run.index for run in result.runs] == [1, 2, 3]
    board = rank(load_results(tmp_path / "out"))
    ranked = {e.name: e for e in board.categories[0.95]}
    assert ranked["copy_a"].rank == ranked["copy_b"].rank == 1
    assert ranked["copy_a"].tied_with == ["copy_b"] and ranked["copy_b"].tied_with == ["copy_a"]
    assert ranked["slow"].rank == 3 and ranked["slow"].tied_with == []
    assert ranked["slow"].total_j > 2 * ranked["copy_a"].total_j


def test_repeats_run_in_round_robin_across_submissions():
    """A B C, A B C: slow drift of the machine hits every submission alike; resumed runs keep their places."""
    assert list(run_order([[1, 2], [1, 2], [1, 2]], None)) == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2)]
    assert list(run_order([[2, 3], [], [1, 2, 3]], None)) == [(0, 2), (2, 1), (0, 3), (2, 2), (2, 3)]
    assert list(run_order([], 2)) == [] and list(run_order([[], []], 2)) == []  # nothing to measure, no reference


def test_reference_runs_come_first_every_n_scorings_and_last():
    ref = REFERENCE_RUN
    assert list(run_order([[1], [1], [1]], 2)) == [(ref, 0), (0, 1), (1, 1), (ref, 2), (2, 1), (ref, 3)]
    # A last scoring that completes a group of N is followed by one reference run, not two.
    assert list(run_order([[1], [1]], 2)) == [(ref, 0), (0, 1), (1, 1), (ref, 2)]
    assert list(run_order([[1, 2]], 1)) == [(ref, 0), (0, 1), (ref, 1), (0, 2), (ref, 2)]


def test_a_submission_that_fails_gets_no_more_runs_from_then_on():
    failed: set[int] = set()
    order = []
    for who, index in run_order([[1, 2, 3], [1, 2, 3]], None, failed.__contains__):
        order.append((who, index))
        if (who, index) == (1, 1):
            failed.add(1)  # decided while the batch runs: asked before each run, not once at the start
    assert order == [(0, 1), (1, 1), (0, 2), (0, 3)]


@pytest.mark.slow
def test_repeats_are_interleaved_across_submissions(tmp_path, metered):
    """The wiring: the children really run in run_order (their measured windows start in that order)."""
    data = _data(tmp_path, 300)
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("a", "b"):
        colour_model(subs / f"{name}.onnx")
    score_directory(subs, tmp_path / "out", dataclasses.replace(fast_config(data, audit=False), repeat=2))
    starts = []
    for name in ("a", "b"):
        for run in read_result(tmp_path / "out" / name / RESULT_NAME).runs:
            measured = next(w for w in run.windows if w.name == "measured")
            starts.append((measured.start_s, f"{name}{run.index}"))
    assert [label for _, label in sorted(starts)] == ["a1", "b1", "a2", "b2"]  # not a1 a2 b1 b2


def test_the_batch_target_is_the_given_one_or_the_idle_temperature_or_none_and_why(fake_gpu):
    settle = fast_config(cooldown_s=0.5)
    assert batch_target(dataclasses.replace(settle, meter=dataclasses.replace(settle.meter, target_temp_c=45.0))
                        ) == ThermalRecord(45.0, "--target-temp", settle.meter.temp_band_c)
    assert batch_target(settle).target_c is None and "no GPU temperature here" in batch_target(settle).source
    fake_gpu(temps="41")
    idle = batch_target(settle)  # steady, but not yet for SETTLE_S: the bound ends the wait, the reading stands
    assert idle.target_c == 41 and idle.source == ("the idle temperature before the first scoring "
                                                   "(not settled within --cooldown 0.5 s)")


@pytest.mark.slow
def test_one_thermal_state_and_a_reference_for_drift(tmp_path, metered):
    """The wiring: the batch's target reaches every run and the reference runs are scored and recorded."""
    data = _data(tmp_path, 300)
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("a", "b", "c"):
        colour_model(subs / f"{name}.onnx")
    reference = colour_model(tmp_path / "reference.onnx")
    config = dataclasses.replace(fast_config(data, passes=5, audit=False), repeat=1)
    config = dataclasses.replace(config, meter=dataclasses.replace(config.meter, cooldown_s=1.0))
    summary = score_directory(subs, tmp_path / "out", config, BatchConfig(reference=reference, reference_every=2))
    assert summary.thermal.target_c == 41 and "idle temperature" in summary.thermal.source
    runs = read_result(tmp_path / "out" / "a" / RESULT_NAME).runs
    assert runs[0].fairness.cooldown.target_c == 41 and runs[0].start_temp_c == 41
    assert [run.after_scorings for run in summary.reference.runs] == [0, 2, 3]
    assert all(run.total_j and run.total_j > 0 for run in summary.reference.runs)
    assert summary.reference.drift_pct is not None and summary.reference.drift_limit_pct == 2.0
    on_disk = json.loads((tmp_path / "out" / BATCH_NAME).read_text())
    assert on_disk["reference"]["drift_pct"] == summary.reference.drift_pct
    warned = batch_warnings(tmp_path / "out")
    assert warned == ([summary.reference.warning] if summary.reference.warning else [])
    assert not (tmp_path / "out" / "_reference" / RESULT_NAME).exists()  # never on the board


def test_a_rematch_adds_runs_to_the_named_submissions_only(tmp_path, metered):
    data = _data(tmp_path, 300)
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("a", "b"):
        colour_model(subs / f"{name}.onnx")
    config = fast_config(data)  # one run each, then one more for a: three scorings, the fewest that show it
    score_directory(subs, tmp_path / "out", config)
    again = score_directory(subs, tmp_path / "out", config, BatchConfig(rematch=("a",)))
    assert {item.name: item.runs for item in again.submissions} == {"a": [2], "b": []}
    a = read_result(tmp_path / "out" / "a" / RESULT_NAME)
    assert [run.index for run in a.runs] == [1, 2] and len(a.energy.repeats_j) == 2
    assert a.audit is not None and a.audit.verdict == "pass"  # run 1's audit stays with the result
    assert len(read_result(tmp_path / "out" / "b" / RESULT_NAME).runs) == 1
