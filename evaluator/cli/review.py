"""``edl review``: the organiser's signed decision on a result (clear it, or disqualify it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evaluator.cli.console import error, say
from evaluator.cli.options import config_options
from evaluator.config import Secrets


@config_options("review")
def review(
    result_dir: Annotated[Path, typer.Argument(help="The result's folder (results/NAME)", metavar="RESULT_DIR")],
    secrets: Secrets,
    clear: Annotated[bool, typer.Option("--clear", help="Rank it despite the audit, with --why as its note",
                                        metavar="")] = False,
    disqualify: Annotated[bool, typer.Option("--disqualify", help="List it apart, with --why as the reason",
                                             metavar="")] = False,
    why: Annotated[str, typer.Option("--why", help="The reason, shown on every board", metavar="TEXT")] = "",
) -> None:
    """Record a decision on a result, signed with the organiser's key and bound to the result's sha256."""
    from evaluator.report.reader import read_result
    from evaluator.report.review import read_decisions, record
    from evaluator.report.signing import load_private

    usage = ("give one of --clear or --disqualify" if clear == disqualify else
             "--signing-key (or EDL_SIGNING_KEY) is needed: the organiser's private key signs the decision"
             if secrets.signing_key is None else "")
    if usage:  # a usage error: exit 2
        error(usage)
        raise typer.Exit(2)
    assert secrets.signing_key is not None
    key = load_private(secrets.signing_key)
    result = read_result(result_dir)
    path = record(result_dir, result, "clear" if clear else "disqualify", why, key)
    say(f"recorded {path}")
    for standing in read_decisions(result_dir, result, key.public_key()):
        say(f"  {standing.line()}")
