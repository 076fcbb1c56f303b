"""Where the test set comes from: the official download verified by md5, the atomic cache, and a given path."""

from __future__ import annotations

import numpy as np
import pytest
from builders import make_tarball, python_batch_bytes, save_npz

from evaluator.data import formats, store
from evaluator.errors import DataError
from evaluator.events import BytesDone, Event


def test_fetch_verifies_md5_and_caches_atomically(tmp_path, arrays):
    images, labels = arrays
    raw = python_batch_bytes(images, labels)
    tarball = make_tarball(tmp_path / "cifar-10-python.tar.gz", formats.PY_MEMBER, raw)
    cache = tmp_path / "cache"
    seen: list[Event] = []
    dataset = store.fetch(cache, url=tarball.as_uri(), expected_md5=formats.md5_file(tarball),
                         expected_member_md5=formats.md5_bytes(raw), sink=seen.append)
    size = tarball.stat().st_size
    assert dataset.official and seen[-1] == BytesDone("cifar-10-python.tar.gz", size, size)
    assert sorted(p.name for p in cache.iterdir()) == [store.CACHE_META, store.CACHE_NPZ]
    cached = store.load_cached(cache)
    assert cached is not None and cached.official and cached.fingerprint == dataset.fingerprint
    # The same pixels handed in another format are recognised as the official set.
    assert store.load_path(save_npz(tmp_path / "copy.npz", images, labels), cache).official


def test_fetch_md5_mismatch_leaves_nothing_in_the_cache(tmp_path, arrays):
    images, labels = arrays
    tarball = make_tarball(tmp_path / "cifar-10-python.tar.gz", formats.PY_MEMBER, python_batch_bytes(images, labels))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="does not match the official"):
        store.fetch(cache, url=tarball.as_uri())
    assert list(cache.iterdir()) == []


def test_offline_fetch_says_how_to_pass_the_data(tmp_path):
    with pytest.raises(DataError, match=r"cache it with `edl data fetch --from PATH` \(or give its path as the test"):
        store.fetch(tmp_path / "cache", url=(tmp_path / "nowhere.tar.gz").as_uri())


def test_resolve_without_cache_or_download_explains(tmp_path):
    with pytest.raises(DataError, match="edl data fetch"):
        store.resolve(None, cache_dir=tmp_path, allow_download=False)


def _data_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    yield lambda: store.load_path(tmp_path / "absent.npz", tmp_path)
    yield lambda: store.load_path(tmp_path / "empty", tmp_path)
    yield lambda: store.fetch(tmp_path / "cache", url=(tmp_path / "nowhere.tar.gz").as_uri())
    yield lambda: store.resolve(None, cache_dir=tmp_path / "cache", allow_download=False)


def test_messages_name_no_flag_that_only_some_commands_have(tmp_path):
    """The store serves `edl score --data`, `edl data fetch --from` and `edl data info PATH` alike."""
    messages = []
    for call in _data_errors(tmp_path):
        with pytest.raises(DataError) as raised:
            call()
        messages.append(str(raised.value))
    assert len(messages) == 4 and not [m for m in messages if "--data" in m], messages
    assert messages[0].endswith("absent.npz: no such file or folder; pass a CIFAR-10 archive, folder or .npz")


def test_tampered_cache_is_detected(tmp_path, arrays):
    images, labels = arrays
    store.store_cache(images, labels, "test", True, tmp_path)
    tampered = images.copy()
    tampered[0, 0, 0, 0] ^= 0xFF
    np.savez(tmp_path / store.CACHE_NPZ, x=tampered, y=labels)
    with pytest.raises(DataError, match="fingerprint"):
        store.load_cached(tmp_path)


