"""The leaderboard in every format: a terminal table, CSV, Markdown, JSON and one self-contained HTML page."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import PurePath

from rich.table import Table

from evaluator.errors import EdlError
from evaluator.report.leaderboard import TIE_RULE, Entry, Leaderboard

FORMATS = ("table", "csv", "md", "json", "html")
COLUMNS = ("category", "rank", "name", "accuracy_pct", "energy_kj", "j_per_image", "images_per_s", "model_mb", "note")


def rows(board: Leaderboard) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []

    def row(entry: Entry, category: str, note: str = "") -> dict[str, object]:
        return {
            "category": category,
            "rank": entry.rank,
            "name": entry.name,
            "accuracy_pct": None if entry.accuracy is None else round(entry.accuracy * 100, 2),
            "energy_kj": None if entry.total_j is None else round(entry.total_j / 1000, 4),
            "j_per_image": None if entry.joules_per_image is None else round(entry.joules_per_image, 6),
            "images_per_s": None if entry.images_per_second is None else round(entry.images_per_second),
            "model_mb": round(entry.model_bytes / 1e6, 3),
            "note": note,
        }

    for threshold, members in board.categories.items():
        out += [row(e, f">= {threshold * 100:g} %") for e in members]
    out += [row(e, "unranked", "below the lowest threshold") for e in board.unranked]
    out += [row(e, "unmeasured", public_note(e)) for e in board.unmeasured]
    out += [row(e, "failed", public_note(e)) for e in board.failed]
    return out


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/:;,'\"()]+/)+([^\s/:;,'\"()]+)")


def public_note(entry: Entry) -> str:
    """The entry's reason without the organiser's folders: its model's path reads as the submission's name.

    The model's absolute path becomes the name, and its folder is dropped before the files in it
    (``/srv/subs/x/weights.bin`` reads ``weights.bin``) or becomes the name where it stands alone.
    """
    note, path = entry.reason, entry.result.model.path
    if path and PurePath(path).is_absolute():
        after = r"(?![\w.-])"  # a whole path, not the start of a longer one
        note = re.sub(re.escape(path) + after, lambda _: entry.name, note)
        folder = str(PurePath(path).parent)
        if folder != PurePath(path).anchor:
            note = re.sub(re.escape(folder) + r"/+", "", note)
            note = re.sub(re.escape(folder) + after, lambda _: entry.name, note)
    # Any other absolute path (a child saw the model under its own resolved path): its last part only.
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1), note)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def render_csv(board: Leaderboard) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(board))
    return buffer.getvalue() + "".join(f"# ranked despite: {difference}\n" for difference in board.mixed)


def render_markdown(board: Leaderboard) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for item in rows(board):
        lines.append("| " + " | ".join(_text(item[c]).replace("|", "\\|") for c in COLUMNS) + " |")
    lines.append("")
    lines.append(f"Tie rule: {TIE_RULE}.")
    if board.mixed:
        lines += ["", "**Ranked despite differences:** " + "; ".join(board.mixed).replace("|", "\\|") + "."]
    return "\n".join(lines) + "\n"


def render_json(board: Leaderboard) -> str:
    return json.dumps({"kind": "edl-leaderboard", "thresholds": list(board.thresholds), "tie_rule": TIE_RULE,
                       "mixed": board.mixed, "rows": rows(board)}, indent=2) + "\n"


def render_table(board: Leaderboard) -> Table:

    table = Table(title="edl leaderboard", caption=f"tie rule: {TIE_RULE}")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column not in ("category", "name", "note") else "left")
    for item in rows(board):
        table.add_row(*(_text(item[c]) for c in COLUMNS))
    return table


def _pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points not beaten on both axes (less energy and more accuracy), by increasing energy."""
    front, best = [], -1.0
    for energy, accuracy, name in sorted(points):
        if accuracy > best:
            front.append((energy, accuracy, name))
            best = accuracy
    return front


def _scatter_svg(board: Leaderboard) -> str:
    measured = [e for members in board.categories.values() for e in members] + board.unranked
    points = [(e.total_j / 1000, e.accuracy * 100, e.name) for e in measured
              if e.total_j is not None and e.accuracy is not None]
    width, height, pad = 720, 420, 60
    if not points:
        return "<p>No measured submissions to plot.</p>"
    energies = [p[0] for p in points]
    accuracies = [p[1] for p in points] + [t * 100 for t in board.thresholds]
    x_low, x_high = 0.0, max(energies) * 1.08 or 1.0
    y_low, y_high = min(accuracies) - 2, min(100.0, max(accuracies) + 1)

    def x(value: float) -> float:
        return pad + (value - x_low) / (x_high - x_low) * (width - 2 * pad)

    def y(value: float) -> float:
        return height - pad - (value - y_low) / (y_high - y_low or 1) * (height - 2 * pad)

    parts = [f'<svg id="scatter" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="energy against accuracy">',
             f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="#fafafa" '
             'stroke="#999"/>']
    for threshold in board.thresholds:
        ty = y(threshold * 100)
        parts.append(f'<line class="threshold" x1="{pad}" x2="{width - pad}" y1="{ty:.1f}" y2="{ty:.1f}" '
                     'stroke="#c33" stroke-dasharray="5,4"/>')
        parts.append(f'<text x="{width - pad + 4}" y="{ty + 4:.1f}" font-size="11" fill="#c33">'
                     f'{threshold * 100:g} %</text>')
    front = _pareto(points)
    if len(front) > 1:
        path = " ".join(f"{x(e):.1f},{y(a):.1f}" for e, a, _ in front)
        parts.append(f'<polyline class="pareto" points="{path}" fill="none" stroke="#2a7" stroke-width="2"/>')
    for energy, accuracy, name in points:
        parts.append(f'<circle class="point" cx="{x(energy):.1f}" cy="{y(accuracy):.1f}" r="5" fill="#36c">'
                     f'<title>{html.escape(name)}: {energy:,.3f} kJ, {accuracy:.2f} %</title></circle>')
        parts.append(f'<text x="{x(energy) + 7:.1f}" y="{y(accuracy) - 6:.1f}" font-size="11">'
                     f'{html.escape(name)}</text>')
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        value = x_low + fraction * (x_high - x_low)
        parts.append(f'<text x="{x(value):.1f}" y="{height - pad + 16}" font-size="11" text-anchor="middle">'
                     f'{value:,.2f}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 12}" font-size="12" text-anchor="middle">'
                 'energy over the measured passes (kJ)</text>')
    parts.append(f'<text x="16" y="{height / 2}" font-size="12" transform="rotate(-90 16 {height / 2})" '
                 'text-anchor="middle">accuracy (%)</text>')
    for fraction in (0, 0.5, 1):
        value = y_low + fraction * (y_high - y_low)
        parts.append(f'<text x="{pad - 6}" y="{y(value) + 4:.1f}" font-size="11" text-anchor="end">{value:.1f}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


_SORT_SCRIPT = """
document.querySelectorAll('table.board th').forEach((th) => th.addEventListener('click', () => {
  const table = th.closest('table'); const body = table.tBodies[0];
  const index = Array.from(th.parentNode.children).indexOf(th);
  const ascending = th.dataset.order !== 'asc'; th.dataset.order = ascending ? 'asc' : 'desc';
  const key = (row) => { const text = row.children[index].textContent.trim();
    const number = parseFloat(text.replace(/,/g, '')); return isNaN(number) ? text : number; };
  Array.from(body.rows).sort((a, b) => { const x = key(a), y = key(b);
    return (x > y ? 1 : x < y ? -1 : 0) * (ascending ? 1 : -1); }).forEach((row) => body.appendChild(row));
}));
"""


def render_html(board: Leaderboard, title: str = "edl leaderboard") -> str:
    """One self-contained page: a sortable table per category, and the energy/accuracy scatter."""
    head = ("rank", "name", "accuracy %", "energy kJ", "J / image", "images/s", "model MB", "note")
    keys = ("rank", "name", "accuracy_pct", "energy_kj", "j_per_image", "images_per_s", "model_mb", "note")
    grouped: dict[str, list[dict[str, object]]] = {}
    for item in rows(board):
        grouped.setdefault(str(item["category"]), []).append(item)
    sections = []
    for category, items in grouped.items():
        body = "\n".join(
            "<tr>" + "".join(f"<td>{html.escape(_text(item[k]))}</td>" for k in keys) + "</tr>" for item in items
        )
        sections.append(
            f'<section><h2>{html.escape(category)}</h2><table class="board" data-category="{html.escape(category)}">'
            "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr></thead><tbody>\n{body}\n</tbody>"
            "</table></section>"
        )
    mixed = ""
    if board.mixed:
        mixed = "<p class='warning'>Ranked despite differences: " + html.escape("; ".join(board.mixed)) + "</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:nth-child(2), td:nth-child(8), th:nth-child(2), th:nth-child(8) {{ text-align: left; }}
th {{ background: #eee; cursor: pointer; }}
.warning {{ color: #a40; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Each submission competes in the highest accuracy category it reaches; within a category the lowest
energy (CPU + GPU joules over the measured passes) wins. Tie rule: {html.escape(TIE_RULE)}.
Click a column heading to sort.</p>
{mixed}
{''.join(sections)}
<h2>Energy against accuracy</h2>
{_scatter_svg(board)}
<p>Dashed lines: category thresholds. Green line: the Pareto front (no other submission is both more
accurate and more frugal).</p>
<script>{_SORT_SCRIPT}</script>
</body></html>
"""


def render(board: Leaderboard, fmt: str) -> str:
    renderers = {"csv": render_csv, "md": render_markdown, "json": render_json, "html": render_html}
    if fmt not in renderers:
        raise EdlError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return renderers[fmt](board)
