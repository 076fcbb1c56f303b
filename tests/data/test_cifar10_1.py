"""CIFAR-10.1 for --private-data: the .npy pair, named and validated; fetched over HTTP and verified by git blob id."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest
from builders import colour_images, colour_model, fast_config, save_npz
from conftest import SHARED

from evaluator.data import cifar10_1, store
from evaluator.data.formats import git_blob_id
from evaluator.errors import DataError
from evaluator.events import BytesDone


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture
def pair_bytes() -> tuple[bytes, bytes]:
    """A pair in the release's form: uint8 (N, 32, 32, 3) images and int32 labels (as v6's are)."""
    images, labels = colour_images(40, correct=40, seed=3)
    return _npy(images), _npy(labels.astype(np.int32))


@pytest.fixture
def release(pair_bytes, monkeypatch) -> cifar10_1.Release:
    """A 'v6' whose git blob ids are those of the bytes the test made (the real files are not here)."""
    made = cifar10_1.Release("v6", git_blob_id(pair_bytes[0]), git_blob_id(pair_bytes[1]))
    monkeypatch.setattr(cifar10_1, "V6", made)
    monkeypatch.setattr(cifar10_1, "RELEASES", (made, cifar10_1.V4))
    return made


@pytest.fixture
def server(tmp_path, pair_bytes):
    """A real HTTP server on loopback serving a folder; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _write_pair(folder: Path, pair: tuple[bytes, bytes], stem: str = "cifar10.1_v6") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}_data.npy").write_bytes(pair[0])
    (folder / f"{stem}_labels.npy").write_bytes(pair[1])
    return folder


def test_the_git_blob_id_is_gits():
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # `git hash-object /dev/null`
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_the_shared_labels_are_v6s_as_released():
    labels = SHARED / "calibration" / "cifar10.1-v6" / "cifar10.1_v6_labels.npy"
    if not labels.is_file():
        pytest.skip(f"{labels} absent: ../shared is only on project machines")
    assert git_blob_id(labels.read_bytes()) == cifar10_1.V6.labels_blob


def test_a_pair_is_named_by_either_file_or_its_folder(tmp_path, pair_bytes):
    folder = _write_pair(tmp_path / "pair", pair_bytes)
    named = [store.load_path(p, tmp_path) for p in
             (folder, folder / "cifar10.1_v6_data.npy", folder / "cifar10.1_v6_labels.npy")]
    assert {d.fingerprint for d in named} == {named[0].fingerprint} and named[0].count == 40
    assert named[0].labels.dtype == np.uint8 and not named[0].official
    assert named[0].note == "a .npy pair, not a recognised CIFAR-10.1 release (git blob ids differ)"


def test_a_recognised_release_says_so(tmp_path, pair_bytes, release):
    dataset = store.load_path(_write_pair(tmp_path / "pair", pair_bytes), tmp_path)
    assert dataset.note == "CIFAR-10.1 v6 as released (modestyachts/CIFAR-10.1 at d9982ab, git blob ids)"


def _refusals(tmp_path, pair_bytes):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "cifar10.1_v6_data.npy").write_bytes(pair_bytes[0])
    yield lone / "cifar10.1_v6_data.npy", "its partner cifar10.1_v6_labels.npy is not beside it"
    (lone / "images.npy").write_bytes(pair_bytes[0])
    yield lone / "images.npy", "a lone .npy array; name CIFAR-10.1's pair by its data file"
    two = _write_pair(_write_pair(tmp_path / "two", pair_bytes), pair_bytes, "cifar10.1_v4")
    yield two, "holds 2 X_data.npy/X_labels.npy pairs (cifar10.1_v4, cifar10.1_v6)"
    pickled = tmp_path / "pickled"
    _write_pair(pickled, pair_bytes)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (pickled / "cifar10.1_v6_labels.npy").write_bytes(buffer.getvalue())
    yield pickled, "(labels): not a readable .npy array (Object arrays cannot be loaded when allow_pickle=False)"
    wrong = _write_pair(tmp_path / "wrong", (_npy(np.zeros((40, 32, 32), np.uint8)), pair_bytes[1]))
    yield wrong, "images have shape (40, 32, 32), expected (N, 32, 32, 3) NHWC"
    short = _write_pair(tmp_path / "short", (pair_bytes[0], _npy(np.zeros(39, np.int32))))
    yield short, "40 images but 39 labels"
    truncated = _write_pair(tmp_path / "truncated", (pair_bytes[0][:-100], pair_bytes[1]))
    yield truncated, "(data): not a readable .npy array"


def test_every_wrong_pair_is_refused_in_one_line_that_says_why(tmp_path, pair_bytes):
    for path, message in _refusals(tmp_path, pair_bytes):
        with pytest.raises(DataError) as raised:
            store.load_path(path, tmp_path)
        assert message in str(raised.value) and "\n" not in str(raised.value), path


def test_fetch_over_http_verifies_the_blob_ids_and_caches_both_files(tmp_path, pair_bytes, release, server):
    folder, url = server
    _write_pair(folder, pair_bytes)
    cache = tmp_path / "cache"
    seen: list[BytesDone] = []
    dataset = store.fetch_cifar10_1(cache, url=url, sink=seen.append)
    cached = cache / cifar10_1.CACHE_FOLDER
    assert sorted(p.name for p in cached.iterdir()) == [release.data_name, release.labels_name]
    assert [p.name for p in cache.iterdir()] == [cifar10_1.CACHE_FOLDER]  # no partial download left
    assert (cached / release.data_name).read_bytes() == pair_bytes[0]
    assert [(e.what, e.done_bytes) for e in seen if e.done_bytes == e.total_bytes] == [
        (release.data_name, len(pair_bytes[0])), (release.labels_name, len(pair_bytes[1]))]  # each file, to its end
    again = store.load_path(Path(cifar10_1.SHORT_NAME), cache)  # the short name reads the cached copy
    assert again.fingerprint == dataset.fingerprint and again.note == release.describe()


def test_a_wrong_blob_id_is_refused_and_nothing_is_cached(tmp_path, pair_bytes, server):
    folder, url = server  # the real v6 ids: these bytes are not the release
    _write_pair(folder, pair_bytes)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as raised:
        store.fetch_cifar10_1(cache, url=url)
    message = str(raised.value)
    assert f"cifar10.1_v6_data.npy has git blob id {git_blob_id(pair_bytes[0])}, not CIFAR-10.1 v6's " \
           f"{cifar10_1.V6.data_blob}" in message and message.endswith("Nothing was cached") and "\n" not in message
    assert list(cache.iterdir()) == []


def test_a_good_data_file_beside_wrong_labels_caches_neither(tmp_path, pair_bytes, release, server):
    folder, url = server
    _write_pair(folder, (pair_bytes[0], _npy(np.zeros(40, np.int32))))
    with pytest.raises(DataError, match=r"cifar10\.1_v6_labels\.npy has git blob id"):
        store.fetch_cifar10_1(tmp_path / "cache", url=url)
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_short_name_without_a_cached_copy_says_how_to_fetch_it(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR-10.1 v6 is not cached in .*; run `edl data fetch --cifar10.1`"):
        store.load_path(Path("cifar10.1"), tmp_path)


def test_a_tampered_cached_copy_is_refused(tmp_path, pair_bytes, release):
    store.import_cifar10_1(_write_pair(tmp_path / "pair", pair_bytes), tmp_path / "cache")
    data = tmp_path / "cache" / cifar10_1.CACHE_FOLDER / release.data_name
    data.write_bytes(data.read_bytes()[:-1] + b"\x01")
    with pytest.raises(DataError, match=r"no longer match v6's git blob ids; run `edl data fetch --cifar10\.1 --fo"):
        store.load_path(Path("cifar10.1"), tmp_path / "cache")


def test_the_cli_fetches_from_the_mirror_shows_it_and_scores_with_it(cli, tmp_path, pair_bytes, release, server,
                                                                      monkeypatch):
    folder, url = server
    _write_pair(folder, pair_bytes)
    monkeypatch.setenv(cifar10_1.URL_ENV, url)
    info = cli("data", "info")
    assert info.exit_code == 0 and f"cifar10.1    not cached; `edl data fetch --cifar10.1` would download it from " \
        f"{url.rstrip('/')}" in info.stdout
    fetched = cli("data", "fetch", "--cifar10.1")
    assert fetched.exit_code == 0 and "40 images, CIFAR-10.1 v6 as released" in fetched.stdout
    assert "already cached" in cli("data", "fetch", "--cifar10.1").stdout
    info = cli("data", "info")
    assert "cifar10.1    cached: 40 images, CIFAR-10.1 v6 as released" in info.stdout
    shown = cli("data", "info", "cifar10.1")
    assert shown.exit_code == 0 and "note         CIFAR-10.1 v6 as released" in shown.stdout

    from evaluator.scoring.pipeline import score

    images, labels = colour_images(200, correct=190)
    config = fast_config(save_npz(tmp_path / "d.npz", images, labels), passes=1)
    config = dataclasses.replace(config, audit=dataclasses.replace(config.audit, private_data=Path("cifar10.1")))
    result = score(colour_model(tmp_path / "m.onnx"), config, tmp_path / "o")
    private = result.audit.private
    assert private is not None and private.images == 40 and private.accuracy == 1.0 and result.audit.verdict == "pass"
    assert private.fingerprint == store.load_path(Path("cifar10.1")).fingerprint


def test_a_wrong_copy_given_to_the_cli_exits_with_one_line(cli, tmp_path, pair_bytes):
    run = cli("data", "fetch", "--cifar10.1", "--from", _write_pair(tmp_path / "pair", pair_bytes))
    assert run.exit_code == 1 and "has git blob id" in run.stderr and "Nothing was cached" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (store.default_cache_dir() / cifar10_1.CACHE_FOLDER).exists()
