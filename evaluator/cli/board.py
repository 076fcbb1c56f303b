"""``edl leaderboard``, ``edl verify`` and ``edl schema``: what is done with results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from evaluator.cli.console import note, out, print_json, say, warn
from evaluator.cli.score import JsonOption
from evaluator.config import DEFAULT_THRESHOLDS, parse_thresholds, show_thresholds
from evaluator.errors import EdlError


def leaderboard(
    results_dir: Annotated[Path, typer.Argument(help="The results root written by score-dir",
                                                metavar="RESULTS")] = Path("results"),
    thresholds: Annotated[str, typer.Option(help="Accuracy categories in percent", metavar="LIST")
                          ] = show_thresholds(DEFAULT_THRESHOLDS),
    fmt: Annotated[str, typer.Option("--format", help="table | csv | md | json | html", metavar="FORMAT")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout", metavar="FILE")] = None,
    allow_mixed: Annotated[bool, typer.Option(help="Rank results measured differently together anyway",
                                              metavar="")] = False,
) -> None:
    """Rank results by energy within accuracy categories (each competes in the highest it reaches)."""
    from evaluator.fileio import atomic_write_bytes
    from evaluator.report import render
    from evaluator.report.leaderboard import load_results, rank

    if fmt not in render.FORMATS:
        raise EdlError(f"--format {fmt!r}: choose one of {', '.join(render.FORMATS)}")
    if fmt == "table" and output is not None:
        raise EdlError("--format table prints to the terminal; choose csv, md, json or html for --output")
    board = rank(load_results(results_dir), parse_thresholds(thresholds), allow_mixed)
    for difference in board.mixed:  # every format also carries them in its own way
        warn(f"ranked despite: {difference}")
    if fmt == "table":
        wide = out if out.is_terminal else Console(width=160)  # piped: keep whole rows for grep and logs
        wide.print(render.render_table(board))
        return
    text = render.render(board, fmt)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            atomic_write_bytes(output, text.encode())
        except OSError as exc:
            blocker = next((folder for folder in output.parents if folder.exists() and not folder.is_dir()), None)
            reason = f"{blocker} is a file, not a folder" if blocker else exc.strerror or str(exc)
            raise EdlError(f"cannot write {output} ({reason}); give --output a file in a folder you can write to"
                           ) from None
        note(f"wrote {output}")


def verify(
    result: Annotated[Path, typer.Argument(help="A result.json written by edl score or score-dir, or its folder",
                                           metavar="RESULT")],
    model: Annotated[Path | None, typer.Option(help="The submission, if not at the recorded path",
                                               metavar="PATH")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-check a result: checksums, internal consistency, energy recomputed from its samples."""
    from dataclasses import asdict

    from evaluator.scoring.verify import VerifyOptions, verify_result

    checks = verify_result(result, VerifyOptions(model=model))
    failed = [c for c in checks if c.outcome == "fail"]
    if as_json:
        print_json({"result": str(result), "ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        table = Table(title=f"verify {result}")
        for column in ("check", "outcome", "detail"):
            table.add_column(column)
        for c in checks:
            style = {"pass": "green", "fail": "bold red", "skip": "yellow"}[c.outcome]
            table.add_row(c.name, f"[{style}]{c.outcome}[/{style}]", c.detail)
        out.print(table)
        say(f"FAILED: {len(failed)} check(s)" if failed else "all checks hold")
    raise typer.Exit(2 if failed else 0)


def schema() -> None:
    """Print the JSON Schema of the result document."""
    from evaluator.report.result import result_schema

    print(json.dumps(result_schema(), indent=2))

