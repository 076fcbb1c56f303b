"""``edl data fetch`` and ``edl data info``: the pinned CIFAR-10 test set, and CIFAR-10.1 for --private-data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evaluator.cli.console import print_json, say
from evaluator.cli.options import JsonOption
from evaluator.cli.progress import progress_display

if TYPE_CHECKING:
    from evaluator.data.dataset import Dataset


def data_fetch(
    source: Annotated[Path | None, typer.Option("--from", help="A local copy of cifar-10-python.tar.gz "
                                                "(with --cifar10.1: the pair's data file or folder)",
                                                metavar="PATH")] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even when cached", metavar="")] = False,
    cifar10_1: Annotated[bool, typer.Option("--cifar10.1", help="Fetch CIFAR-10.1 v6 instead (images drawn anew, "
                                            "for --private-data cifar10.1), verified by git blob id; mirror: "
                                            "EDL_CIFAR10_1_URL", metavar="")] = False,
) -> None:
    """Download (or import) the official test set, verify its md5s and cache it (or CIFAR-10.1 v6)."""
    from evaluator.data import store

    cache = store.default_cache_dir()
    if cifar10_1:
        _fetch_cifar10_1(source, force)
        return
    if not force and source is None and (cached := store.load_cached(cache)) is not None:
        say(f"already cached in {cache}: {cached.count} images, fingerprint {cached.fingerprint}")
        return
    if source is not None:
        dataset = store.import_archive(source, cache)
    else:
        with progress_display() as display:
            dataset = store.fetch(cache, sink=display)
    say(f"cached in {cache}: {dataset.count} images, official, fingerprint {dataset.fingerprint}")


def _fetch_cifar10_1(source: Path | None, force: bool) -> None:
    from evaluator.data import store

    cache = store.default_cache_dir()
    if not force and source is None and (cached := _cached_cifar10_1()) is not None:
        say(f"already cached in {cache}: {cached.count} images, {cached.note}, fingerprint {cached.fingerprint}")
        return
    if source is not None:
        dataset = store.import_cifar10_1(source, cache)
    else:
        with progress_display() as display:
            dataset = store.fetch_cifar10_1(cache, sink=display)
    say(f"cached in {cache}: {dataset.count} images, {dataset.note}, fingerprint {dataset.fingerprint}; "
        "use it with --private-data cifar10.1")


def _cached_cifar10_1() -> Dataset | None:
    """The cached CIFAR-10.1 v6, or None when it is not cached (a corrupt copy still fails loudly)."""
    from evaluator.data import store
    from evaluator.data.cifar10_1 import CACHE_FOLDER, V6

    if not (store.default_cache_dir() / CACHE_FOLDER / V6.data_name).is_file():
        return None
    return store.load_cifar10_1()


def _cifar10_1_info() -> dict[str, object]:
    """What `--private-data cifar10.1` would read: the cached copy, or where `edl data fetch --cifar10.1` gets it."""
    from evaluator.data import store

    cached = _cached_cifar10_1()
    if cached is None:
        return {"cached": False, "download": store.cifar10_1_url()}
    return {"cached": True, "images": cached.count, "fingerprint": cached.fingerprint, "source": cached.source,
            "note": cached.note}


def data_info(
    path: Annotated[Path | None, typer.Argument(help="A test set [default: what edl score would use]",
                                                metavar="PATH")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show what would be used: source, count, fingerprint, official or not."""
    from evaluator.data import store

    dataset = store.load_path(path) if path is not None else store.load_cached()
    if dataset is None:
        _not_cached(as_json)
        return
    info: dict[str, object] = {"fingerprint": dataset.fingerprint, "images": dataset.count,
                               "official": dataset.official, "source": dataset.source, "note": dataset.note}
    if as_json:
        print_json(info | ({} if path is not None else {"cifar10_1": _cifar10_1_info()}))
        return
    for key, value in info.items():
        if value != "":
            say(f"{key:<12} {value}")
    if path is None:
        _say_cifar10_1()


def _say_cifar10_1() -> None:
    info = _cifar10_1_info()
    if info["cached"]:
        say(f"{'cifar10.1':<12} cached: {info['images']} images, {info['note']}, fingerprint {info['fingerprint']} "
            "(--private-data cifar10.1)")
    else:
        say(f"{'cifar10.1':<12} not cached; `edl data fetch --cifar10.1` would download it from {info['download']}")


def _not_cached(as_json: bool) -> None:
    """What the default would do with an empty cache: download the official archive into it."""
    from evaluator.data import store

    cache = store.default_cache_dir()
    url = store.download_url()
    if as_json:
        print_json({"fingerprint": None, "images": None, "official": None, "source": None, "cached": False,
                    "cache": str(cache), "download": url, "cifar10_1": _cifar10_1_info()})
        return
    say(f"{'source':<12} not cached; edl score would download {url} into {cache} (edl data fetch)")
    _say_cifar10_1()
