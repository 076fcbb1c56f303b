"""The leaderboard as terminal tables (rich): as wide as the console, names never cut, notes as footnotes."""

from __future__ import annotations

import textwrap

from rich import box
from rich.table import Table

from evaluator.report.board_rows import Boards, rows, text, titled
from evaluator.report.leaderboard import TIE_RULE

CAPTION_WIDTH = 78  # the footnotes under a terminal table, wrapped to fit an 80-column terminal
TABLE_HEAD = {"category": "category", "rank": "rank", "name": "name", "accuracy_pct": "acc %", "audit_pct": "audit %",
              "energy_kj": "kJ", "interval": "95 % kJ", "runs": "runs", "note": "note"}  # ties: a shared rank


def render_tables(boards: Boards) -> list[Table]:
    """One terminal table per board, as wide as the console at most: names are never cut, every note is a
    numbered footnote under the table (said once however many rows share it); J/image, images/s and the
    model's size are in the other formats."""
    tables = []
    for title, board in titled(boards):
        items = rows(board)
        numbers: dict[str, int] = {}
        for item in items:
            if item["note"]:
                numbers.setdefault(str(item["note"]), len(numbers) + 1)
        tied = [f"tied at rank {item['rank']}: {item['name']}, {item['tied_with']}" for item in items
                if item["tied_with"] and item["rank"] is not None and str(item["name"]) < str(item["tied_with"])]
        said = ([f"[{n}] {note}" for note, n in numbers.items()] + tied
                + ([f"tie rule: {TIE_RULE}"] if board.ranked else []))
        caption = "\n".join(textwrap.fill(line, CAPTION_WIDTH, subsequent_indent="    ") for line in said)
        table = Table(title=f"edl leaderboard{': ' + title if title else ''}", caption=caption or None,
                      caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        lines = []
        for item in items:
            interval = (f"{item['energy_kj_low']}-{item['energy_kj_high']}" if item["energy_kj_low"] is not None
                        and item["energy_kj_low"] != item["energy_kj_high"] else "")
            cells = {"interval": interval, "note": f"[{numbers[str(item['note'])]}]" if item["note"] else ""}
            lines.append([cells[key] if key in cells else text(item[key]) for key in TABLE_HEAD])
        shown = [column for column, key in enumerate(TABLE_HEAD) if key in ("rank", "name", "category")
                 or any(line[column] for line in lines)]  # a column empty on every row is left out
        for column in shown:
            key, head = list(TABLE_HEAD.items())[column]
            words = key == "category"  # it wraps at a narrow terminal, between words; a name or figure is never cut
            longest = max((len(part) for line in lines for part in (line[column].split() if words else [line[column]])),
                          default=0)
            table.add_column(head, justify="left" if words or key in ("name", "note") else "right",
                             no_wrap=not words, min_width=max(longest, 1 if words else len(head)))
        for line in lines:
            table.add_row(*(line[column] for column in shown))
        tables.append(table)
    return tables
