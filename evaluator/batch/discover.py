"""What score-dir scores: each ``*.onnx`` in a folder, and each sub-folder holding exactly one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluator.errors import EdlError


@dataclass(frozen=True)
class Submission:
    name: str
    model: Path | None  # None when the entry is not a usable submission
    problem: str = ""


def discover(directory: Path) -> list[Submission]:
    """Each ``*.onnx`` file in ``directory``, and each sub-folder holding exactly one ``.onnx``."""
    if not directory.is_dir():
        raise EdlError(f"{directory}: not a folder of submissions")
    found: list[Submission] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix == ".onnx":
            found.append(Submission(entry.stem, entry))
        elif entry.is_dir():
            models = sorted(entry.glob("*.onnx"))
            if len(models) == 1:
                found.append(Submission(entry.name, models[0]))
            else:
                found.append(Submission(entry.name, None, f"the folder holds {len(models)} .onnx files; it needs one"))
    names = [s.name for s in found]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise EdlError(f"{directory}: several submissions are named {sorted(duplicates)} (a file and a folder?)")
    return found
