"""The rows every leaderboard format shows, and its notes: one place that turns a board into what is shown.

Ranked entries first (ties named, the audit's accuracy beside the accuracy), then the results set
apart under their label, then the documents that cannot be trusted; a note shared by several rows
can be said once, as a numbered footnote (``footnoted``).
"""

from __future__ import annotations

import re
from pathlib import PurePath

from evaluator.report.board_entry import BoardEntry, Untrusted
from evaluator.report.leaderboard import UNAUDITED_NOTE, Leaderboard
from evaluator.report.prizes import UNCHECKED_UNSEEN, UNCHECKED_UNSEEN_NOTE

COLUMNS = ("category", "rank", "name", "accuracy_pct", "audit_pct", "energy_kj", "energy_kj_low", "energy_kj_high",
           "runs", "j_per_image", "images_per_s", "model_mb", "tied_with", "note")
Boards = dict[str, Leaderboard]  # section title ("" for a single board) -> board


def _kj(joules: float | None) -> float | None:
    return None if joules is None else round(joules / 1000, 4)


UNOFFICIAL = "unofficial data"  # said in the category of a result not scored on the official test set


def _category(entry: BoardEntry, label: str) -> str:
    """A category reached (or not: unranked) on data other than the official test set says so."""
    data = entry.result.data
    reached = label.startswith(">=") or label == "unranked"
    return f"{label} ({UNOFFICIAL})" if reached and data is not None and not data.official else label


def _row(entry: BoardEntry, category: str, note: str = "") -> dict[str, object]:
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


def _apart_note(label: str, entry: BoardEntry) -> str:
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


def public_note(entry: BoardEntry) -> str:
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


def text(value: object) -> str:
    return "" if value is None else str(value)


def titled(boards: Boards) -> list[tuple[str, Leaderboard]]:
    return [(title, board) for title, board in boards.items()]
