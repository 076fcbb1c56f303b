"""``edl check``: validate a submission without scoring it."""

from __future__ import annotations

import typer
from rich.table import Table

from evaluator.cli.console import error, out, print_json, warn
from evaluator.cli.options import JsonOption, ModelArgument, config_options
from evaluator.config import Limits


@config_options("check")
def check(
    model: ModelArgument,
    limits: Limits,
    as_json: JsonOption = False,
) -> None:
    """Validate a submission without scoring it: exit 0 when valid, 2 when not."""
    from evaluator.contract.check import check_submission

    report = check_submission(model, limits)
    if as_json:
        print_json(report.to_json())
    else:
        table = Table(title=f"{model.name}: {'valid' if report.valid else 'INVALID'}", show_header=False)
        table.add_row("sha256", report.sha256 or "-")
        table.add_row("size", f"{report.bytes:,} bytes")
        opsets = ", ".join(f"{domain} {version}" for domain, version in report.opsets.items())
        table.add_row("ir / opsets", f"{report.ir_version} / {opsets}")
        table.add_row("domains used", ", ".join(report.domains_used) or "-")
        table.add_row("nodes / parameters", f"{report.node_count:,} / {report.parameters:,}")
        table.add_row("inputs", "\n".join(report.inputs) or "-")
        table.add_row("outputs", "\n".join(report.outputs) or "-")
        if report.external_data:
            table.add_row("external data", ", ".join(report.external_data))
        if report.contract:
            contract = report.contract
            size, rule = contract.batch_size(None)
            table.add_row("contract", f"{contract.input_dtype} {contract.layout} -> {contract.output_kind}")
            table.add_row("batch policy", f"{size} ({rule})")
        out.print(table)
        for finding in report.evidence:  # evidence for review: it never changes the exit code
            out.print(f"graph evidence {finding.line}", markup=False, highlight=False)
    for warning in report.warnings:
        warn(warning)
    for problem in report.problems:
        error(problem)
    raise typer.Exit(0 if report.valid else 2)
