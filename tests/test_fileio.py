"""One mode for every file a result folder holds: 0o666 less the umask (0644 under the usual 022)."""

from __future__ import annotations

import os
import stat

import pytest
from builders import oracle_images, oracle_model, save_npz

from evaluator.fileio import atomic_write_bytes, current_umask


@pytest.fixture
def umask():
    """Set the umask for a test (children inherit it); put the old one back after."""
    previous = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask_as_open_does(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    atomic_write_bytes(tmp_path / "atomic.json", b"{}")
    (tmp_path / "plain.csv").write_text("x\n")
    assert _mode(tmp_path / "atomic.json") == _mode(tmp_path / "plain.csv") == mode
    atomic_write_bytes(tmp_path / "atomic.json", b"{}\n")  # replacing keeps the same rule
    assert _mode(tmp_path / "atomic.json") == mode


def test_everything_a_result_folder_holds_is_0644(tmp_path, umask, cli):
    umask(0o022)
    subs, results = tmp_path / "subs", tmp_path / "results"
    subs.mkdir()
    oracle_model(subs / "m.onnx")
    data = save_npz(tmp_path / "d.npz", *oracle_images(100, correct=90))
    run = cli("score-dir", subs, "--data", data, "--passes", "1", "--idle-seconds", "0", "--cooldown", "0",
              "--audit-copies", "0", "--out", results)
    assert run.exit_code == 0, run.stderr
    board = cli("leaderboard", results, "--format", "html", "--output", results / "board.html")
    assert board.exit_code == 0, board.stderr
    written = {path.relative_to(results).as_posix(): _mode(path) for path in results.rglob("*") if path.is_file()}
    assert {"batch.json", "board.html", "m/result.json", "m/samples-1.csv"} <= set(written), written
    assert set(written.values()) == {0o644}, written
