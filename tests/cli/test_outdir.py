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
