"""The leaderboard in every format: a terminal table, CSV, Markdown, JSON and one self-contained HTML page.

Every format carries the same rows (ranked, ties named, the audit's accuracy beside the accuracy;
then the results set apart: under review, disqualified, unaudited, unsigned, misnamed, duplicate,
unranked, unmeasured, failed, not trusted) and the same notes (what was ranked despite differing,
what the measurement itself warns of). ``--by gpu`` gives one board per GPU model, each a section
of its own. CSV is pure CSV (one header, then rows): the notes go to stderr, not into the file. The
formats read by people (table, md, html) say a reason shared by several rows once, as a numbered
footnote; CSV and JSON, read by programs, give every row its whole note.

The rows and notes are ``board_rows``'s; the terminal tables ``render_terminal``'s; the HTML page
``render_html``'s; CSV, Markdown and JSON are here, with ``render``, which writes any of them.
"""

from __future__ import annotations

import csv
import io
import json

from evaluator.errors import EdlError
from evaluator.report.board_rows import COLUMNS, Boards, footnoted, notes, rows, text, titled
from evaluator.report.leaderboard import TIE_RULE, Leaderboard
from evaluator.report.render_html import render_html
from evaluator.report.render_terminal import render_tables

# edl leaderboard (cli/board.py) reads every format through this module: the terminal tables and the notes too.
__all__ = ["FORMATS", "notes", "render", "render_csv", "render_html", "render_json", "render_markdown", "render_tables"]

FORMATS = ("table", "csv", "md", "json", "html")  # table: rich tables for the terminal (render_tables)
WRITTEN_FORMATS = FORMATS[1:]  # the text render() writes, to stdout or --output


def check_format(fmt: str, to_file: bool = False) -> None:
    """The one validation of --format: a known format, and a text one where it goes to a file."""
    if fmt not in FORMATS:
        raise EdlError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if to_file and fmt not in WRITTEN_FORMATS:
        raise EdlError(f"--format {fmt} prints to the terminal; choose {', '.join(WRITTEN_FORMATS[:-1])} or "
                       f"{WRITTEN_FORMATS[-1]} for --output")


def render_csv(boards: Boards) -> str:
    buffer = io.StringIO()
    by_gpu = any(boards)
    writer = csv.DictWriter(buffer, fieldnames=(("gpu",) if by_gpu else ()) + COLUMNS, lineterminator="\n")
    writer.writeheader()
    for title, board in titled(boards):
        writer.writerows([({"gpu": title} if by_gpu else {}) | item for item in rows(board)])
    return buffer.getvalue()  # pure CSV: the board's notes go to stderr (edl leaderboard warns them)


def render_markdown(boards: Boards) -> str:
    lines: list[str] = []
    for title, board in titled(boards):
        if title:
            lines += [f"## {title}", ""]
        items, footnotes = footnoted(rows(board))
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(text(item[c]).replace("|", "\\|") for c in COLUMNS) + " |" for item in items]
        lines.append("")
        lines += [f"{line.replace('|', '/')}  " for line in footnotes] + ([""] if footnotes else [])
        lines += [f"**Note:** {line.replace('|', '/')}." for line in notes(board)]
        if board.mixed:
            lines.append("**Ranked despite differences:** " + "; ".join(board.mixed).replace("|", "\\|") + ".")
        lines.append("")
    if any(board.ranked for board in boards.values()):
        lines.append(f"Tie rule: {TIE_RULE}.")
    return "\n".join(lines) + "\n"


def _board_json(board: Leaderboard) -> dict[str, object]:
    ties = {e.name: e.tied_with for e in board.ranked}
    return {"thresholds": list(board.thresholds), "tie_rule": TIE_RULE, "mixed": board.mixed,
            "warnings": board.warnings,
            "rows": [item | {"tied_with": ties.get(str(item["name"]), []) if item["rank"] is not None else []}
                     for item in rows(board)]}


def render_json(boards: Boards) -> str:
    if list(boards) == [""]:
        document: dict[str, object] = {"kind": "edl-leaderboard"} | _board_json(boards[""])
    else:
        document = {"kind": "edl-leaderboard", "by": "gpu",
                    "boards": [{"gpu": title} | _board_json(board) for title, board in titled(boards)]}
    return json.dumps(document, indent=2) + "\n"


def render(boards: Boards | Leaderboard, fmt: str) -> str:
    renderers = {"csv": render_csv, "md": render_markdown, "json": render_json, "html": render_html}
    check_format(fmt, to_file=True)
    return renderers[fmt](boards if isinstance(boards, dict) else {"": boards})
