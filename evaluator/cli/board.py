"""``edl leaderboard``, ``edl verify`` and ``edl schema``: what is done with results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from evaluator.cli.arguments import expect_result, unignored_in_git
from evaluator.cli.console import error, note, out, print_json, say, warn
from evaluator.cli.options import JsonOption, config_options
from evaluator.config import DEFAULT_THRESHOLDS, Secrets, parse_thresholds, show_thresholds
from evaluator.errors import ConfigError, EdlError

if TYPE_CHECKING:  # the verifier loads onnx, numpy and cryptography: only `edl verify` pays for it
    from evaluator.scoring.verify import Check


def leaderboard(
    results_dir: Annotated[Path, typer.Argument(help="The results root written by score-dir",
                                                metavar="RESULTS")] = Path("results"),
    thresholds: Annotated[str, typer.Option(help="Accuracy categories in percent", metavar="LIST")
                          ] = show_thresholds(DEFAULT_THRESHOLDS),
    fmt: Annotated[str, typer.Option("--format", help="table | csv | md | json | html", metavar="FORMAT")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout", metavar="FILE")] = None,
    by: Annotated[str, typer.Option("--by", help="gpu: one board per GPU model", metavar="gpu|all")] = "all",
    public_key: Annotated[Path | None, typer.Option(help="Rank only results signed by the matching private key; "
                                                    "list the rest apart", metavar="PUB")] = None,
    allow_mixed: Annotated[bool, typer.Option(help="Rank results measured differently together anyway",
                                              metavar="")] = False,
    allow_unaudited: Annotated[bool, typer.Option(help="Rank results without a generalization audit (older "
                                                  "results, --audit-copies 0)", metavar="")] = False,
    allow_unchecked_unseen: Annotated[bool, typer.Option(help="With --public-key (a prize board): rank results "
                                                         "not checked on unseen images (--private-data) too",
                                                         metavar="")] = False,
) -> None:
    """Rank results by energy within accuracy categories (each competes in the highest it reaches)."""
    from evaluator.report import render
    from evaluator.report.leaderboard import batch_warnings, load_results, rank, rank_by_gpu
    from evaluator.report.prizes import requires_unseen
    from evaluator.report.signing import load_public

    render.check_format(fmt, to_file=output is not None)
    if by not in ("all", "gpu"):
        raise EdlError(f"--by {by!r}: choose all or gpu")
    try:
        limits = parse_thresholds(thresholds)
    except ConfigError as exc:  # a usage error: exit 2
        error(str(exc))
        raise typer.Exit(2) from None
    entries = load_results(results_dir, load_public(public_key) if public_key else None)
    unseen = requires_unseen(public_key is not None, allow_unchecked_unseen)
    boards = rank_by_gpu(entries, limits, allow_mixed, allow_unaudited, unseen) if by == "gpu" else \
        {"": rank(entries, limits, allow_mixed, allow_unaudited, unseen)}
    for title, board in boards.items():
        board.warnings += batch_warnings(results_dir)
        for line in render.notes(board):  # every format also carries them in its own way
            warn(f"{title + ': ' if title else ''}{line}")
    if fmt == "table":
        for table in render.render_tables(boards):  # as wide as the console (COLUMNS when piped), names whole
            out.print(table)
        return
    _write(render.render(boards, fmt), output)


def _write(text: str, output: Path | None) -> None:
    from evaluator.fileio import atomic_write_bytes

    if output is None:
        sys.stdout.write(text)
        return
    try:
        atomic_write_bytes(output, text.encode())
    except OSError as exc:
        blocker = next((folder for folder in output.parents if folder.exists() and not folder.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker else exc.strerror or str(exc)
        raise EdlError(f"cannot write {output} ({reason}); give --output a file in a folder you can write to"
                       ) from None
    note(f"wrote {output}")


def _verdict(checks: list[Check], strict: bool) -> tuple[str, int]:
    """The closing line and the exit code: a skipped check is never "all checks hold"."""
    failed = [c for c in checks if c.outcome == "fail"]
    skipped = [c for c in checks if c.outcome == "skip"]
    if failed or (strict and skipped):
        names = ", ".join(c.name for c in failed + (skipped if strict else []))
        return f"FAILED: {len(failed)} check(s) failed" + (f", {len(skipped)} could not be made (--strict)"
                                                           if strict and skipped else "") + f": {names}", 2
    if skipped:
        return (f"no check failed, but {len(skipped)} could not be made: " + ", ".join(c.name for c in skipped)
                + " (see above; --strict makes them failures)"), 0
    return "all checks hold", 0


@config_options("verify")
def verify(
    result: Annotated[Path, typer.Argument(help="A result.json written by edl score or score-dir, or its folder",
                                           metavar="RESULT")],
    secrets: Secrets,
    model: Annotated[Path | None, typer.Option(help="The submission [default: found from the result's folder, "
                                               "or by sha256 in the batch's submissions folder]",
                                               metavar="PATH")] = None,
    data: Annotated[Path | None, typer.Option(help="The scored test set, to redraw the audit copies [default: "
                                              "the result's]", metavar="PATH")] = None,
    public_key: Annotated[Path | None, typer.Option(help="The organiser's public key: the result must be signed "
                                                    "with its private key", metavar="PUB")] = None,
    strict: Annotated[bool, typer.Option(help="A check that cannot be made fails", metavar="")] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-check a result: seal and signature, files, arithmetic, energy from its samples, the audit."""
    from dataclasses import asdict

    from evaluator.scoring.verify import VerifyOptions, verify_result

    expect_result(result)
    checks = verify_result(result, VerifyOptions(model, secrets.audit_secret, data, public_key, strict))
    line, code = _verdict(checks, strict)
    if as_json:
        print_json({"result": str(result), "ok": code == 0, "summary": line, "checks": [asdict(c) for c in checks]})
    else:
        table = Table(title=f"verify {result}")
        for column in ("check", "outcome", "detail"):
            table.add_column(column)
        for c in checks:
            style = {"pass": "green", "fail": "bold red", "skip": "yellow"}[c.outcome]
            table.add_row(c.name, f"[{style}]{c.outcome}[/{style}]", c.detail)
        out.print(table)
        say(line)
    raise typer.Exit(code)


def keys_init(folder: Annotated[Path, typer.Argument(help="Where the key pair goes (kept by the organiser)",
                                                     metavar="DIR")]) -> None:
    """Make the organiser's Ed25519 signing key (private, 0600) and its public key."""
    from evaluator.report.signing import fingerprint, init_keys, load_public

    private, public = init_keys(folder)
    if (tree := unignored_in_git(private)) is not None:
        warn(f"the private key {private} is inside the git work tree {tree} and git does not ignore it: it could be "
             f"committed; keep it outside any checkout (e.g. ~/.config/edl/keys), or add its folder to .gitignore")
    say(f"private key {private} (mode 0600: keep it on the scoring machine only; pass it with --signing-key or "
        "EDL_SIGNING_KEY)")
    say(f"public key  {public} (share it: edl verify --public-key, edl leaderboard --public-key)")
    say(f"fingerprint {fingerprint(load_public(public))}")


def schema() -> None:
    """Print the JSON Schema of the result document."""
    from evaluator.report.result import result_schema

    print(json.dumps(result_schema(), indent=2))

