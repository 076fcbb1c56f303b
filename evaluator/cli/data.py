"""``edl data fetch`` and ``edl data info``: the pinned CIFAR-10 test set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evaluator.cli.console import print_json, say
from evaluator.cli.options import JsonOption
from evaluator.cli.progress import progress_display


def data_fetch(
    source: Annotated[Path | None, typer.Option("--from", help="A local copy of cifar-10-python.tar.gz",
                                                metavar="PATH")] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even when cached", metavar="")] = False,
) -> None:
    """Download (or import) the official test set, verify its md5s and cache it."""
    from evaluator.data import store

    cache = store.default_cache_dir()
    if not force and source is None and (cached := store.load_cached(cache)) is not None:
        say(f"already cached in {cache}: {cached.count} images, fingerprint {cached.fingerprint}")
        return
    if source is not None:
        dataset = store.import_archive(source, cache)
    else:
        with progress_display() as progress:
            dataset = store.fetch(cache, progress=progress.download)
    say(f"cached in {cache}: {dataset.count} images, official, fingerprint {dataset.fingerprint}")


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
    info = {"fingerprint": dataset.fingerprint, "images": dataset.count, "official": dataset.official,
            "source": dataset.source, "note": dataset.note}
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        if value != "":
            say(f"{key:<12} {value}")


def _not_cached(as_json: bool) -> None:
    """What the default would do with an empty cache: download the official archive into it."""
    from evaluator.data import store

    cache = store.default_cache_dir()
    url = store.download_url()
    if as_json:
        print_json({"fingerprint": None, "images": None, "official": None, "source": None, "cached": False,
                    "cache": str(cache), "download": url})
        return
    say(f"{'source':<12} not cached; edl score would download {url} into {cache} (edl data fetch)")
