"""The leaderboard in every format: a terminal table, CSV, Markdown, JSON and one self-contained HTML page.

Every format carries the same rows (ranked, ties named, the audit's accuracy beside the accuracy;
then the results set apart: under review, disqualified, unaudited, unsigned, misnamed, duplicate,
unranked, unmeasured, failed, not trusted) and the same notes (what was ranked despite differing,
what the measurement itself warns of). ``--by gpu`` gives one board per GPU model, each a section
of its own. CSV is pure CSV (one header, then rows): the notes go to stderr, not into the file. The
formats read by people (table, md, html) say a reason shared by several rows once, as a numbered
footnote; CSV and JSON, read by programs, give every row its whole note.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import PurePath

from rich import box
from rich.table import Table

from evaluator.errors import EdlError
from evaluator.report.leaderboard import TIE_RULE, UNAUDITED_NOTE, Entry, Leaderboard, Untrusted
from evaluator.report.prizes import UNCHECKED_UNSEEN, UNCHECKED_UNSEEN_NOTE

FORMATS = ("table", "csv", "md", "json", "html")  # table: rich tables for the terminal (render_tables)
WRITTEN_FORMATS = FORMATS[1:]  # the text render() writes, to stdout or --output


def check_format(fmt: str, to_file: bool = False) -> None:
    """The one validation of --format: a known format, and a text one where it goes to a file."""
    if fmt not in FORMATS:
        raise EdlError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if to_file and fmt not in WRITTEN_FORMATS:
        raise EdlError(f"--format {fmt} prints to the terminal; choose {', '.join(WRITTEN_FORMATS[:-1])} or "
                       f"{WRITTEN_FORMATS[-1]} for --output")
COLUMNS = ("category", "rank", "name", "accuracy_pct", "audit_pct", "energy_kj", "energy_kj_low", "energy_kj_high",
           "runs", "j_per_image", "images_per_s", "model_mb", "tied_with", "note")
Boards = dict[str, Leaderboard]  # section title ("" for a single board) -> board


def _kj(joules: float | None) -> float | None:
    return None if joules is None else round(joules / 1000, 4)


UNOFFICIAL = "unofficial data"  # said in the category of a result not scored on the official test set


def _category(entry: Entry, label: str) -> str:
    """A category reached (or not: unranked) on data other than the official test set says so."""
    data = entry.result.data
    reached = label.startswith(">=") or label == "unranked"
    return f"{label} ({UNOFFICIAL})" if reached and data is not None and not data.official else label


def _row(entry: Entry, category: str, note: str = "") -> dict[str, object]:
    interval = entry.interval
    energy = entry.result.energy
    return {
        "category": _category(entry, category), "rank": entry.rank, "name": entry.name,
        "accuracy_pct": None if entry.accuracy is None else round(entry.accuracy * 100, 2),
        "audit_pct": None if entry.audit_accuracy is None else round(entry.audit_accuracy * 100, 2),
        "energy_kj": _kj(entry.total_j), "energy_kj_low": _kj(interval[0]) if interval else None,
        "energy_kj_high": _kj(interval[1]) if interval else None,
        "runs": len(energy.repeats_j) if energy is not None else None,
        "j_per_image": None if entry.joules_per_image is None else round(entry.joules_per_image, 6),
        "images_per_s": None if entry.images_per_second is None else round(entry.images_per_second),
        "model_mb": round(entry.model_bytes / 1e6, 3),
        "tied_with": ", ".join(entry.tied_with), "note": note,
    }


def _untrusted_row(item: Untrusted) -> dict[str, object]:
    """Nothing a document that cannot be trusted claims is shown: its folder and why."""
    return {column: None for column in COLUMNS} | {"category": "not trusted", "name": item.name, "note": item.reason,
                                                    "tied_with": ""}


def _apart_note(label: str, entry: Entry) -> str:
    if label == "unaudited":
        return UNAUDITED_NOTE
    if label == UNCHECKED_UNSEEN:
        return UNCHECKED_UNSEEN_NOTE
    if label == "unranked":
        return "below the lowest threshold"
    return public_note(entry)


def rows(board: Leaderboard) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for threshold, members in board.categories.items():
        out += [_row(e, f">= {threshold * 100:g} %", e.note) for e in members]
    for label, entries in board.apart():
        out += [_row(e, label, _apart_note(label, e)) for e in entries]
    out += [_untrusted_row(item) for item in board.untrusted]
    return out


def footnoted(items: list[dict[str, object]]) -> tuple[list[dict[str, object]], list[str]]:
    """The rows with each note that several rows share replaced by a numbered reference, and the footnotes."""
    counts: dict[str, int] = {}
    for item in items:
        if item["note"]:
            counts[str(item["note"])] = counts.get(str(item["note"]), 0) + 1
    shared = [note for note, count in counts.items() if count > 1]
    numbers = {note: index for index, note in enumerate(shared, start=1)}
    changed = [item | {"note": f"see [{numbers[str(item['note'])]}]"} if str(item["note"]) in numbers else item
               for item in items]
    return changed, [f"[{number}] {note}" for note, number in numbers.items()]


def notes(board: Leaderboard) -> list[str]:
    """What a reader of the board must know, in every format."""
    return [f"ranked despite: {difference}" for difference in board.mixed] + board.warnings


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


def _titled(boards: Boards) -> list[tuple[str, Leaderboard]]:
    return [(title, board) for title, board in boards.items()]


def render_csv(boards: Boards) -> str:
    buffer = io.StringIO()
    by_gpu = any(boards)
    writer = csv.DictWriter(buffer, fieldnames=(("gpu",) if by_gpu else ()) + COLUMNS, lineterminator="\n")
    writer.writeheader()
    for title, board in _titled(boards):
        writer.writerows([({"gpu": title} if by_gpu else {}) | item for item in rows(board)])
    return buffer.getvalue()  # pure CSV: the board's notes go to stderr (edl leaderboard warns them)


def render_markdown(boards: Boards) -> str:
    lines: list[str] = []
    for title, board in _titled(boards):
        if title:
            lines += [f"## {title}", ""]
        items, footnotes = footnoted(rows(board))
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_text(item[c]).replace("|", "\\|") for c in COLUMNS) + " |" for item in items]
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
                    "boards": [{"gpu": title} | _board_json(board) for title, board in _titled(boards)]}
    return json.dumps(document, indent=2) + "\n"


CAPTION_WIDTH = 78  # the footnotes under a terminal table, wrapped to fit an 80-column terminal
TABLE_HEAD = {"category": "category", "rank": "rank", "name": "name", "accuracy_pct": "acc %", "audit_pct": "audit %",
              "energy_kj": "kJ", "interval": "95 % kJ", "runs": "runs", "note": "note"}  # ties: a shared rank


def render_tables(boards: Boards) -> list[Table]:
    """One terminal table per board, as wide as the console at most: names are never cut, every note is a
    numbered footnote under the table (said once however many rows share it); J/image, images/s and the
    model's size are in the other formats."""
    tables = []
    for title, board in _titled(boards):
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
            lines.append([cells[key] if key in cells else _text(item[key]) for key in TABLE_HEAD])
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


def _pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points not beaten on both axes (less energy and more accuracy), by increasing energy."""
    front, best = [], -1.0
    for energy, accuracy, name in sorted(points):
        if accuracy > best:
            front.append((energy, accuracy, name))
            best = accuracy
    return front


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high], at most ``most`` + 1."""
    span = high - low or abs(high) or 1.0
    raw = span / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(factor * power for factor in (1, 2, 5, 10) if factor * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value < high + step - 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


@dataclass(frozen=True)
class _Frame:
    """The scatter's plotting area and the data ranges it shows."""

    x_low: float
    x_high: float
    y_low: float
    y_high: float
    width: int = 720
    height: int = 420
    pad: int = 60

    def x(self, value: float) -> float:
        return self.pad + (value - self.x_low) / (self.x_high - self.x_low or 1) * (self.width - 2 * self.pad)

    def y(self, value: float) -> float:
        return self.height - self.pad - (value - self.y_low) / (self.y_high - self.y_low or 1) * (
            self.height - 2 * self.pad)


LABEL_HEIGHT, LABEL_CHAR = 13.0, 6.6  # px of an 11 px label: its line height, and about one character's width


def _place_labels(spots: list[tuple[float, float, str]], frame: _Frame) -> list[tuple[float, float, str, bool]]:
    """A label per point, each moved down or up from its point until it overlaps no label placed before it;
    (x, y, anchor, moved): a moved label gets a leader line back to its point."""
    placed: list[tuple[float, float, float, float]] = []
    out = []
    for px, py, name in spots:
        width = LABEL_CHAR * len(name)
        right = px + 7 + width <= frame.width - frame.pad - 2  # inside the plot: the right margin holds thresholds
        left = px + 7 if right else px - 7 - width
        for step in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
            top = py - 6 - LABEL_HEIGHT + 3 + step * LABEL_HEIGHT
            box = (left, top, left + width, top + LABEL_HEIGHT)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        out.append((px + 7 if right else px - 7, top + LABEL_HEIGHT - 3, "start" if right else "end", step != 0))
    return out


def _scatter_points(board: Leaderboard) -> list[tuple[float, float, str, tuple[float, float] | None]]:
    measured = board.ranked + board.unranked
    return [(e.total_j / 1000, e.accuracy * 100, e.name, e.interval) for e in measured
            if e.total_j is not None and e.accuracy is not None]


def _scatter_frame(board: Leaderboard, points: list[tuple[float, float, str, tuple[float, float] | None]]) -> _Frame:
    """Axes that hold every point, every error bar and every threshold line, ending on round ticks."""
    lows = [p[3][0] / 1000 if p[3] else p[0] for p in points]
    highs = [p[3][1] / 1000 if p[3] else p[0] for p in points]
    accuracies = [p[1] for p in points] + [t * 100 for t in board.thresholds]
    x_ticks = nice_ticks(min(0.0, *lows), max(highs) * 1.04 or 1.0)  # a point is never on the frame's edge
    y_ticks = nice_ticks(max(0.0, min(accuracies) - 1), min(100.0, max(accuracies) + 0.5))
    return _Frame(x_ticks[0], x_ticks[-1], y_ticks[0], min(y_ticks[-1], 100.0))


def _scatter_svg(board: Leaderboard, index: int = 0) -> str:
    points = _scatter_points(board)
    if not points:
        return "<p>No measured submissions to plot.</p>"
    frame = _scatter_frame(board, points)
    x, y = frame.x, frame.y
    parts = [f'<svg id="scatter{index}" class="scatter" xmlns="http://www.w3.org/2000/svg" width="{frame.width}" '
             f'height="{frame.height}" role="img" aria-label="energy against accuracy">',
             f'<rect x="{frame.pad}" y="{frame.pad}" width="{frame.width - 2 * frame.pad}" '
             f'height="{frame.height - 2 * frame.pad}" fill="#fafafa" stroke="#999"/>']
    for threshold in board.thresholds:
        ty = y(threshold * 100)
        parts.append(f'<line class="threshold" x1="{frame.pad}" x2="{frame.width - frame.pad}" y1="{ty:.1f}" '
                     f'y2="{ty:.1f}" stroke="#c33" stroke-dasharray="5,4"/>')
        parts.append(f'<text x="{frame.width - frame.pad + 4}" y="{ty + 4:.1f}" font-size="11" fill="#c33">'
                     f'{threshold * 100:g} %</text>')
    front = _pareto([(e, a, n) for e, a, n, _ in points])
    if len(front) > 1:
        path = " ".join(f"{x(e):.1f},{y(a):.1f}" for e, a, _ in front)
        parts.append(f'<polyline class="pareto" points="{path}" fill="none" stroke="#2a7" stroke-width="2"/>')
    spots = sorted(points, key=lambda p: (y(p[1]), x(p[0])))  # labels placed from the top down
    labels = _place_labels([(x(e), y(a), n) for e, a, n, _ in spots], frame)
    for (energy, accuracy, name, interval), (lx, ly, anchor, moved) in zip(spots, labels, strict=True):
        cx, cy = x(energy), y(accuracy)
        if interval is not None:  # the 95 % interval of the total, as an error bar
            low, high = x(interval[0] / 1000), x(interval[1] / 1000)
            parts.append(f'<path class="errorbar" d="M{low:.1f},{cy:.1f}H{high:.1f}M{low:.1f},{cy - 4:.1f}'
                         f'V{cy + 4:.1f}M{high:.1f},{cy - 4:.1f}V{cy + 4:.1f}" stroke="#36c" fill="none"/>')
        parts.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#36c">'
                     f'<title>{html.escape(name)}: {energy:,.3f} kJ, {accuracy:.2f} %</title></circle>')
        if moved:
            parts.append(f'<line class="leader" x1="{cx:.1f}" y1="{cy:.1f}" x2="{lx:.1f}" y2="{ly - 4:.1f}" '
                         'stroke="#999" stroke-width="0.8"/>')
        parts.append(f'<text class="label" x="{lx:.1f}" y="{ly:.1f}" font-size="11" text-anchor="{anchor}">'
                     f'{html.escape(name)}</text>')
    parts += _axes(frame)
    parts.append("</svg>")
    parts.append("<p class='caption'>Dashed lines: category thresholds. Green line: the Pareto front (no other "
                 "submission is both more accurate and more frugal). Bars: the 95 % interval of each total.</p>")
    return "\n".join(parts)


def _axes(frame: _Frame) -> list[str]:
    parts = []
    for value in nice_ticks(frame.x_low, frame.x_high):
        if frame.x_low - 1e-9 <= value <= frame.x_high + 1e-9:
            parts.append(f'<text class="xtick" x="{frame.x(value):.1f}" y="{frame.height - frame.pad + 16}" '
                         f'font-size="11" text-anchor="middle">{value:,.10g}</text>')
    parts.append(f'<text x="{frame.width / 2}" y="{frame.height - 12}" font-size="12" text-anchor="middle">'
                 'energy over the measured passes (kJ; bars: 95 % interval)</text>')
    parts.append(f'<text x="16" y="{frame.height / 2}" font-size="12" transform="rotate(-90 16 {frame.height / 2})" '
                 'text-anchor="middle">accuracy (%)</text>')
    for value in nice_ticks(frame.y_low, frame.y_high):
        if frame.y_low - 1e-9 <= value <= frame.y_high + 1e-9:
            parts.append(f'<text class="ytick" x="{frame.pad - 6}" y="{frame.y(value) + 4:.1f}" font-size="11" '
                         f'text-anchor="end">{value:,.10g}</text>')
    return parts


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


HTML_HEAD = ("rank", "name", "accuracy %", "audit %", "energy kJ", "95 % interval kJ", "runs", "J / image",
             "images/s", "model MB", "tied with", "note")


def _html_cells(item: dict[str, object]) -> list[str]:
    interval = f"{item['energy_kj_low']} to {item['energy_kj_high']}" if item["energy_kj_low"] is not None else ""
    keys = ("rank", "name", "accuracy_pct", "audit_pct", "energy_kj")
    tail = ("runs", "j_per_image", "images_per_s", "model_mb", "tied_with", "note")
    values = [item[k] for k in keys] + [interval] + [item[k] for k in tail]
    return [f"<td>{html.escape(_text(value))}</td>" for value in values]


def _html_board(board: Leaderboard, index: int) -> str:
    grouped: dict[str, list[dict[str, object]]] = {}
    items, footnotes = footnoted(rows(board))
    for item in items:
        grouped.setdefault(str(item["category"]), []).append(item)
    sections = [f'<section><h3>{html.escape(category)}</h3><table class="board" '
                f'data-category="{html.escape(category)}"><thead><tr>'
                + "".join(f"<th>{h}</th>" for h in HTML_HEAD) + "</tr></thead><tbody>\n"
                + "\n".join("<tr>" + "".join(_html_cells(item)) + "</tr>" for item in items)
                + "\n</tbody></table></section>" for category, items in grouped.items()]
    warnings = "".join(f"<p class='warning'>{html.escape(line)}</p>" for line in notes(board))
    shared = "".join(f"<p class='footnote'>{html.escape(line)}</p>" for line in footnotes)
    return (f"{warnings}{''.join(sections)}{shared}<h3>Energy against accuracy</h3>{_scatter_svg(board, index)}")


def render_html(boards: Boards, title: str = "edl leaderboard") -> str:
    """One self-contained page: a sortable table per category, and the energy/accuracy scatter, per board."""
    body = "".join((f"<section class='gpu'><h2>{html.escape(name)}</h2>" if name else "<section>")
                   + _html_board(board, index) + "</section>" for index, (name, board) in enumerate(_titled(boards)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:nth-child(2), td:nth-child(11), td:nth-child(12), th:nth-child(2), th:nth-child(11), th:nth-child(12)
  {{ text-align: left; }}
th {{ background: #eee; cursor: pointer; }}
.warning {{ color: #a40; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Each submission competes in the highest accuracy category it reaches; within a category the lowest
energy (CPU + GPU joules over the measured passes, the median of its runs) wins. Tie rule: {html.escape(TIE_RULE)}.
A result the generalization audit found suspect is listed under review, never ranked. Click a column heading to
sort.</p>
{body}
<script>{_SORT_SCRIPT}</script>
</body></html>
"""


def render(boards: Boards | Leaderboard, fmt: str) -> str:
    renderers = {"csv": render_csv, "md": render_markdown, "json": render_json, "html": render_html}
    check_format(fmt, to_file=True)
    return renderers[fmt](boards if isinstance(boards, dict) else {"": boards})
