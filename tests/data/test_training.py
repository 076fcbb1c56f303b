"""The audit's training images: read from every data form edl accepts, or absent with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from builders import binary_batch_bytes, make_archive, python_batch_bytes, save_npz

from evaluator.data import formats, store
from evaluator.errors import DataError


def _batches(count: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8),
             rng.integers(0, 10, size=20).astype(np.uint8)) for _ in range(count)]


def _official_layout(tmp_path, binary: bool):
    """Both tarball and extracted folder of one official version, with a test batch and five training batches."""
    test = _batches(1)[0]
    encode = binary_batch_bytes if binary else python_batch_bytes
    test_member = formats.BIN_MEMBER if binary else formats.PY_MEMBER
    train_members = formats.BIN_TRAIN_MEMBERS if binary else formats.PY_TRAIN_MEMBERS
    members = {test_member: encode(*test)} | {m: encode(*b) for m, b in zip(train_members, _batches(), strict=True)}
    tarball = make_archive(tmp_path / ("bin.tar.gz" if binary else "py.tar.gz"), members)
    for member, payload in members.items():
        (tmp_path / "x" / member).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "x" / member).write_bytes(payload)
    return tarball, tmp_path / "x" / test_member


@pytest.mark.parametrize("binary", [False, True])
def test_training_images_come_from_the_tarball_the_folder_or_a_lone_test_batch(tmp_path, binary):
    tarball, test_file = _official_layout(tmp_path, binary)
    expected = np.concatenate([images for images, _ in _batches()])
    for given in (tarball, test_file.parent, test_file.parent.parent, test_file):
        training, why = store.load_training(None, given, tmp_path / "cache")
        assert why == "" and training is not None and training.count == 100, given
        assert np.array_equal(training.images, expected) and training.note == "training images"


def test_an_npz_test_set_has_no_training_part_unless_train_data_is_given(tmp_path):
    images, labels = _batches(1)[0]
    test = save_npz(tmp_path / "test.npz", images, labels)
    training, why = store.load_training(None, test, tmp_path / "cache")
    assert training is None and "holds no training images" in why and "--train-data" in why
    given = save_npz(tmp_path / "train.npz", *_batches(2)[1])
    training, why = store.load_training(given, test, tmp_path / "cache")
    assert training is not None and training.count == 20 and why == ""


def test_a_train_data_path_without_training_batches_is_refused_in_one_line(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        store.load_training(tmp_path / "absent.npz", None, tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no data_batch_1\.\.5"):
        store.load_training(tmp_path / "empty", None, tmp_path / "cache")


def test_the_cache_keeps_the_training_images_of_the_archive_it_caches(tmp_path):
    tarball, _ = _official_layout(tmp_path, binary=False)
    cache = tmp_path / "cache"
    training, why = store.load_training(None, None, cache)
    assert training is None and "edl data fetch --force" in why  # cached before edl kept them
    store.fetch(cache, url=tarball.as_uri(), expected_md5=formats.md5_file(tarball), expected_member_md5=None)
    training, why = store.load_training(None, None, cache)
    assert training is not None and training.count == 100 and why == ""
