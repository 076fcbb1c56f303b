"""A result folder that a failed or interrupted ``edl score`` leaves as it found it.

The scorer replaces files by name (``samples-1.csv``, ``timeline-1.png``, ``result.json``), so those
a folder held before the run are copied aside first; a run that does not finish removes the ones it
added and puts those back, and a folder it had to create goes away again. Only the scorer's own
names are touched: ``--out .`` must not lose, or copy, anything else.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evaluator.batch.outroot import ARCHIVE_DIR, utc_stamp
from evaluator.errors import EdlError
from evaluator.fileio import temp_pattern, write_probe_pattern
from evaluator.report.result import RESULT_NAME, SAMPLES_NAME, TIMELINE_NAME
from evaluator.runtime.session import TRT_CACHE_NAME

BACKUP_PREFIX = ".edl-before-"
# What evaluator.scoring.pipeline writes into its folder, as patterns.
RUN_OUTPUTS = (RESULT_NAME, temp_pattern(RESULT_NAME), SAMPLES_NAME.format("*"), TIMELINE_NAME.format("*"),
               TRT_CACHE_NAME, write_probe_pattern())


def _written_by_runs(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_OUTPUTS)


def _signature(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _sigint_held() -> Iterator[None]:
    """A second Ctrl-C must not stop the clean-up halfway."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class FolderRollback:
    """What ``folder`` held before a run; ``undo`` returns it to that, ``commit`` keeps the run's files."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.missing = [path for path in (self.folder, *self.folder.parents) if not os.path.lexists(path)]
        self.before: dict[str, tuple[int, int, int] | None] = {}
        self.backup: Path | None = None
        if not self.missing and self.folder.is_dir():
            self._copy_aside()

    def _copy_aside(self) -> None:
        try:
            for entry in list(self.folder.iterdir()):
                kept = _written_by_runs(entry.name) and entry.is_file() and not entry.is_symlink()
                self.before[entry.name] = _signature(entry) if kept else None
                if kept:
                    self.backup = self.backup or Path(tempfile.mkdtemp(prefix=BACKUP_PREFIX, dir=self.folder))
                    shutil.copy2(entry, self.backup / entry.name)
        except BaseException as exc:
            self.commit()
            if isinstance(exc, OSError):
                raise EdlError(f"cannot write results to {self.folder} ({exc.strerror or exc}); "
                               "pass a writable --out") from None
            raise

    def kept(self) -> str:
        """What the folder holds after ``undo``, in words."""
        if RESULT_NAME in self.before:
            return f"{self.folder / RESULT_NAME} from an earlier run is intact"
        return f"nothing was written to {self.folder}"

    def undo(self) -> None:
        """Remove what the run added, put back what it replaced, remove the folders it made."""
        with _sigint_held():
            if self.missing:
                if os.path.lexists(self.folder):
                    _remove(self.folder)
                for path in self.missing[1:]:  # the parents it made, innermost first, while empty
                    try:
                        path.rmdir()
                    except OSError:
                        break
                return
            if self.folder.is_dir():
                self._restore()
            self.commit()

    def _restore(self) -> None:
        for entry in self.folder.iterdir():
            if entry.name not in self.before and _written_by_runs(entry.name):
                _remove(entry)
        for name, signature in self.before.items():
            path = self.folder / name
            if signature is None or self.backup is None:
                continue
            if not path.is_file() or _signature(path) != signature:
                os.replace(self.backup / name, path)

    def keep_replaced(self) -> Path | None:
        """The run finished: what it replaced, if the folder held a result, is kept in ``folder/_archive/<utc>/``
        (a measured result is evidence; nothing is dropped), and the earlier run files it did not rewrite go
        there with it, so the folder holds only the new result's files. Returns the archive, or None."""
        if RESULT_NAME not in self.before or self.backup is None:
            self.commit()
            return None
        with _sigint_held():
            for name, signature in self.before.items():
                path = self.folder / name
                if signature is not None and path.is_file() and _signature(path) == signature:
                    path.unlink()  # not rewritten by this run: its copy is in the archive
            archive = self.folder / ARCHIVE_DIR / utc_stamp()
            archive.parent.mkdir(exist_ok=True)
            while archive.exists():
                archive = archive.with_name(archive.name + "-1")
            os.replace(self.backup, archive)
            self.backup = None
        return archive

    def commit(self) -> None:
        """Drop the copies: the run finished, or they were put back."""
        if self.backup is not None:
            shutil.rmtree(self.backup, ignore_errors=True)
            self.backup = None
