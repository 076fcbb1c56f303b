"""Where the command line writes: results on stdout, everything else (progress, warnings, errors) on stderr."""

from __future__ import annotations

import json

from rich.console import Console

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Interrupted(Exception):  # noqa: N818 - named for what happened, as KeyboardInterrupt is
    """Ctrl-C, after the command put its output back as it found it; the message says what was kept."""


def say(text: str) -> None:
    """A plain line on stdout (no markup: paths and names print as they are)."""
    out.print(text, markup=False, highlight=False)


def note(text: str) -> None:
    """A plain line on stderr."""
    err.print(text, markup=False, highlight=False)


def warn(text: str) -> None:
    note(f"warning: {text}")


def error(text: str) -> None:
    note(f"error: {text}")


def print_json(document: object) -> None:
    """A JSON document alone on stdout (``--json``)."""
    print(json.dumps(document, indent=2))


def fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "unavailable" if value is None else f"{value:,.{digits}f}{unit}"
