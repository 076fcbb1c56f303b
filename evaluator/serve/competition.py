"""Making a competition folder, and opening its database with the competition's quotas."""

from __future__ import annotations

import secrets
from pathlib import Path

from evaluator.errors import UsageError
from evaluator.fileio import write_owner_only
from evaluator.report.signing import PRIVATE_NAME, init_keys
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
