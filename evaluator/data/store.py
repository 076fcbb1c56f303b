"""Where the test set comes from: a path the user gave, the verified cache, or the official download."""

from __future__ import annotations

import json
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from evaluator.data import cifar10_1
from evaluator.data.dataset import Dataset, fingerprint
from evaluator.data.formats import (
    BIN_MEMBER,
    PY_MEMBER,
    decode_binary_batch,
    decode_python_batch,
    git_blob_id,
    load_npz,
    md5_bytes,
    md5_file,
    npz_bytes,
    read_tar,
    read_training_folder,
    read_training_tar,
)
from evaluator.errors import DataError
from evaluator.events import BytesDone, EventSink, silent
from evaluator.fileio import atomic_write_bytes, atomic_write_json

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_TEST_BATCH_MD5 = "40351d587109b95175f43aff81a1287e"
OFFICIAL_BINARY_TARBALL_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CACHE_NPZ = "cifar10-test.npz"
CACHE_META = "cifar10-test.json"
CACHE_TRAIN_NPZ = "cifar10-train.npz"  # the archive's training images, for the audit's training-image probe

"""Called with (bytes done, total bytes or None) while downloading."""


def default_cache_dir() -> Path:
    """``EDL_DATA_DIR``, else ``$XDG_CACHE_HOME/edl``, else ``~/.cache/edl``."""
    if env := os.environ.get("EDL_DATA_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edl"


def _known_official_fingerprint(cache_dir: Path) -> str | None:
    meta_path = cache_dir / CACHE_META
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    return meta.get("fingerprint") if meta.get("official") else None


def _make_dataset(images: np.ndarray, labels: np.ndarray, source: str, verified: bool, cache_dir: Path) -> Dataset:
    digest = fingerprint(images, labels)
    official = verified or digest == _known_official_fingerprint(cache_dir)
    note = "" if official else "not verified as the official test set (md5 of the official files not matched)"
    return Dataset(images, labels, source, digest, official, note)


def load_path(path: Path, cache_dir: Path | None = None) -> Dataset:
    """Read a test set the user pointed at, in any supported format."""
    cache_dir = cache_dir or default_cache_dir()
    path = Path(path).expanduser()
    if str(path) == cifar10_1.SHORT_NAME and not path.exists():  # a path of that name would win
        return load_cifar10_1(cache_dir)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; pass a CIFAR-10 archive, folder or .npz")
    if path.is_dir():
        for candidate in (path / "test_batch", path / "test_batch.bin", path / PY_MEMBER, path / BIN_MEMBER):
            if candidate.is_file():
                return load_path(candidate, cache_dir)
        if any(path.glob(f"*{cifar10_1.DATA_SUFFIX}")):
            return cifar10_1.load_pair(path)
        raise DataError(
            f"{path}: no test_batch or test_batch.bin inside; pass cifar-10-batches-py/, cifar-10-batches-bin/, "
            "an archive, an .npz or CIFAR-10.1's .npy pair"
        )
    name = path.name.lower()
    if cifar10_1.is_pair_file(path):
        return cifar10_1.load_pair(path)
    if name.endswith(".npz"):
        images, labels = load_npz(path)
        return _make_dataset(images, labels, str(path), False, cache_dir)
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        images, labels, member_md5 = read_tar(path)
        verified = member_md5 == OFFICIAL_TEST_BATCH_MD5 or md5_file(path) in (
            OFFICIAL_TARBALL_MD5,
            OFFICIAL_BINARY_TARBALL_MD5,
        )
        return _make_dataset(images, labels, str(path), verified, cache_dir)
    raw = path.read_bytes()
    if name.endswith(".bin"):
        images, labels = decode_binary_batch(raw, str(path))
        return _make_dataset(images, labels, str(path), False, cache_dir)
    images, labels = decode_python_batch(raw, str(path))
    return _make_dataset(images, labels, str(path), md5_bytes(raw) == OFFICIAL_TEST_BATCH_MD5, cache_dir)


def load_cached(cache_dir: Path | None = None) -> Dataset | None:
    """The cached canonical test set, re-fingerprinted against its metadata; None when absent."""
    cache_dir = cache_dir or default_cache_dir()
    npz, meta_path = cache_dir / CACHE_NPZ, cache_dir / CACHE_META
    if not npz.is_file() or not meta_path.is_file():
        return None
    images, labels = load_npz(npz)
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise DataError(f"{meta_path}: unreadable cache metadata ({exc}); run `edl data fetch --force`") from None
    digest = fingerprint(images, labels)
    if digest != meta.get("fingerprint"):
        raise DataError(f"{npz}: cached data does not match its recorded fingerprint; run `edl data fetch --force`")
    return Dataset(images, labels, meta.get("source", str(npz)), digest, bool(meta.get("official")))


def store_cache(images: np.ndarray, labels: np.ndarray, source: str, official: bool, cache_dir: Path) -> Dataset:
    """Write the canonical form and its metadata; each file appears whole or not at all."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache_dir / CACHE_NPZ, npz_bytes(images, labels))
    digest = fingerprint(images, labels)
    atomic_write_json(
        cache_dir / CACHE_META,
        {"fingerprint": digest, "images": int(labels.shape[0]), "official": official, "source": source},
    )
    return Dataset(images, labels, source, digest, official)


FETCH_HINT = ("Offline? Fetch cifar-10-python.tar.gz on another machine, then cache it with `edl data fetch --from "
              "PATH` (or give its path as the test set)")


def download(url: str, destination: Path, sink: EventSink = silent, hint: str = FETCH_HINT) -> None:
    """Stream ``url`` to ``destination`` (a temp name the caller owns), a ``BytesDone`` after every chunk."""
    what = url.rstrip("/").rsplit("/", 1)[-1]
    try:
        with urllib.request.urlopen(url, timeout=60) as response, destination.open("wb") as out:
            total = response.headers.get("Content-Length")
            total_bytes = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                sink(BytesDone(what, done, total_bytes))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        destination.unlink(missing_ok=True)
        raise DataError(f"could not download {url} ({exc}). {hint}") from None


def download_url() -> str:
    """Where the official archive is downloaded from (``EDL_CIFAR10_URL`` points it at a mirror)."""
    return os.environ.get("EDL_CIFAR10_URL", OFFICIAL_URL)


def fetch(
    cache_dir: Path | None = None,
    url: str | None = None,
    expected_md5: str = OFFICIAL_TARBALL_MD5,
    expected_member_md5: str | None = OFFICIAL_TEST_BATCH_MD5,
    sink: EventSink = silent,
) -> Dataset:
    """Download the official archive, verify both md5s, and cache the canonical test set."""
    cache_dir = cache_dir or default_cache_dir()
    url = url or download_url()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f".download-{os.getpid()}.part"
    try:
        download(url, partial, sink)
        got = md5_file(partial)
        if got != expected_md5:
            raise DataError(
                f"{url}: md5 {got} does not match the official {expected_md5}; the download is corrupt "
                "or not the CIFAR-10 python archive. Nothing was cached; try again"
            )
        images, labels, member_md5 = read_tar(partial)
        if expected_member_md5 and member_md5 != expected_member_md5:
            raise DataError(f"{url}: test_batch md5 {member_md5} is not the official {expected_member_md5}")
        cache_training(partial, cache_dir)
        return store_cache(images, labels, url, True, cache_dir)
    finally:
        partial.unlink(missing_ok=True)


def import_archive(path: Path, cache_dir: Path | None = None) -> Dataset:
    """Cache a locally held copy of the official archive (for machines without internet)."""
    cache_dir = cache_dir or default_cache_dir()
    dataset = load_path(path, cache_dir)
    if not dataset.official:
        raise DataError(f"{path}: not the official CIFAR-10 test set (md5 mismatch); refusing to cache it as official")
    cache_training(Path(path).expanduser(), cache_dir)
    return store_cache(dataset.images, dataset.labels, str(path), True, cache_dir)


def resolve(path: Path | None, cache_dir: Path | None = None, allow_download: bool = True,
            sink: EventSink = silent) -> Dataset:
    """The data set ``edl score`` uses: ``path`` if given, else the cache, else a fresh download."""
    cache_dir = cache_dir or default_cache_dir()
    if path is not None:
        return load_path(path, cache_dir)
    cached = load_cached(cache_dir)
    if cached is not None:
        return cached
    if not allow_download:
        raise DataError(
            f"the CIFAR-10 test set is not cached in {cache_dir}; run `edl data fetch` (or give the test set's "
            "path: cifar-10-python.tar.gz, cifar-10-batches-py/, cifar-10-binary.tar.gz, test_batch.bin or .npz)"
        )
    return fetch(cache_dir, sink=sink)


def _training_arrays(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The training images a data path holds: an archive's or a folder's batches (a batch file: its folder's)."""
    name = path.name.lower()
    if path.is_dir():
        return read_training_folder(path)
    if name.endswith((".tar.gz", ".tgz", ".tar")) or (path.is_file() and tarfile.is_tarfile(path)):
        return read_training_tar(path)  # an archive, whatever its name (a download in progress has none)
    if name.endswith(".npz"):
        return None
    return read_training_folder(path.parent) if path.is_file() else None


def cache_training(path: Path, cache_dir: Path) -> None:
    """Keep the training images of an archive being cached, so that a scoring from the cache can probe them."""
    arrays = _training_arrays(path)
    if arrays is not None:
        atomic_write_bytes(cache_dir / CACHE_TRAIN_NPZ, npz_bytes(*arrays))


def load_training(train_data: Path | None, data: Path | None,
                  cache_dir: Path | None = None) -> tuple[Dataset | None, str]:
    """The training images for the audit's probe: ``train_data`` (any form, an .npz too), else the training part
    of the test set's own source (archive, folder, or the cache). Returns them, or None and the reason."""
    cache_dir = cache_dir or default_cache_dir()
    if train_data is not None:
        path = Path(train_data).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file or folder; pass --train-data a CIFAR-10 archive, folder or .npz")
        arrays = load_npz(path) if path.name.lower().endswith(".npz") else _training_arrays(path)
        if arrays is None:
            raise DataError(f"{path}: no data_batch_1..5 (or .bin) inside; pass --train-data the official archive, "
                            "its extracted folder, or an .npz of training images")
        source = str(path)
    elif data is not None:
        path = Path(data).expanduser()
        arrays, source = _training_arrays(path), str(path)
        if arrays is None:
            return None, (f"{path} holds no training images (an .npz or a lone test batch); pass --train-data with "
                          "the official archive or an .npz of training images")
    else:
        cached = cache_dir / CACHE_TRAIN_NPZ
        if not cached.is_file():
            return None, (f"no training images cached in {cache_dir} (cached before edl kept them); run `edl data "
                          "fetch --force`, or pass --train-data")
        arrays, source = load_npz(cached), str(cached)
    images, labels = arrays
    return Dataset(images, labels, source, fingerprint(images, labels), False, "training images"), ""


# --- CIFAR-10.1: images no CIFAR-10 model was trained on (for --private-data) --------------------------------

CIFAR10_1_HINT = ("Offline? Fetch cifar10.1_v6_data.npy and cifar10.1_v6_labels.npy on another machine, then cache "
                  "them with `edl data fetch --cifar10.1 --from PATH` (or give their path)")


def cifar10_1_url() -> str:
    """The folder URL both CIFAR-10.1 files are downloaded from (``EDL_CIFAR10_1_URL`` points it at a mirror)."""
    return os.environ.get(cifar10_1.URL_ENV, cifar10_1.RELEASE_URL).rstrip("/")


def load_cifar10_1(cache_dir: Path | None = None) -> Dataset:
    """The cached CIFAR-10.1 v6 (``--private-data cifar10.1``), its git blob ids checked again."""
    folder = (cache_dir or default_cache_dir()) / cifar10_1.CACHE_FOLDER
    if not (folder / cifar10_1.V6.data_name).is_file():
        raise DataError(f"{cifar10_1.SHORT_NAME}: CIFAR-10.1 v6 is not cached in {folder.parent}; run `edl data "
                        "fetch --cifar10.1` (offline: add --from PATH), or give the pair's path")
    dataset = cifar10_1.load_pair(folder / cifar10_1.V6.data_name)
    if dataset.note != cifar10_1.V6.describe():
        raise DataError(f"{folder}: the cached CIFAR-10.1 files no longer match v6's git blob ids; run `edl data "
                        "fetch --cifar10.1 --force`")
    return dataset


def _store_cifar10_1(data_raw: bytes, labels_raw: bytes, where: str, cache_dir: Path,
                     release: cifar10_1.Release) -> Dataset:
    """Refuse bytes that are not ``release``; else cache both files under their release names."""
    for name, raw, expected in ((release.data_name, data_raw, release.data_blob),
                                (release.labels_name, labels_raw, release.labels_blob)):
        if (got := git_blob_id(raw)) != expected:
            raise DataError(f"{where}: {name} has git blob id {got}, not CIFAR-10.1 {release.version}'s {expected} "
                            f"({cifar10_1.RELEASE_REPOSITORY} at {cifar10_1.RELEASE_COMMIT[:7]}); the copy is "
                            "corrupt or another file. Nothing was cached")
    dataset = cifar10_1.decode_pair(data_raw, labels_raw, where)
    folder = cache_dir / cifar10_1.CACHE_FOLDER
    atomic_write_bytes(folder / release.labels_name, labels_raw)
    atomic_write_bytes(folder / release.data_name, data_raw)  # last: its presence means the pair is cached
    return dataset


def fetch_cifar10_1(cache_dir: Path | None = None, url: str | None = None, sink: EventSink = silent,
                    release: cifar10_1.Release | None = None) -> Dataset:
    """Download both files of ``release`` (v6), verify their git blob ids, and cache them."""
    release = release or cifar10_1.V6
    cache_dir = cache_dir or default_cache_dir()
    base = (url or cifar10_1_url()).rstrip("/")
    cache_dir.mkdir(parents=True, exist_ok=True)
    raws = []
    for name in (release.data_name, release.labels_name):
        partial = cache_dir / f".download-{os.getpid()}-{name}.part"
        try:
            download(f"{base}/{name}", partial, sink, CIFAR10_1_HINT)
            raws.append(partial.read_bytes())
        finally:
            partial.unlink(missing_ok=True)
    return _store_cifar10_1(raws[0], raws[1], base, cache_dir, release)


def import_cifar10_1(path: Path, cache_dir: Path | None = None,
                     release: cifar10_1.Release | None = None) -> Dataset:
    """Cache a local copy of the pair (its data file, labels file or folder), verified like a download."""
    release = release or cifar10_1.V6
    data_path, labels_path = cifar10_1.pair_paths(Path(path).expanduser())
    try:
        data_raw, labels_raw = data_path.read_bytes(), labels_path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the pair ({exc.strerror or exc})") from None
    return _store_cifar10_1(data_raw, labels_raw, str(data_path), cache_dir or default_cache_dir(), release)
