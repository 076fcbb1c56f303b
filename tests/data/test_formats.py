"""The test set in every published format, decoded to the same canonical arrays; bad data refused clearly."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
from builders import binary_batch_bytes, make_tarball, python_batch_bytes, save_npz

from evaluator.data import dataset as ds
from evaluator.data import formats, store
from evaluator.errors import DataError


def test_python_tarball_decodes_chw_rows_to_nhwc(tmp_path, arrays):
    images, labels = arrays
    tarball = make_tarball(tmp_path / "cifar-10-python.tar.gz", formats.PY_MEMBER, python_batch_bytes(images, labels))
    dataset = store.load_path(tarball)
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.count == 50
    assert not dataset.official  # not the md5 of the real archive
    assert dataset.fingerprint == ds.fingerprint(images, labels)


def test_every_format_gives_the_same_fingerprint(tmp_path, arrays):
    images, labels = arrays
    py_raw, bin_raw = python_batch_bytes(images, labels), binary_batch_bytes(images, labels)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(py_raw)
    bin_folder = tmp_path / "cifar-10-batches-bin"
    bin_folder.mkdir()
    (bin_folder / "test_batch.bin").write_bytes(bin_raw)
    sources = [
        make_tarball(tmp_path / "py.tar.gz", formats.PY_MEMBER, py_raw),
        make_tarball(tmp_path / "cifar-10-binary.tar.gz", formats.BIN_MEMBER, bin_raw),
        folder,
        bin_folder,
        bin_folder / "test_batch.bin",
        save_npz(tmp_path / "set.npz", images, labels),
    ]
    prints = {store.load_path(source).fingerprint for source in sources}
    assert prints == {ds.fingerprint(images, labels)}


def test_fingerprint_changes_with_one_pixel_or_label(arrays):
    images, labels = arrays
    base = ds.fingerprint(images, labels)
    changed = images.copy()
    changed[3, 4, 5, 1] ^= 1
    relabelled = labels.copy()
    relabelled[0] = (relabelled[0] + 1) % 10
    assert len({base, ds.fingerprint(changed, labels), ds.fingerprint(images, relabelled)}) == 3


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated", "corrupt or truncated"),
        ("binary_bad_length", "whole number"),
        ("labels_out_of_range", "labels must be 0..9"),
        ("float_images", "expected uint8"),
        ("wrong_shape", "(N, 32, 32, 3)"),
        ("malicious_pickle", "refusing to build"),
        ("missing_member", "neither"),
        ("missing_file", "no such file"),
    ],
)
def test_bad_data_is_refused_with_a_clear_reason(tmp_path, arrays, case, message):
    images, labels = arrays
    if case == "truncated":
        whole = make_tarball(tmp_path / "whole.tar.gz", formats.PY_MEMBER, python_batch_bytes(images, labels))
        path = tmp_path / "cut.tar.gz"
        path.write_bytes(whole.read_bytes()[:5000])
    elif case == "binary_bad_length":
        path = tmp_path / "test_batch.bin"
        path.write_bytes(binary_batch_bytes(images, labels)[:-7])
    elif case == "labels_out_of_range":
        path = save_npz(tmp_path / "bad.npz", images, np.full(50, 10, np.uint8))
    elif case == "float_images":
        path = save_npz(tmp_path / "bad.npz", images.astype(np.float32), labels)
    elif case == "wrong_shape":
        path = save_npz(tmp_path / "bad.npz", images.reshape(50, 3, 32, 32), labels)
    elif case == "malicious_pickle":

        class Boom:
            def __reduce__(self):
                return (print, ("pwned",))

        path = tmp_path / "test_batch"
        path.write_bytes(pickle.dumps({b"data": Boom(), b"labels": []}))
    elif case == "missing_member":
        path = make_tarball(tmp_path / "other.tar.gz", "something/else", b"x")
    else:
        path = tmp_path / "nothing.npz"
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.load_path(path)


def test_real_subset_loads(shared_data):
    dataset = store.load_path(shared_data)
    assert dataset.count == 1000
    assert np.bincount(dataset.labels, minlength=10).tolist() == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


def test_tarball_is_not_trusted_for_unrelated_members(tmp_path, arrays):
    images, labels = arrays
    path = tmp_path / "mixed.tar"
    with tarfile.open(path, "w") as archive:
        payload = binary_batch_bytes(images, labels)
        info = tarfile.TarInfo(formats.BIN_MEMBER)
        info.size = len(payload)
        import io

        archive.addfile(info, io.BytesIO(payload))
    assert store.load_path(path).count == 50
