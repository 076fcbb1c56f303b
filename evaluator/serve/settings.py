"""A competition's settings, declared once: the settings file, ``edl competition init``'s options and the web pages
all read these fields (as ``evaluator.config`` does for scoring).

The file is ``COMPETITION/competition.toml``: human-editable, every setting with its help as a comment, written by
``edl competition init`` and read strictly (an unknown key or a wrong type is refused with the key named). The
organiser's secrets are never in it: only where they come from (an environment variable, else a file in the
competition folder, readable by its owner only); no page or API answer may show those paths or values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from evaluator.config import (
    DEFAULT_THRESHOLDS,
    SCORE_DIR,
    BatchConfig,
    Options,
    ScoreConfig,
    Secrets,
    build,
    option,
    parse_thresholds,
    show_thresholds,
)
from evaluator.errors import ConfigError, UsageError
from evaluator.fileio import atomic_write_bytes
from evaluator.report.signing import PRIVATE_NAME
from evaluator.typedjson import DOC, TypedJsonError, from_json, to_json

INIT = "competition init"  # the command that offers the competition's own settings as options
SETTINGS_NAME = "competition.toml"
DB_NAME = "competition.sqlite3"
MiB = 1 << 20


def parse_utc(text: str) -> dt.datetime:
    """``2027-03-01T23:59Z`` (or with an explicit +00:00) as an aware UTC datetime; ConfigError otherwise."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--deadline {text!r}: give the deadline in UTC, e.g. 2027-03-01T23:59Z") from None
    if moment.tzinfo is None or moment.utcoffset() != dt.timedelta(0):
        raise ConfigError(f"--deadline {text!r}: give the deadline in UTC with its Z, e.g. 2027-03-01T23:59Z")
    return moment.astimezone(dt.timezone.utc)


def _score_defaults() -> ScoreConfig:
    return build(ScoreConfig, {}, SCORE_DIR)  # score-dir's defaults: three interleaved runs each


SCORE_DOC = "How each submission is scored: edl score-dir's options (score-dir's defaults)"
BATCH_DOC = "How the scoring children run: edl score-dir's batch options"


@dataclass(frozen=True)
class CompetitionSettings(Options):
    """Everything that makes this competition what it is; scoring settings as ``edl score-dir`` takes them."""

    name: str = option("edl competition", "The competition's name, shown on every page", commands=(INIT,))
    deadline: str = option("", "Last moment to upload, in UTC (2027-03-01T23:59Z): uploads are refused after it",
                           commands=(INIT,))
    thresholds: tuple[float, ...] = option(DEFAULT_THRESHOLDS, "Accuracy categories (fractions in the file, "
                                           "percentages on the command line)", commands=(INIT,),
                                           parse=parse_thresholds, show=show_thresholds)
    per_day: int = option(5, "Submissions a team may have queued per UTC day (invalid, cancelled and the "
                          "organiser's failures never count)", minimum=1, commands=(INIT,))
    in_total: int = option(50, "Submissions a team may have queued in all", minimum=1, commands=(INIT,))
    max_queued: int = option(2, "Submissions of one team waiting or scoring at once", minimum=1, commands=(INIT,))
    upload_max_bytes: int = option(256 * MiB, "Largest .onnx upload (bytes), enforced while it streams",
                                   minimum=1, commands=(INIT,))
    description_max_pages: int = option(2, "Pages of the PDF describing a team's method", minimum=1,
                                        commands=(INIT,))
    description_max_bytes: int = option(20 * MiB, "Largest description PDF (bytes)", minimum=1, commands=(INIT,))
    final_repeat: int = option(5, "Measured runs of each team's final submission in the final scoring",
                               minimum=1, commands=(INIT,))
    lease_s: float = option(120.0, "A scoring worker's claim lasts this long unless renewed (s): a worker that "
                            "dies gives its submission back after it", above=0, commands=(INIT,))
    signing_key_env: str = option("EDL_SIGNING_KEY", "Environment variable naming the signing key's file "
                                  "(it wins over signing_key_file)", commands=(INIT,))
    signing_key_file: Path | None = option(Path("keys") / PRIVATE_NAME, "The organiser's private key, relative to "
                                           "the competition folder (init makes one)", commands=(INIT,))
    audit_secret_env: str = option("EDL_AUDIT_SECRET", "Environment variable holding the audit secret (it wins "
                                   "over audit_secret_file)", commands=(INIT,))
    audit_secret_file: Path | None = option(Path("keys/audit_secret"), "File holding the audit secret, relative "
                                            "to the competition folder (init makes one)", commands=(INIT,))
    allow_unchecked_unseen: bool = option(False, "Rank on the boards results not checked on unseen images (no "
                                          "score.private_data): as edl leaderboard --allow-unchecked-unseen",
                                          commands=(INIT,))
    score: ScoreConfig = field(default_factory=_score_defaults, metadata={DOC: SCORE_DOC})
    batch: BatchConfig = field(default_factory=BatchConfig, metadata={DOC: BATCH_DOC})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.deadline_utc()  # refused now, not at the deadline
        if not self.name.strip():
            raise ConfigError("--name: give the competition a name")
        if self.batch.force:  # each scoring would move every other team's result into the archive
            raise ConfigError("batch.force = true: a competition never scores everything again; set it to false")
        if self.batch.rematch:
            raise ConfigError("batch.rematch: edl competition final rematches the ties itself; leave it []")

    def deadline_utc(self) -> dt.datetime:
        return parse_utc(self.deadline)


@dataclass(frozen=True)
class Competition:
    """A competition folder: its settings and where each of its parts lives."""

    root: Path
    settings: CompetitionSettings

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_NAME

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"  # each accepted file under its sha256

    @property
    def results(self) -> Path:
        return self.root / "results"  # a score-dir results root: `edl leaderboard` reads it unchanged

    @property
    def final_results(self) -> Path:
        return self.root / "final"  # the final scoring's results root

    @property
    def published(self) -> Path:
        return self.root / "published"  # the final board (board.json signed, board.html) once published

    @property
    def descriptions(self) -> Path:
        return self.root / "descriptions"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def work(self) -> Path:
        return self.root / "work"  # the one-model folders the worker hands to score-dir (kept: verify finds them)

    def folders(self) -> tuple[Path, ...]:
        return self.uploads, self.results, self.descriptions, self.logs, self.work

    def secrets(self) -> Secrets:
        """The organiser's secrets, from the environment or the competition's files; never shown anywhere."""
        settings = self.settings
        key = os.environ.get(settings.signing_key_env) or settings.signing_key_file
        key_path = None if key is None else self.root / Path(key)
        if key_path is not None and not key_path.is_file():
            raise UsageError(f"signing key {settings.signing_key_env or 'file'}: no such file; run edl keys init "
                             f"or fix signing_key_file in {SETTINGS_NAME}")
        secret = os.environ.get(settings.audit_secret_env)
        if not secret and settings.audit_secret_file is not None:
            secret_path = self.root / settings.audit_secret_file
            if not secret_path.is_file():
                raise UsageError(f"audit_secret_file in {SETTINGS_NAME}: no such file; set "
                                 f"{settings.audit_secret_env} or fix the file's path")
            secret = secret_path.read_text().strip()
        return Secrets(audit_secret=secret or None, signing_key=key_path)


# --- the settings file ------------------------------------------------------------------------------------


def _parse_settings(text: str) -> dict[str, Any]:
    """The TOML subset ``settings_text`` writes: ``[table.sub]`` headers, ``# comments``, and ``key = value`` with the
    value spelled as JSON spells it (double-quoted strings, true/false, numbers, [lists]). Python 3.10 has no TOML
    reader, and an organiser's edit in another TOML spelling is refused with its line instead of guessed."""
    document: dict[str, Any] = {}
    table = document
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            table = document
            for part in line[1:-1].strip().split("."):
                table = table.setdefault(part.strip(), {})
            continue
        key, equals, value = line.partition("=")
        try:
            if not equals or not key.strip().isidentifier():
                raise ValueError("not key = value")
            table[key.strip()] = json.loads(value)
        except ValueError:
            raise UsageError(f"{SETTINGS_NAME} line {number}: {line[:60]!r}: write key = value, the value as edl "
                             "wrote it (\"text\", true/false, numbers, [lists]); fix the file") from None
    return document


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(to_json(value))  # strings, paths and lists: JSON's spelling is TOML's too


def _comment(text: str) -> list[str]:
    return [f"# {line.strip()}" for line in text.strip().splitlines() if line.strip()]


def _toml_table(cls: type, values: Any, header: str, lines: list[str], about: str = "") -> None:
    hints, nested = get_type_hints(cls), []
    if header:
        lines += ["", *_comment(about or cls.__doc__ or ""), f"[{header}]"]
    for spec in dataclasses.fields(cls):
        value = getattr(values, spec.name)
        if dataclasses.is_dataclass(hints[spec.name]):
            about = str(spec.metadata.get(DOC, ""))
            nested.append((hints[spec.name], value, f"{header}.{spec.name}".strip("."), about))
            continue
        lines += _comment(str(spec.metadata.get(DOC, "")))
        lines.append(f"# {spec.name} = (unset)" if value is None else f"{spec.name} = {_toml_value(value)}")
    for kind, group, name, about in nested:
        _toml_table(kind, group, name, lines, about)


def settings_text(settings: CompetitionSettings) -> str:
    """The settings file's text: every setting with its help; an unset one as a comment."""
    lines = [f"# {CompetitionSettings.__doc__}", "# Edit, then restart edl serve. Secrets never go in this file."]
    _toml_table(CompetitionSettings, settings, "", lines)
    return "\n".join(lines) + "\n"


def write_settings(root: Path, settings: CompetitionSettings) -> Path:
    path = root / SETTINGS_NAME
    atomic_write_bytes(path, settings_text(settings).encode())
    return path


def read_settings(path: Path) -> CompetitionSettings:
    """The settings file, read strictly; a usage error naming the key and the fix otherwise."""
    try:
        document = _parse_settings(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path.parent}: no {SETTINGS_NAME}; run edl competition init {path.parent}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read ({exc}); fix the file") from None
    try:
        return from_json(CompetitionSettings, document, str(path))  # the file named once, by its path
    except TypedJsonError as exc:
        raise UsageError(f"{exc}; fix the file") from None
    except ConfigError as exc:
        raise UsageError(f"{path}: {exc} (the setting of that name in the file)") from None


def load_competition(root: Path) -> Competition:
    """The competition in folder ``root`` (its settings read and checked)."""
    root = Path(root)
    return Competition(root, read_settings(root / SETTINGS_NAME))
