"""The result folder a run that does not finish leaves behind: as it found it, and nothing else touched."""

from __future__ import annotations

from evaluator.cli.outdir import FolderRollback


def test_undo_puts_back_the_scorers_files_and_leaves_everything_else(tmp_path):
    (tmp_path / "samples-1.csv").write_text("earlier\n")
    (tmp_path / "result.json").write_text("{}\n")
    (tmp_path / "model.onnx").write_bytes(b"the user's own file, never copied")
    rollback = FolderRollback(tmp_path)
    assert sorted(p.name for p in rollback.backup.iterdir()) == ["result.json", "samples-1.csv"]
    (tmp_path / "samples-1.csv").unlink()  # as the meter does, then writes afresh
    (tmp_path / "samples-1.csv").write_text("this run\n")
    (tmp_path / "timeline-1.png").write_bytes(b"png")
    (tmp_path / "trt-cache").mkdir()
    (tmp_path / "notes.txt").write_text("someone else's, written meanwhile\n")
    rollback.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "notes.txt", "result.json", "samples-1.csv"]
    assert (tmp_path / "samples-1.csv").read_text() == "earlier\n"
    assert rollback.kept() == f"{tmp_path / 'result.json'} from an earlier run is intact"


def test_undo_removes_the_folders_the_run_made_and_commit_keeps_the_run(tmp_path):
    out = tmp_path / "results" / "x"
    rollback = FolderRollback(out)
    out.mkdir(parents=True)
    (out / "samples-1.csv").write_text("this run\n")
    rollback.undo()
    assert list(tmp_path.iterdir()) == [] and rollback.kept() == f"nothing was written to {out}"
    (tmp_path / "o").mkdir()
    kept = FolderRollback(tmp_path / "o")
    (tmp_path / "o" / "result.json").write_text("{}\n")
    kept.commit()
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["result.json"]


def test_a_finished_run_keeps_the_result_it_replaced_in_the_folders_archive(tmp_path):
    """The new-organiser trial: `edl score` into a score-dir result folder replaced its signed result, and left
    the old run 2's samples beside a one-run result. Both now move to <folder>/_archive/<utc>/."""
    (tmp_path / "result.json").write_text('{"old": true}\n')
    (tmp_path / "samples-1.csv").write_text("old run 1\n")
    (tmp_path / "samples-2.csv").write_text("old run 2\n")
    rollback = FolderRollback(tmp_path)
    (tmp_path / "samples-1.csv").unlink()
    (tmp_path / "samples-1.csv").write_text("new run 1\n")
    (tmp_path / "result.json").write_text('{"new": true}\n')
    archive = rollback.keep_replaced()
    assert archive is not None and archive.parent == tmp_path / "_archive"
    assert sorted(p.name for p in archive.iterdir()) == ["result.json", "samples-1.csv", "samples-2.csv"]
    assert (archive / "result.json").read_text() == '{"old": true}\n'
    assert (archive / "samples-2.csv").read_text() == "old run 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_archive", "result.json", "samples-1.csv"]
    assert (tmp_path / "samples-1.csv").read_text() == "new run 1\n"
    fresh = FolderRollback(tmp_path / "new")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "result.json").write_text("{}\n")
    assert fresh.keep_replaced() is None and [p.name for p in (tmp_path / "new").iterdir()] == ["result.json"]
