"""Files that appear whole or not at all, and checksums.

Every file the evaluator writes has one mode: ``0o666`` less the umask, as ``open()`` gives; with the
usual umask 022 that is 0644, readable by others and writable by the owner. Atomic writes go through
``mkstemp`` (always 0600), so they set that mode before the rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from evaluator.errors import ResultError

FILE_MODE = 0o666  # less the umask
OWNER_ONLY_MODE = 0o600  # a file that carries a secret (a private key, a job with the organiser's secrets)
TEMP_SUFFIX = ".tmp"
WRITE_PROBE_PREFIX = ".write-probe-"


def temp_prefix(name: str) -> str:
    """How a temp file for ``name`` begins: hidden, and named after the file it will become."""
    return f".{name}."


def temp_pattern(name: str = "*") -> str:
    """The glob of the temp files ``atomic_write_bytes`` leaves only when cut short (of ``name``, or of any file)."""
    return f"{temp_prefix(name)}*{TEMP_SUFFIX}"


def temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file (descriptor, name) in ``path``'s folder, named after ``path``: a rename away from it."""
    return tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX, dir=path.parent)


def write_probe_pattern() -> str:
    """The glob of the file ``probe_writable`` writes and removes at once."""
    return WRITE_PROBE_PREFIX + "*"


def probe_writable(folder: Path) -> None:
    """Create ``folder`` and write and remove 64 KiB in it: raises OSError where results could not be written
    (a read-only folder, a full disk), before anything is measured."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f"{WRITE_PROBE_PREFIX}{os.getpid()}"
    probe.write_bytes(b"\0" * 65536)
    probe.unlink()


def prepare_out_dir(out_dir: Path) -> Path:
    """Fail before measuring if results cannot be written (read-only folder, full disk)."""
    try:
        probe_writable(out_dir)
    except OSError as exc:
        raise ResultError(f"cannot write results to {out_dir} ({exc.strerror or exc}); pass a writable --out") from None
    return out_dir


def write_owner_only(path: Path, data: bytes) -> None:
    """Create ``path`` (never over an existing file) readable and writable by its owner only: it holds a secret."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def current_umask() -> int:
    """The process's umask: read from /proc where Linux shows it, since setting it to read it races threads."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path``, fsync, then rename over it: readers never see half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = temp_beside(path)
    try:
        os.fchmod(fd, FILE_MODE & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, document: object) -> None:
    atomic_write_bytes(path, (json.dumps(document, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
