"""score-dir never loses a measured result: not to an empty folder, other settings, a failed re-run or a new model."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from builders import conv_model, fast_config, oracle_images, oracle_model, save_npz

from evaluator.batch.directory import score_directory
from evaluator.batch.outroot import PARTIAL_DIR
from evaluator.errors import UsageError
from evaluator.report.batch_record import BATCH_NAME
from evaluator.report.leaderboard import load_results
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The test set, shared read-only by the module's tests."""
    images, labels = oracle_images(1000, correct=960)
    return save_npz(tmp_path_factory.mktemp("data") / "data.npz", images, labels)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, relative path to content hash."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def scored_once(tmp_path_factory, module_env, data):
    """Two models scored once for the module: every test gets its own copy (``scored``)."""
    root = tmp_path_factory.mktemp("scored")
    subs = root / "subs"
    subs.mkdir()
    oracle_model(subs / "a.onnx")
    conv_model(subs / "b.onnx", seed=1)
    summary = score_directory(subs, root / "out", fast_config(data, audit=False))
    assert summary.counts["scored"] == 2
    return root


@pytest.fixture
def scored(tmp_path, scored_once):
    """A batch of two models already scored into ``out``, a copy of its own; returns (submissions, out)."""
    shutil.copytree(scored_once / "subs", tmp_path / "subs")
    shutil.copytree(scored_once / "out", tmp_path / "out")
    return tmp_path / "subs", tmp_path / "out"


def test_an_empty_folder_or_a_wrong_argument_writes_nothing(tmp_path, data, scored, cli):
    """Today's main overwrote the real batch.json before saying 'no submissions found' (exit 1)."""
    subs, out = scored
    before = snapshot(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a model")
    run = cli("score-dir", empty, "--data", data, "--out", out)
    assert run.exit_code == 2 and "no submissions found" in run.stderr and "notes.txt: not an .onnx file" in run.stderr
    assert snapshot(out) == before
    for args in (("--rematch", "nobody"), ("--passes", "-5"), ("--provider", "gpu"), ("--audit-shift", "40")):
        run = cli("score-dir", subs, "--data", data, "--out", out, *args)
        assert run.exit_code == 2 and "Traceback" not in run.stderr, (args, run.stderr)
    assert snapshot(out) == before
    fresh = tmp_path / "fresh"
    assert cli("score-dir", empty, "--data", data, "--out", fresh).exit_code == 2 and not fresh.exists()


def test_other_settings_refuse_to_start_and_force_archives(tmp_path, data, scored, cli):
    """The issue's re-run (--passes 3 --timeout 1) replaced every scored result with a failed one on today's main."""
    subs, out = scored
    before = snapshot(out)
    common = ("--data", data, "--out", out, "--idle-seconds", "0", "--cooldown", "0", "--no-plot", "--repeat", "1",
              "--audit-copies", "0")  # the settings of `scored`, all but --passes
    run = cli("score-dir", subs, *common, "--passes", "3", "--timeout", "1")
    assert run.exit_code == 2 and snapshot(out) == before, run.stdout
    assert "passes: 2 there, 3 now" in run.stderr and "--out" in run.stderr and "--force" in run.stderr
    forced = cli("score-dir", subs, *common, "--passes", "3", "--force")
    assert forced.exit_code == 0, forced.stderr
    archived = next((out / "_archive").iterdir())
    assert snapshot(archived) == before  # every earlier file, batch.json too, byte for byte
    assert read_result(out / "a" / RESULT_NAME).passes == 3


def test_a_failed_rerun_keeps_the_scored_result_and_records_the_failure(data, scored):
    subs, out = scored
    before = (out / "a" / RESULT_NAME).read_bytes()
    (subs / "a.onnx").write_bytes(b"a broken new version")  # another model: it is scored again, and fails
    summary = score_directory(subs, out, fast_config(data, audit=False))
    item = next(item for item in summary.submissions if item.name == "a")
    assert item.outcome == "failed" and "earlier scored result stands" in item.reason
    assert (out / "a" / RESULT_NAME).read_bytes() == before
    failure = read_result(Path(item.failure_file))
    assert Path(item.failure_file).parent == out / "a" / "failures" and failure.status == "failed"
    assert "not an ONNX model" in failure.reason and not (out / PARTIAL_DIR).exists()
    again = score_directory(subs, out, fast_config(data, audit=False))  # the board's folder holds one result.json
    assert (out / "a" / RESULT_NAME).read_bytes() == before and len(list((out / "a" / "failures").iterdir())) == 2
    assert [item.outcome for item in again.submissions] == ["failed", "skipped"]
    board = {entry.name: entry.result.status for entry in load_results(out)}
    assert board == {"a": "scored", "b": "scored"}  # the board reads result.json, never the failures beside it


def test_a_new_model_replaces_its_result_and_the_old_one_is_archived(data, scored):
    subs, out = scored
    before = snapshot(out / "b")
    first_batch = (out / BATCH_NAME).read_bytes()
    conv_model(subs / "b.onnx", seed=2)
    summary = score_directory(subs, out, fast_config(data, audit=False))
    item = next(item for item in summary.submissions if item.name == "b")
    assert item.outcome == "scored" and snapshot(Path(item.archived)) == before
    assert Path(item.archived).parent.parent == out / "_archive"
    assert (Path(item.archived).parent / BATCH_NAME).read_bytes() == first_batch  # the batch record is kept too
    old = read_result(Path(item.archived) / RESULT_NAME)
    assert read_result(out / "b" / RESULT_NAME).model.sha256 != old.model.sha256
    assert not (out / PARTIAL_DIR).exists()


def test_nothing_to_measure_keeps_the_batch_record(data, scored):
    subs, out = scored
    before = (out / BATCH_NAME).read_bytes()
    summary = score_directory(subs, out, fast_config(data, audit=False))
    assert summary.counts["skipped"] == 2 and (out / BATCH_NAME).read_bytes() == before
    assert not (out / "_archive").exists()


def test_a_publication_cut_between_its_two_renames_is_finished_by_the_next_batch(data, scored):
    """kill -9 after the earlier result went to the archive, before the new one took its place."""
    subs, out = scored
    whole = snapshot(out / "a")
    (out / PARTIAL_DIR).mkdir()
    (out / "a").rename(out / PARTIAL_DIR / "a")  # what the killed batch left: a whole staged result, no folder
    summary = score_directory(subs, out, fast_config(data, audit=False))
    assert summary.counts["skipped"] == 2 and snapshot(out / "a") == whole and not (out / PARTIAL_DIR).exists()


def test_refused_under_other_data_too(tmp_path, scored):
    subs, out = scored
    images, labels = oracle_images(500, correct=480)
    other = save_npz(tmp_path / "other.npz", images, labels)
    with pytest.raises(UsageError, match=r"data: .* there"):
        score_directory(subs, out, fast_config(other, audit=False))


def test_an_edited_result_is_measured_again_and_the_edited_file_is_kept_in_the_archive(tmp_path, data, scored):
    """The new-organiser trial: a resumed batch 'skipped' a result whose checksum failed, so it stood for ever."""
    subs, out = scored
    path = out / "a" / RESULT_NAME
    edited = path.read_text().replace('"accuracy": 0.96', '"accuracy": 0.995')
    assert edited != path.read_text()
    path.write_text(edited)
    summary = score_directory(subs, out, fast_config(data, audit=False))
    assert summary.counts["scored"] == 1 and summary.counts["skipped"] == 1
    assert read_result(path).accuracy == 0.96  # measured again
    archived = [p for p in (out / "_archive").rglob(RESULT_NAME) if p.read_text() == edited]
    assert len(archived) == 1  # the edited file is evidence too: kept, not overwritten


def test_a_batch_interrupted_before_it_measured_anything_leaves_batch_json_in_place(tmp_path, data, scored,
                                                                                    monkeypatch):
    """The new-organiser trial: a Ctrl-C at start-up archived batch.json, and the board lost its drift record."""
    import evaluator.batch.directory as directory

    subs, out = scored
    before = (out / BATCH_NAME).read_bytes()
    conv_model(subs / "c.onnx", seed=2)  # something to measure

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(directory, "_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_directory(subs, out, fast_config(data, audit=False))
    assert (out / BATCH_NAME).read_bytes() == before


def test_two_failures_within_one_second_are_two_records(tmp_path, monkeypatch):
    """They shared failures/<utc>.json: the second replaced the first (found when this module's scorings sped up)."""
    from evaluator.batch import outroot

    monkeypatch.setattr(outroot, "utc_stamp", lambda: "20261201T172653Z")
    paths = [outroot.new_failure_path(tmp_path) for _ in range(3)]
    assert [path.name for path in paths] == ["20261201T172653Z.json", "20261201T172653Z-2.json",
                                             "20261201T172653Z-3.json"]
    assert all(path.parent == tmp_path / outroot.FAILURES_DIR and path.exists() for path in paths)
