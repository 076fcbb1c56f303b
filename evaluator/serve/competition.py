"""Making a competition folder, and opening its database with the competition's quotas."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import IO

from evaluator.batch.outroot import measured_differences
from evaluator.config import comparable_settings
from evaluator.data.store import resolve
from evaluator.errors import UsageError
from evaluator.fileio import write_owner_only
from evaluator.report.signing import PRIVATE_NAME, init_keys
from evaluator.scoring.records import data_record
from evaluator.serve.settings import SETTINGS_NAME, Competition, CompetitionSettings, load_competition, write_settings
from evaluator.serve.store import Limits, Store


def open_store(competition: Competition) -> Store:
    settings = competition.settings
    return Store(competition.db, Limits(settings.per_day, settings.in_total, settings.max_queued))


def init_competition(root: Path, settings: CompetitionSettings) -> tuple[Competition, str]:
    """A new competition in ``root``: its settings file, folders, database, signing key and audit secret (both
    owner-only, made only where the settings point inside the folder); returns it and the organiser's token,
    the one time that token exists in clear."""
    root = Path(root)
    if (root / SETTINGS_NAME).exists():
        raise UsageError(f"{root} already holds a competition ({SETTINGS_NAME}); edit that file, or choose another "
                         "folder")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root}: not a folder; choose a new folder for the competition")
    root.mkdir(parents=True, exist_ok=True)
    key_file = settings.signing_key_file
    if key_file is not None and not key_file.is_absolute() and not (root / key_file).exists():
        if key_file.name != PRIVATE_NAME:
            raise UsageError(f"--signing-key-file {key_file}: edl keys init names the key {PRIVATE_NAME}; use "
                             f"{key_file.parent / PRIVATE_NAME} or make the key first")
        init_keys(root / key_file.parent)
    secret_file = settings.audit_secret_file
    if secret_file is not None and not secret_file.is_absolute() and not (root / secret_file).exists():
        (root / secret_file).parent.mkdir(parents=True, exist_ok=True)
        write_owner_only(root / secret_file, (secrets.token_urlsafe(32) + "\n").encode())
    write_settings(root, settings)
    competition = load_competition(root)
    for folder in competition.folders():
        folder.mkdir(exist_ok=True)
    store = open_store(competition)
    try:
        return competition, store.set_organiser_token()
    finally:
        store.close()


def _toml_setting(key: str) -> str:
    """A comparable setting's dotted path as it reads in competition.toml: ``runtime.provider`` -> ``[score.runtime]
    provider``; the test set is ``[score] data``."""
    section, _, name = key.rpartition(".")
    return f"[score{'.' + section if section else ''}] {name}"


def refuse_incomparable_results(competition: Competition, data_fingerprint: str | None = None) -> None:
    """The service does not start (edl serve, its worker, edl competition final) when the scoring settings in
    competition.toml are not comparable with the results already measured in the results folder: every later
    submission would fail. UsageError naming each differing setting and the fix, in the service's own words."""
    config = competition.settings.score
    if data_fingerprint is None:
        if measured_differences(competition.results, config, "")[0] == 0:
            return  # nothing measured yet: the test set need not be there (nor read) to start
        data_fingerprint = data_record(resolve(config.data)).fingerprint
    count, differ = measured_differences(competition.results, config, data_fingerprint)
    if not differ:
        return
    now = {**comparable_settings(config), "data": data_fingerprint}
    listing = "; ".join(f"{_toml_setting(key)} = {' or '.join(sorted(values))} there, {json.dumps(now.get(key))} now"
                        for key, values in differ.items())
    restore = ", ".join(f"{_toml_setting(key)} = {sorted(values)[0]}" for key, values in differ.items())
    raise UsageError(f"{competition.results} holds {count} measured result(s) under other scoring settings than "
                     f"{competition.settings_file} ({listing}): restore {restore} in {competition.settings_file}, or "
                     "start a new competition folder: measured results are never mixed or replaced")


def hold_lock(competition: Competition, role: str) -> IO[str]:
    """One ``edl serve`` (``role`` "serve") and one worker ("worker") per competition folder: an flock on
    DIR/.<role>.lock, held while the process lives (the caller keeps the handle); a second is refused in one line."""
    handle = (competition.root / f".{role}.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UsageError(f"{competition.root} is already served: its {role} runs as {holder}; stop that one first "
                         "(two on one competition folder would score and record the same queue twice)") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle
