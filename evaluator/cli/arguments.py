"""What a command was given, said plainly when it is not what the command expects, before the library runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from evaluator.errors import UsageError
from evaluator.report.batch_record import BATCH_NAME
from evaluator.report.result import RESULT_NAME

RESULT_WANTED = f"pass a {RESULT_NAME} written by edl score or score-dir, or the folder holding it"


def expect_result(path: Path) -> None:
    """``edl verify``'s argument is one result: not a results root, a submission or another file."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder; {RESULT_WANTED}")
    if path.is_dir():
        _expect_result_folder(path)
        return
    if path.suffix.lower() == ".onnx":
        raise UsageError(f"{path}: a submission, not a result; score it (edl score {path}) and verify its "
                         f"{RESULT_NAME}, or give it to verify with --model")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"{path}: not a JSON document; {RESULT_WANTED}") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror or exc}); {RESULT_WANTED}") from None


def _expect_result_folder(path: Path) -> None:
    if (path / RESULT_NAME).is_file():
        return
    inside = sorted(found.parent for found in path.glob(f"*/{RESULT_NAME}"))
    if inside or (path / BATCH_NAME).is_file():
        example = f", e.g. {inside[0] / RESULT_NAME}" if inside else ""
        raise UsageError(f"{path}: a results root ({len(inside)} result folder(s)); verify checks one result: pass "
                         f"one of its folders{example} (edl leaderboard {path} ranks them all)")
    raise UsageError(f"{path}: a folder without a {RESULT_NAME}; {RESULT_WANTED}")


def unignored_in_git(path: Path) -> Path | None:
    """The git work tree ``path`` lies in when git would not ignore it (a secret there can be committed)."""
    resolved = path.resolve()
    tree = next((folder for folder in (resolved, *resolved.parents) if (folder / ".git").exists()), None)
    if tree is None:
        return None
    git = shutil.which("git")
    if git is not None:
        ignored = subprocess.run([git, "-C", str(tree), "check-ignore", "-q", str(resolved)], capture_output=True)
        if ignored.returncode == 0:
            return None
    return tree
