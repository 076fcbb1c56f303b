"""The public board, rendered ahead of any request (HTML and JSON) from the existing leaderboard: a request for it
never renders, so a flood of readers adds no work to a measurement window."""

from __future__ import annotations

import threading
from pathlib import Path

from evaluator.errors import EdlError
from evaluator.report.leaderboard import Leaderboard
from evaluator.report.result import RESULT_NAME
from evaluator.report.signing import Ed25519PublicKey
from evaluator.serve.settings import Competition


class Board:
    """The public board, rendered ahead of any request: HTML and JSON, re-rendered when results change."""

    def __init__(self, competition: Competition) -> None:
        self.competition = competition
        self.html, self.json, self._signature = "", "{}", ""
        self._lock = threading.Lock()

    def _results_root(self, final: bool) -> Path:
        final_root = self.competition.final_results
        return final_root if final and final_root.is_dir() and any(final_root.glob(f"*/{RESULT_NAME}")) \
            else self.competition.results

    def _signature_of(self, root: Path, state: str) -> str:
        stamps = []
        for path in sorted(root.glob(f"*/{RESULT_NAME}")) + sorted(root.glob("*/review/*.json")):
            try:
                stamps.append(f"{path}:{path.stat().st_mtime_ns}")
            except OSError:
                continue
        return state + "|" + "|".join(stamps)

    def refresh(self, state: str) -> bool:
        """Render again if the results (or the board's state) changed; True when it did."""
        root = self._results_root(state == "final")
        described = sorted(path.stem for path in self.competition.descriptions.glob("*.pdf")) if state == "final" \
            else []
        signature = self._signature_of(root, state) + "|" + ",".join(described)
        if signature == self._signature:
            return False
        html_text, json_text = render_board(root, self.competition, state, described)
        with self._lock:
            self.html, self.json, self._signature = html_text, json_text, signature
        return True


def render_board(root: Path, competition: Competition, state: str, described: list[str]) -> tuple[str, str]:
    """The existing leaderboard (evaluator.report) over ``root``: its HTML page and its JSON; a final board links
    the descriptions of the teams in ``described``."""
    import json

    from evaluator.report import render

    title = f"{competition.settings.name}: {state} board"
    links = "".join(f"<li><a href='/descriptions/{_escape(team)}.pdf'>{_escape(team)}</a></li>" for team in described)
    listing = f"<h2>The teams' descriptions</h2><ul id='descriptions'>{links}</ul>" if links else ""
    descriptions = [f"/descriptions/{team}.pdf" for team in described]
    try:
        board = rank_results(root, competition)
    except EdlError as exc:  # no result yet, or results that cannot be ranked together: the board says so
        note = str(exc).replace(str(root), "results")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
                f"<h1>{title}</h1><p id='board-note'>{_escape(note)}</p>{listing}</body></html>",
                json.dumps({"state": state, "board": None, "note": note, "descriptions": descriptions}))
    page = render.render_html({"": board}, title)
    page = page.replace("<body>\n", f"<body>\n<nav><a href='/signin'>Sign in</a> · <a href='/team'>Your team</a>"
                        f"</nav><p id='board-state' class='{state}'>This board is {state}.</p>\n", 1)
    page = page.replace("</body>", f"{listing}</body>", 1)
    document = json.loads(render.render_json({"": board}))
    return page, json.dumps({"state": state, "board": document, "descriptions": descriptions})


def rank_results(root: Path, competition: Competition) -> Leaderboard:
    """``root`` ranked as ``edl leaderboard ROOT --public-key KEY`` ranks it (a prize board: only results signed by
    the competition's key, only those checked on unseen images unless ``allow_unchecked_unseen``): the web board
    and the final board both rank through here, so they never disagree with the CLI."""
    from evaluator.report.leaderboard import load_results, rank
    from evaluator.report.prizes import requires_unseen

    settings = competition.settings
    public = organiser_public_key(competition)
    return rank(load_results(root, public), settings.thresholds, allow_unaudited=settings.score.audit.off,
                require_unseen=requires_unseen(public is not None, settings.allow_unchecked_unseen))


def organiser_public_key(competition: Competition) -> Ed25519PublicKey | None:
    """The public half of the competition's signing key: the board ranks only results it signed."""
    from evaluator.report.signing import PUBLIC_NAME, load_public

    private = competition.secrets().signing_key
    public = private.parent / PUBLIC_NAME if private is not None else None
    return load_public(public) if public is not None and public.is_file() else None


def _escape(text: str) -> str:
    import html

    return html.escape(text)
