"""Every published form of the CIFAR-10 test batch, decoded to the canonical arrays; nothing else is ever built."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from evaluator.data.dataset import validate_arrays
from evaluator.errors import DataError

PY_MEMBER = "cifar-10-batches-py/test_batch"
BIN_MEMBER = "cifar-10-batches-bin/test_batch.bin"
RECORD_BYTES = 1 + 32 * 32 * 3


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's pickles hold dicts, lists, bytes and numpy arrays; nothing else may be built.

    A plain ``pickle.load`` of a file someone handed us could run arbitrary code.
    """

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("_codecs", "encode"),  # how protocol 2 spells bytes under Python 3
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to build {module}.{name} from a data file")


def decode_python_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode the python version's ``test_batch``: rows of 3072 bytes, CHW, plus ``labels``."""
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any decoding failure means the same thing here
        raise DataError(f"{where}: not a readable CIFAR-10 python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{where}: expected a dict with 'data' and 'labels', found {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{where}: the batch lacks 'data' or 'labels' (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{where}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return validate_arrays(images, labels, where)


def decode_binary_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode the binary version: records of 1 label byte then 3072 CHW pixel bytes."""
    if len(raw) == 0 or len(raw) % RECORD_BYTES:
        raise DataError(
            f"{where}: {len(raw)} bytes is not a whole number of {RECORD_BYTES}-byte records "
            "(truncated or not a CIFAR-10 binary batch)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].copy()
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return validate_arrays(images, labels, where)


def npz_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The .npz form ``load_npz`` reads: arrays ``x`` (images) and ``y`` (labels)."""
    buffer = io.BytesIO()
    np.savez(buffer, x=images, y=labels)
    return buffer.getvalue()


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive or "y" not in archive:
                raise DataError(f"{path}: an .npz test set needs arrays 'x' (N, 32, 32, 3) uint8 and 'y' (N,)")
            return validate_arrays(archive["x"], archive["y"], str(path))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip, pickle-refusal and header errors alike
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def read_tar(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Read the test batch out of either official tarball; return arrays and the member's md5."""
    try:
        with tarfile.open(path, "r:*") as archive:
            names = archive.getnames()
            for member, decode in ((PY_MEMBER, decode_python_batch), (BIN_MEMBER, decode_binary_batch)):
                if member in names:
                    extracted = archive.extractfile(member)
                    if extracted is None:
                        raise DataError(f"{path}: {member} is not a regular file in the archive")
                    raw = extracted.read()
                    images, labels = decode(raw, f"{path}:{member}")
                    return images, labels, md5_bytes(raw)
    except DataError:
        raise
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: corrupt or truncated archive ({exc}); download it again") from None
    raise DataError(f"{path}: the archive holds neither {PY_MEMBER} nor {BIN_MEMBER}")


def git_blob_id(data: bytes) -> str:
    """Git's id of a file's bytes (sha1 of ``b"blob <len>\\0" + data``): checks a download against a commit."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def decode_npy(raw: bytes, where: str) -> np.ndarray:
    """One ``.npy`` array, never unpickled (an object array could build anything)."""
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - header, size and pickle-refusal errors alike
        raise DataError(f"{where}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{where}: holds {type(array).__name__}, not one .npy array")
    return array
