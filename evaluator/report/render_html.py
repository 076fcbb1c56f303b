"""The leaderboard as one self-contained HTML page: a sortable table per category and the energy/accuracy
scatter (an inline SVG with the Pareto front and each total's 95 % interval), per board."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from evaluator.report.board_rows import Boards, footnoted, notes, rows, text, titled
from evaluator.report.leaderboard import TIE_RULE, Leaderboard


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
    return [f"<td>{html.escape(text(value))}</td>" for value in values]


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
                   + _html_board(board, index) + "</section>" for index, (name, board) in enumerate(titled(boards)))
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
