"""``edl score`` and ``edl score-dir``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from evaluator.cli.console import Interrupted, fmt, note, out, print_json, say, warn
from evaluator.cli.options import JsonOption, ModelArgument, config_options
from evaluator.cli.outdir import FolderRollback
from evaluator.cli.progress import batch_view, progress_display
from evaluator.config import SCORE, SCORE_DIR, BatchConfig, ScoreConfig, Secrets
from evaluator.errors import EdlError
from evaluator.report.result import RESULT_NAME, Result, result_json
from evaluator.typedjson import to_json


def _energy_rows(table: Table, result: Result) -> None:
    energy, run = result.energy, result.runs[0]
    assert energy is not None
    table.add_row("energy total", fmt(energy.total_j, " J"))
    for domain in ("gpu", "cpu", "dram"):
        value = getattr(run.energy, f"{domain}_j")
        reason = run.energy.domains[domain].reason if domain in run.energy.domains else run.energy.reason
        table.add_row(f"  {domain}", fmt(value, " J") if value is not None else f"unavailable: {reason}")
    if energy.total_j_interval is not None and len(energy.repeats_j) > 1:
        low, high = energy.total_j_interval
        table.add_row("  95 % interval", f"{low:,.3f} to {high:,.3f} J over {len(energy.repeats_j)} runs")
    if energy.total_j is not None and energy.per_image_j is not None:
        table.add_row("per pass / per image", f"{energy.total_j / result.passes:.3f} J / "
                      f"{energy.per_image_j * 1e3:.4f} mJ")
        table.add_row("mean power", fmt(run.energy.mean_w, " W", 1))
    if run.energy.idle is not None and run.energy.idle.total_w is not None:
        table.add_row("idle / above idle", f"{run.energy.idle.total_w:.1f} W / {fmt(run.energy.above_idle_j, ' J')}")


def category_words(result: Result) -> str:
    """The category as a person reads it: "95 %", "below 90 %", and "unofficial data" when not on the test set."""
    assert result.data is not None
    if result.category is not None:
        words = f"{result.category * 100:g} %"
    elif result.thresholds and result.accuracy is not None and result.accuracy < min(result.thresholds):
        words = f"below {min(result.thresholds) * 100:g} %"
    else:
        words = "unranked"
    return words if result.data.official else f"{words} (unofficial data: not the official test set)"


def flat(text: str) -> str:
    """``a (b (c))`` as ``a: b (c)``: one level of parentheses in a table cell, not three."""
    head, bracket, tail = text.partition(" (")
    return f"{head}: {tail[:-1]}" if bracket and tail.endswith(")") else text


def print_result(result: Result) -> None:
    """The summary a person reads after `edl score`."""
    data, provider = result.data, result.provider
    assert data is not None and provider is not None and result.accuracy is not None
    table = Table(title=result.model.name, show_header=False)
    table.add_row("accuracy", f"{result.accuracy:.2%} ({result.correct}/{data.images})")
    table.add_row("category", category_words(result))
    table.add_row("provider", f"{provider.name}, {flat(provider.selection)}")
    table.add_row("batch / passes", f"{result.batch_size} ({result.batch_size_rule}) / {result.passes}")
    table.add_row("measured", f"{result.seconds:.3f} s, {result.images_per_second:,.0f} images/s")
    _energy_rows(table, result)
    audit = result.audit
    table.add_row("generalization audit", "off (--audit-copies 0)" if audit is None else
                  f"{audit.verdict}: {audit.accuracy:.2%} on {audit.copies} flipped/shifted copies"
                  + (f"; private images {audit.private.accuracy:.2%}" if audit.private else ""))
    table.add_row("signature", "unsigned" if result.signature is None else
                  f"signed by key {result.signature.public_key_sha256[:16]}…")
    table.add_row("data", f"{data.fingerprint[:16]}…, " + ("the official test set" if data.official else
                                                             "unofficial data: not the official test set"))
    out.print(table)


@config_options(SCORE)
def score(
    model: ModelArgument,
    config: ScoreConfig,
    secrets: Secrets,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Result folder [default: results/<model stem>/]",
                                                 metavar="PATH")] = None,
    as_json: JsonOption = False,
) -> None:
    """Score one submission: accuracy, speed and energy over --passes passes."""
    from evaluator.scoring import pipeline

    out_dir = out_dir or pipeline.default_out_dir(model)
    rollback = FolderRollback(out_dir)  # a run that does not finish leaves the folder as it found it
    try:
        with progress_display() as display:
            result = pipeline.score(model, config, out_dir, display, secrets=secrets)
    except KeyboardInterrupt:
        rollback.undo()
        raise Interrupted(rollback.kept()) from None
    except BaseException:
        rollback.undo()
        raise
    archived = rollback.keep_replaced()
    if as_json:
        print_json(result_json(result))
        return
    print_result(result)
    for warning in result.warnings:
        warn(warning)
    if archived is not None:
        note(f"the earlier result in {out_dir} is kept in {archived}")
    say(f"result: {out_dir / RESULT_NAME}")


@config_options(SCORE_DIR)
def score_dir(
    directory: Annotated[Path, typer.Argument(help="A folder of submissions: *.onnx, or folders holding one",
                                              metavar="DIR")],
    config: ScoreConfig,
    batch: BatchConfig,
    secrets: Secrets,
    out_root: Annotated[Path, typer.Option("--out", help="Results root: one folder per submission",
                                           metavar="PATH")] = Path("results"),
    as_json: JsonOption = False,
) -> None:
    """Score every submission in a folder, each run in its own process (here or on a Ray cluster); resumable."""
    from evaluator.batch.directory import score_directory

    try:
        with progress_display() as display:
            summary = score_directory(directory, out_root, config, batch, batch_view(display, batch.backend != "local"),
                                      secrets)
    except KeyboardInterrupt:
        raise Interrupted(f"every result in {out_root} is whole or absent; the runs finished so far wait in "
                          f"{out_root}/_partial/ and the same command resumes them") from None
    if as_json:
        print_json(to_json(summary))
    else:
        for ignored in summary.ignored:
            say(f"{'ignored':<8} {ignored.name}  {ignored.reason}")
        for item in summary.submissions:
            detail = item.reason or (f"{item.seconds:.1f} s" if item.seconds is not None else "")
            say(f"{item.outcome:<8} {item.name}  {detail}" + (f"; the earlier result moved to {item.archived}"
                                                                if item.archived else ""))
        counts = summary.counts
        say(f"scored {counts['scored']}, failed {counts['failed']}, skipped {counts['skipped']}, "
            f"ignored {len(summary.ignored)}; results in {out_root}")
    if counts_all_failed(summary.counts):
        raise EdlError(f"every submission failed; see the reasons above and in {out_root}/*/{RESULT_NAME}")


def counts_all_failed(counts: dict[str, int]) -> bool:
    return counts["failed"] > 0 and counts["scored"] + counts["skipped"] == 0
