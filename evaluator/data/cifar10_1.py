"""CIFAR-10.1 (Recht et al. 2018): images drawn anew the way CIFAR-10's were, as the release's ``.npy`` pair.

The release is two files, ``cifar10.1_v6_data.npy`` (uint8 (2000, 32, 32, 3), NHWC RGB) and
``cifar10.1_v6_labels.npy``. A pair is named by either file (the other is found beside it:
``X_data.npy`` with ``X_labels.npy``) or by the folder holding exactly one pair. Each file is
recognised by its git blob id at the release commit, which verifies a copy without trusting
whoever served it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluator.data.dataset import Dataset, fingerprint, validate_arrays
from evaluator.data.formats import decode_npy, git_blob_id
from evaluator.errors import DataError

RELEASE_REPOSITORY = "modestyachts/CIFAR-10.1"
RELEASE_COMMIT = "d9982abb0bfc4846b8d13a11e66b887d946205d0"
RELEASE_URL = f"https://raw.githubusercontent.com/{RELEASE_REPOSITORY}/{RELEASE_COMMIT}/datasets"
URL_ENV = "EDL_CIFAR10_1_URL"  # a mirror: the folder URL that serves both files under their release names
SHORT_NAME = "cifar10.1"  # --private-data cifar10.1: the copy `edl data fetch --cifar10.1` cached
CACHE_FOLDER = "cifar10.1-v6"
DATA_SUFFIX, LABELS_SUFFIX = "_data.npy", "_labels.npy"


@dataclass(frozen=True)
class Release:
    """One published version: its two file names and their git blob ids at the release commit."""

    version: str
    data_blob: str
    labels_blob: str

    @property
    def data_name(self) -> str:
        return f"cifar10.1_{self.version}{DATA_SUFFIX}"

    @property
    def labels_name(self) -> str:
        return f"cifar10.1_{self.version}{LABELS_SUFFIX}"

    def describe(self) -> str:
        return f"CIFAR-10.1 {self.version} as released ({RELEASE_REPOSITORY} at {RELEASE_COMMIT[:7]}, git blob ids)"


V6 = Release("v6", "24349cc5f3fb59648d75cd8015b5a184b1f5c250", "e713b09cecf2ecd933970001909fcdec7c907ab0")
V4 = Release("v4", "1094f59a54cf768f7b1ca5029eb4a94b8c635ebe", "64acdcc7ba98d0554f9c9fe00c5483d9247e61df")
RELEASES = (V6, V4)
NAMING = (f"name CIFAR-10.1's pair by its data file (X{DATA_SUFFIX}, with X{LABELS_SUFFIX} beside it), its labels "
          "file, or the folder holding both")


def is_pair_file(path: Path) -> bool:
    return path.name.lower().endswith(".npy")


def pair_paths(path: Path) -> tuple[Path, Path]:
    """The (data, labels) files a ``.npy`` file or a folder names; refuses anything else with the rule."""
    if path.is_dir():
        stems = sorted(p.name[: -len(DATA_SUFFIX)] for p in path.glob(f"*{DATA_SUFFIX}")
                       if (path / (p.name[: -len(DATA_SUFFIX)] + LABELS_SUFFIX)).is_file())
        if len(stems) != 1:
            found = ", ".join(stems) or "none"
            raise DataError(f"{path}: holds {len(stems)} X{DATA_SUFFIX}/X{LABELS_SUFFIX} pairs ({found}); {NAMING}")
        return path / (stems[0] + DATA_SUFFIX), path / (stems[0] + LABELS_SUFFIX)
    for mine, other in ((DATA_SUFFIX, LABELS_SUFFIX), (LABELS_SUFFIX, DATA_SUFFIX)):
        if path.name.endswith(mine):
            partner = path.with_name(path.name[: -len(mine)] + other)
            if not partner.is_file():
                raise DataError(f"{path}: its partner {partner.name} is not beside it; {NAMING}")
            return (path, partner) if mine == DATA_SUFFIX else (partner, path)
    raise DataError(f"{path}: a lone .npy array; {NAMING}")


def recognise(data_raw: bytes, labels_raw: bytes) -> Release | None:
    """The release whose files these are, by git blob id; None for any other pair."""
    ids = (git_blob_id(data_raw), git_blob_id(labels_raw))
    return next((r for r in RELEASES if ids == (r.data_blob, r.labels_blob)), None)


def decode_pair(data_raw: bytes, labels_raw: bytes, where: str) -> Dataset:
    """The pair's bytes as a data set, validated like every other; its note says whether it is a release."""
    images = decode_npy(data_raw, f"{where} (data)")
    labels = decode_npy(labels_raw, f"{where} (labels)")
    images, labels = validate_arrays(images, labels, where)
    release = recognise(data_raw, labels_raw)
    note = release.describe() if release else "a .npy pair, not a recognised CIFAR-10.1 release (git blob ids differ)"
    return Dataset(images, labels, where, fingerprint(images, labels), False, note)


def load_pair(path: Path) -> Dataset:
    """Read the pair ``path`` names (a file of it, or its folder)."""
    data_path, labels_path = pair_paths(path)
    try:
        data_raw, labels_raw = data_path.read_bytes(), labels_path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the pair ({exc.strerror or exc})") from None
    return decode_pair(data_raw, labels_raw, str(data_path))
