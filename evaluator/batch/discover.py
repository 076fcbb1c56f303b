"""What score-dir scores: each ``.onnx`` file in a folder, and each sub-folder holding exactly one.

The suffix is matched in any case (``TeamA.ONNX``). Names starting with ``.`` (hidden) or ``_``
(kept for edl's own folders in a results root: ``_reference``, ``_archive``, ``_partial``) are not
submissions; neither is any other file. Nothing is dropped in silence: each entry left out is
listed with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evaluator.errors import UsageError
from evaluator.report.batch_record import IgnoredEntry

RESERVED_PREFIX = "_"


@dataclass(frozen=True)
class FoundSubmission:
    """An entry of the folder that score-dir takes for a submission: its name and model, or why it cannot be scored."""

    name: str
    model: Path | None  # None when the entry is not a usable submission
    problem: str = ""


@dataclass(frozen=True)
class Found:
    """The submissions of a folder, and every entry that is not one, with why."""

    submissions: list[FoundSubmission] = field(default_factory=list)
    ignored: list[IgnoredEntry] = field(default_factory=list)


def is_model_file(path: Path) -> bool:
    return path.suffix.lower() == ".onnx" and path.is_file()


def _why_not(entry: Path, exclude: set[Path]) -> str:
    """Why ``entry`` is not a submission, or "" when it may be one."""
    if entry.resolve() in exclude:
        return "the results folder (--out) itself"
    if entry.name.startswith("."):
        return "hidden (its name starts with '.')"
    if entry.name.startswith(RESERVED_PREFIX):
        return "names starting with '_' are kept for edl's own folders (_reference, _archive, _partial): rename it"
    if entry.is_file() and not is_model_file(entry):
        return "not an .onnx file"
    if not entry.is_file() and not entry.is_dir():
        return "neither a file nor a folder"
    return ""


def discover(directory: Path, exclude: tuple[Path, ...] = ()) -> Found:
    """Each ``.onnx`` file in ``directory``, each sub-folder holding exactly one, and what was left out."""
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a folder of submissions")
    found = Found()
    excluded = {path.resolve() for path in exclude}
    for entry in sorted(directory.iterdir()):
        if reason := _why_not(entry, excluded):
            found.ignored.append(IgnoredEntry(entry.name, reason))
        elif entry.is_file():
            found.submissions.append(FoundSubmission(entry.stem, entry))
        else:
            models = sorted(path for path in entry.iterdir() if is_model_file(path))
            if len(models) == 1:
                found.submissions.append(FoundSubmission(entry.name, models[0]))
            else:
                found.submissions.append(FoundSubmission(entry.name, None,
                                                    f"the folder holds {len(models)} .onnx files; it needs one"))
    names = [s.name for s in found.submissions]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise UsageError(f"{directory}: several submissions are named {sorted(duplicates)} (a file and a folder?)")
    return found
