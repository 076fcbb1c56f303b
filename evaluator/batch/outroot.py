"""A results root that only ever grows: runs are staged aside, a whole result appears in one rename, and
whatever a batch replaces is moved into a dated archive folder, never deleted.

Layout of ``--out``: ``<name>/`` holds a whole result (``result.json`` and the samples and timelines
it names) or does not exist; ``_partial/<name>/`` holds the runs measured so far (what a resumed
batch builds on); ``_archive/<utc>/`` holds what a batch superseded, at the same relative paths. A
submission's own ``failures/<utc>.json`` records a failed re-run beside the scored result that stands.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from evaluator.batch.reference import REFERENCE_NAME
from evaluator.config import ScoreConfig, comparable_settings
from evaluator.errors import ResultError, UsageError
from evaluator.report.batch_record import BATCH_NAME
from evaluator.report.reader import read_result
from evaluator.report.result import RESULT_NAME, RUN_RESULT_NAME, Result

PARTIAL_DIR, ARCHIVE_DIR, FAILURES_DIR = "_partial", "_archive", "failures"
RUN_RESULTS = RUN_RESULT_NAME.format("*")


def read_or_none(path: Path) -> Result | None:
    try:
        return read_result(path)
    except ResultError:
        return None  # absent, unreadable or from another schema: not a result to build on


def utc_stamp() -> str:
    """A file-name-safe UTC time: 20261201T103000Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def new_failure_path(folder: Path) -> Path:
    """A file of its own for one failure record in ``folder/failures/``: ``<utc>.json``, or ``<utc>-2.json`` and on
    when that second already has one (two failures within a second must not share one file: one would be lost).
    The name is claimed by creating the file exclusively; the record then replaces the empty claim atomically."""
    failures = folder / FAILURES_DIR
    failures.mkdir(exist_ok=True)
    stamp, count = utc_stamp(), 1
    while True:
        path = failures / (f"{stamp}.json" if count == 1 else f"{stamp}-{count}.json")
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            count += 1


def _unique(path: Path) -> Path:
    candidate, count = path, 1
    while os.path.lexists(candidate):
        count += 1
        candidate = path.with_name(f"{path.name}-{count}")
    return candidate


class Archive:
    """``--out/_archive/<utc>/``, made on the first move: what one batch superseded, at its relative paths."""

    def __init__(self, out_root: Path) -> None:
        self.out_root = out_root
        self.folder: Path | None = None
        self.moved: list[str] = []

    def move(self, path: Path) -> Path:
        """Move ``path`` (inside the results root) into the archive; returns where it now is."""
        if self.folder is None:
            self.folder = _unique(self.out_root / ARCHIVE_DIR / utc_stamp())
        target = _unique(self.folder / path.relative_to(self.out_root))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        self.moved.append(str(target))
        return target


def stage_of(out_root: Path, folder: str) -> Path:
    return out_root / PARTIAL_DIR / folder


def _copy(source: Path, target: Path) -> None:
    """A copy, not a hard link: the archived file must not change if the new folder's copy is ever rewritten."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def publish(stage: Path, final: Path, archive: Archive) -> str:
    """Make the staged ``result.json`` (and its files) the submission's result; an earlier one goes to the archive.

    The earlier folder's files the new result still names (a rematch keeps its first runs) are copied in
    first, so the rename leaves a whole folder. Killed between the two renames, ``recover`` finishes it.
    Returns where the earlier result went ("" if there was none)."""
    if final.is_dir():
        for source in final.rglob("*"):
            target = stage / source.relative_to(final)
            if source.is_file() and source.name != RESULT_NAME and not os.path.lexists(target):
                _copy(source, target)
    for partial in stage.glob(RUN_RESULTS):
        partial.unlink()
    archived = str(archive.move(final)) if os.path.lexists(final) else ""
    os.replace(stage, final)
    remove_if_empty(stage.parent)
    return archived


def remove_if_empty(folder: Path) -> None:
    """``_partial/`` goes when its last staged submission does."""
    try:
        folder.rmdir()
    except OSError:
        pass


def recover(out_root: Path, archive: Archive) -> list[str]:
    """Finish the publications a killed batch left half done: a staged whole ``result.json`` is published."""
    finished = []
    for staged in sorted((out_root / PARTIAL_DIR).glob(f"*/{RESULT_NAME}")):
        if read_or_none(staged) is not None:
            publish(staged.parent, out_root / staged.parent.name, archive)
            finished.append(staged.parent.name)
    return finished


def result_folders(out_root: Path) -> Iterator[Path]:
    """The submissions' result folders in a results root (edl's own ``_`` folders left out)."""
    if out_root.is_dir():
        for folder in sorted(out_root.iterdir()):
            if folder.is_dir() and not folder.name.startswith(("_", ".")) and (folder / RESULT_NAME).is_file():
                yield folder


def _measurements(out_root: Path) -> Iterator[Result]:
    """Every scored result and staged run in the results root: what a batch must not mix with other settings."""
    paths = [folder / RESULT_NAME for folder in result_folders(out_root)]
    paths += sorted((out_root / PARTIAL_DIR).glob(f"*/{RUN_RESULTS}"))
    paths += sorted((out_root / PARTIAL_DIR).glob(f"*/{RESULT_NAME}"))
    for path in paths:
        result = read_or_none(path)
        if result is not None and result.scored:
            yield result


def measured_differences(out_root: Path, config: ScoreConfig, fingerprint: str) -> tuple[int, dict[str, set[str]]]:
    """How many earlier measurements there are, and each setting (or the data) on which some differ: their values."""
    now = {**comparable_settings(config), "data": fingerprint}
    count, differ = 0, dict[str, set[str]]()
    for result in _measurements(out_root):
        count += 1
        theirs = {**comparable_settings(result.config), "data": result.data.fingerprint if result.data else None}
        for key in sorted(set(now) | set(theirs)):
            if theirs.get(key) != now.get(key):
                differ.setdefault(key, set()).add(json.dumps(theirs.get(key)))
    return count, differ


def refuse_incomparable(out_root: Path, config: ScoreConfig, fingerprint: str) -> None:
    """A batch under settings not comparable with the measurements already in ``out_root`` does not start."""
    count, differ = measured_differences(out_root, config, fingerprint)
    if not differ:
        return
    now = {**comparable_settings(config), "data": fingerprint}
    listing = "; ".join(f"{key}: {' or '.join(sorted(values))} there, {json.dumps(now.get(key))} now"
                        for key, values in differ.items())
    raise UsageError(f"{out_root} holds {count} measured result(s) under other settings ({listing}): they cannot be "
                     f"compared or resumed. Pass a new --out to score into a fresh folder, or --force to move the "
                     f"earlier results into {out_root / ARCHIVE_DIR}/<utc>/ (nothing is deleted) and score again")


def archive_everything(out_root: Path, archive: Archive) -> None:
    """``--force``: every result folder, the staged runs, the reference's runs and batch.json go to the archive."""
    for folder in list(result_folders(out_root)):
        archive.move(folder)
    for name in (PARTIAL_DIR, REFERENCE_NAME, BATCH_NAME):
        if os.path.lexists(out_root / name):
            archive.move(out_root / name)


def archive_batch_record(out_root: Path, archive: Archive, names: tuple[str, ...] = (BATCH_NAME, REFERENCE_NAME)
                         ) -> None:
    """The previous batch's record is kept, not overwritten: its reference runs before a batch measures anything,
    its batch.json only when the new one is written (an interrupted batch leaves the board its drift record)."""
    for name in names:
        if os.path.lexists(out_root / name):
            archive.move(out_root / name)
