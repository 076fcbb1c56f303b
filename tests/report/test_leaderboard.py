"""Ranking rules and comparability, on results written by the real scorer."""

from __future__ import annotations

import dataclasses

import pytest
from builders import PowercapTree, colour_images, colour_model, conv_model, failed_variant, fast_config, result_variant
from builders import save_npz as save_data

from evaluator.errors import EdlError
from evaluator.report.leaderboard import BoardEntry, load_results, rank
from evaluator.report.result import RESULT_NAME, write_result


def entry(name, template, accuracy, total_j, **changes) -> BoardEntry:
    return BoardEntry(name, result_variant(template, accuracy, total_j, name=name, **changes))


def test_the_competition_example(template):
    """Algo1 96.5 %/150 kJ, Algo2 92.5 %/10 kJ, Algo3 98.5 %/5000 kJ."""
    board = rank([entry("Algo1", template, 0.965, 150e3), entry("Algo2", template, 0.925, 10e3),
                  entry("Algo3", template, 0.985, 5000e3)])
    assert [e.name for e in board.categories[0.95]] == ["Algo1", "Algo3"]
    assert [e.name for e in board.categories[0.90]] == ["Algo2"]
    assert board.categories[0.99] == []


def test_highest_category_only_and_boundaries(template):
    board = rank([entry("exact95", template, 0.95, 5.0), entry("just_below", template, 0.9499, 1.0),
                  entry("low", template, 0.5, 0.1), entry("top", template, 0.995, 100.0)])
    assert [e.name for e in board.categories[0.95]] == ["exact95"]
    assert [e.name for e in board.categories[0.90]] == ["just_below"]
    assert [e.name for e in board.categories[0.99]] == ["top"]
    assert [e.name for e in board.unranked] == ["low"]


def test_tie_rule(template):
    board = rank([entry("b", template, 0.96, 100.0004, model_bytes=10), entry("a", template, 0.96, 100.0,
                                                                             model_bytes=10),
                  entry("acc", template, 0.97, 100.0, model_bytes=99), entry("small", template, 0.97, 100.0,
                                                                           model_bytes=5)])
    assert [e.name for e in board.categories[0.95]] == ["small", "acc", "a", "b"]


def test_incomparable_results_are_refused_with_the_difference_named(template):
    entries = [entry("x", template, 0.95, 10.0), entry("y", template, 0.95, 9.0, passes=50),
               entry("z", template, 0.95, 8.0, domains=("gpu",)), entry("w", template, 0.95, 7.0, gpu="A100")]
    with pytest.raises(EdlError, match=r"GPU model differs .*energy domains differs .*--passes differs"):
        rank(entries)
    board = rank(entries, allow_mixed=True)
    assert len(board.mixed) == 3 and [e.name for e in board.categories[0.95]] == ["w", "z", "y", "x"]


def test_failed_and_unmeasured_are_listed_with_reasons(tmp_path, template):
    for name, result in {"ok": result_variant(template, 0.93, 10.0, name="ok"),
                         "broken": failed_variant(template, "timed out", name="broken"),
                         "nometer": result_variant(template, 0.97, None, name="nometer")}.items():
        write_result(tmp_path / name / RESULT_NAME, result)
    board = rank(load_results(tmp_path))
    assert [e.name for e in board.failed] == ["broken"] and board.failed[0].reason == "timed out"
    assert [e.name for e in board.unmeasured] == ["nometer"] and "no NVML" in board.unmeasured[0].reason
    assert board.categories[0.90][0].name == "ok" and board.categories[0.90][0].rank == 1


def test_an_edited_or_foreign_result_is_set_apart_and_the_rest_still_rank(tmp_path, template):
    """Before: one edited result.json made load_results raise and the whole board refused."""
    for name in ("a", "b"):
        write_result(tmp_path / name / RESULT_NAME, result_variant(template, 0.93, 10.0 if name == "a" else 20.0,
                                                                   name=name))
    path = tmp_path / "a" / RESULT_NAME
    path.write_text(path.read_text().replace('"accuracy": 0.93', '"accuracy": 0.995'))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / RESULT_NAME).write_text('{"kind": "something-else"}')
    board = rank(load_results(tmp_path))
    assert [e.name for e in board.categories[0.90]] == ["b"]
    reasons = {item.name: item.reason for item in board.untrusted}
    assert "checksum does not match" in reasons["a"] and reasons["foreign"] == "not an edl result document"


def test_an_edited_result_is_untrusted_on_a_prize_board_too_and_its_figures_are_not_shown(tmp_path, template):
    """The new-organiser trial: with --public-key an edited result was listed as 'unsigned' showing its faked 99.5 %."""
    from evaluator.report.render import render
    from evaluator.report.signing import finalise, init_keys, load_private, load_public

    private, public = init_keys(tmp_path / "keys")
    write_result(tmp_path / "r" / "a" / RESULT_NAME, finalise(result_variant(template, 0.93, 10.0, name="a"),
                                                              load_private(private)))
    path = tmp_path / "r" / "a" / RESULT_NAME
    path.write_text(path.read_text().replace('"accuracy": 0.93', '"accuracy": 0.995'))
    board = rank(load_results(tmp_path / "r", public_key=load_public(public)))
    assert [item.name for item in board.untrusted] == ["a"] and not board.ranked
    assert "99.5" not in render(board, "json") and "99.5" not in render(board, "csv")


def _twin(template, name, total_j, sha_of=None, **changes):
    """Another submission (its own bytes: one more metadata entry gives another sha256), or a copy of one."""
    result = result_variant(template, 0.95, total_j, name=sha_of or name, **changes)
    return dataclasses.replace(result, model=dataclasses.replace(result.model, name=name))


def test_a_copied_folder_is_not_ranked_under_its_new_name(tmp_path, template):
    import shutil

    write_result(tmp_path / "alice" / RESULT_NAME, result_variant(template, 0.95, 10.0, name="alice"))
    shutil.copytree(tmp_path / "alice", tmp_path / "mallory")
    board = rank(load_results(tmp_path))
    assert [e.name for e in board.categories[0.95]] == ["alice"]
    (misnamed,) = board.misnamed
    assert misnamed.folder == "mallory" and misnamed.name == "alice" and "'mallory' is not the name" in misnamed.reason


def test_one_model_is_one_entry_the_earliest_and_kind_folders_are_its_own(tmp_path, template):
    from evaluator.report.integrity import seal

    early = result_variant(template, 0.95, 10.0, name="first")
    late = _twin(template, "second", 9.0, sha_of="first")  # the same model bytes under another name
    late = dataclasses.replace(late, runs=[dataclasses.replace(late.runs[0], started_utc="2999-01-01T00:00:00+00:00")])
    write_result(tmp_path / "first" / RESULT_NAME, early)
    write_result(tmp_path / "second" / RESULT_NAME, seal(late))
    write_result(tmp_path / "other@fake-a100" / RESULT_NAME, result_variant(template, 0.95, 11.0, name="other"))
    board = rank(load_results(tmp_path))
    assert [e.name for e in board.categories[0.95]] == ["first", "other"]
    (duplicate,) = board.duplicates
    assert duplicate.name == "second" and duplicate.duplicate_of == "first" and "as first, scored earlier" in \
        duplicate.reason


def test_scored_by_the_real_scorer_and_ranked_end_to_end(tmp_path, monkeypatch, fake_gpu):
    """Real models, real score-dir children, real meters (fake RAPL tree, fake NVML), the real output ranked."""
    from evaluator.batch.directory import score_directory
    from evaluator.report.render import render

    fake_gpu(watts=80.0)
    images, labels = colour_images(1000, correct=930)
    data = save_data(tmp_path / "d.npz", images, labels)
    subs = tmp_path / "subs"
    subs.mkdir()
    colour_model(subs / "light.onnx")
    conv_model(subs / "heavy.onnx", channels=64)  # random weights: about chance accuracy, unranked
    monkeypatch.setenv("EDL_POWERCAP_ROOT", str(tmp_path / "pc"))
    with PowercapTree(tmp_path / "pc", package_watts=[40.0]):
        summary = score_directory(subs, tmp_path / "out", fast_config(data, passes=30))
    assert summary.counts["scored"] == 2
    board = rank(load_results(tmp_path / "out"))
    (light,) = board.categories[0.90]
    assert light.name == "light" and light.rank == 1 and light.accuracy == pytest.approx(0.93)
    run_energy = light.result.runs[0].energy
    assert run_energy.total_domains == ["gpu", "cpu"] and light.total_j == run_energy.cpu_j + run_energy.gpu_j > 0
    assert [e.name for e in board.unranked] == ["heavy"]
    assert '"name": "light"' in render(board, "json")


def test_two_runs_warn_of_a_wide_interval_and_by_gpu_keeps_untrusted_apart(tmp_path, template):
    from evaluator.report.leaderboard import UNTRUSTED_GROUP, rank_by_gpu
    from evaluator.report.uncertainty import interval

    two = result_variant(template, 0.95, 100.0, name="two")
    low, high, method = interval([90.0, 110.0], [0.0])
    energy = dataclasses.replace(two.energy, repeats_j=[90.0, 110.0], total_j_interval=[low, high],
                                 interval_method=method)
    board = rank([BoardEntry("two", dataclasses.replace(two, energy=energy))])
    assert any("two runs give a wide 95 % interval" in line and "--repeat 3" in line for line in board.warnings)
    write_result(tmp_path / "a" / RESULT_NAME, result_variant(template, 0.95, 10.0, name="a"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / RESULT_NAME).write_text("not json")
    boards = rank_by_gpu(load_results(tmp_path))
    assert [u.name for u in boards[UNTRUSTED_GROUP].untrusted] == ["junk"]
    assert [e.name for board in boards.values() for e in board.ranked] == ["a"]
