"""The last two phases: the final scoring (``edl competition final``) and the publication (``edl competition
publish``).

Final scoring: once the deadline has passed and the queue is empty, each team's chosen submission (else its best:
the highest category reached, then the fewest joules, then the most accurate) is scored again, all teams in one
``score-dir`` batch with ``final_repeat`` interleaved runs each, into the final results root (one folder per team,
named by the team). Teams the board then shows tied get a rematch: ``final_repeat`` more runs each, interleaved
(``--rematch``). Publication ranks the final results root (signed by the competition's key only), writes the board
as JSON and HTML under ``published/``, signs the JSON's bytes, and marks the competition published: the web app then
shows that board as final and links the descriptions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from evaluator.batch.outroot import read_or_none
from evaluator.config import BatchConfig
from evaluator.errors import EdlError, UsageError
from evaluator.report import render
from evaluator.report.batch_record import BatchSummary
from evaluator.report.leaderboard import Leaderboard
from evaluator.report.records import Signature
from evaluator.report.result import RESULT_NAME, Result
from evaluator.report.signing import bytes_signature_problem, load_private, load_public, sign_bytes
from evaluator.serve.board import rank_results
from evaluator.serve.phases import phase
from evaluator.serve.recorder import score_folder
from evaluator.serve.settings import Competition
from evaluator.serve.store import Store, Submission
from evaluator.serve.window import LeaseKeeper, RunWindows, WindowFlag, record_service_cpu
from evaluator.typedjson import from_json, to_json

FINAL_MODELS = "final_models"
BOARD_JSON, BOARD_HTML, BOARD_SIGNATURE = "board.json", "board.html", "board.json.sig"
BOARD_CONTEXT = b"edl-final-board-v1\n"  # a board's signature can never pass for a result's or a decision's


@dataclass(frozen=True)
class Finalist:
    team: str
    submission: Submission
    why: str  # "chosen" or "best"


@dataclass(frozen=True)
class FinalOutcome:
    finalists: list[Finalist]
    summary: BatchSummary
    rematched: tuple[str, ...]


def _best_key(result: Result) -> tuple[float, float, float]:
    return (-(result.category or 0.0), result.total_j if result.total_j is not None else float("inf"),
            -(result.accuracy or 0.0))


def finalists(competition: Competition, store: Store) -> list[Finalist]:
    """Each team's chosen scored submission, else its best scored one; teams with none are left out."""
    chosen = []
    for team in store.list_teams():
        scored = [s for s in store.submissions_of(team) if s.state == "scored" and s.result_folder]
        picked = next((s for s in scored if s.chosen), None)
        if picked is not None:
            chosen.append(Finalist(team.name, picked, "chosen"))
            continue
        readable = [(result, s) for s in scored
                    if (result := read_or_none(competition.results / str(s.result_folder) / RESULT_NAME)) is not None
                    and result.scored]
        if readable:
            chosen.append(Finalist(team.name, min(readable, key=lambda pair: _best_key(pair[0]))[1], "best"))
    return chosen


def _refusal(competition: Competition, store: Store) -> str | None:
    current = phase(competition.settings, store)
    if current == "open":
        return f"the deadline ({competition.settings.deadline}) has not passed: the final scoring starts after it"
    if current == "published":
        return "the competition is published already: its final board stands"
    waiting = store.all_submissions("queued") + store.all_submissions("scoring")
    if waiting:
        return f"{len(waiting)} submission(s) still wait or score; let edl serve's worker finish them first"
    return None


def _place(competition: Competition, chosen: list[Finalist]) -> Path:
    folder = competition.root / FINAL_MODELS
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for finalist in chosen:
        target = folder / f"{finalist.team}.onnx"
        try:
            os.link(finalist.submission.path, target)
        except OSError:
            shutil.copyfile(finalist.submission.path, target)
    return folder


def final_board(competition: Competition) -> Leaderboard:
    """The final results ranked as the web board (and ``edl leaderboard --public-key``) ranks them."""
    return rank_results(competition.final_results, competition)


def final_scoring(competition: Competition, store: Store) -> FinalOutcome:
    """Score every team's final submission again with the final repeats; rematch the ties."""
    if (refusal := _refusal(competition, store)) is not None:
        raise UsageError(f"edl competition final: {refusal}")
    chosen = finalists(competition, store)
    if not chosen:
        raise UsageError("edl competition final: no team has a scored submission; nothing to score")
    store.set_phase_mark("final")
    settings = competition.settings
    models = _place(competition, chosen)
    summary = _score_final(competition, store, models, settings.batch)
    tied = tuple(sorted({entry.name for entry in final_board(competition).ranked if entry.tied_with}))
    if tied:
        summary = _score_final(competition, store, models, dataclasses.replace(settings.batch, rematch=tied))
    return FinalOutcome(chosen, summary, tied)


def _score_final(competition: Competition, store: Store, models: Path, batch: BatchConfig) -> BatchSummary:
    """One final batch, the window flag open in each run's metered windows, the web server's CPU time over them recorded
    in each run measured."""
    settings, secrets = competition.settings, competition.secrets()
    config = dataclasses.replace(settings.score, repeat=settings.final_repeat)
    flag = WindowFlag(store, "final scoring", settings.lease_s)
    windows = RunWindows(store.server_pid(), flag, whole_runs=batch.backend == "ray")
    try:
        with LeaseKeeper(store, "final scoring", settings.lease_s, flag=flag):
            summary = score_folder(models, competition.final_results, config, batch, secrets, windows.observe)
    finally:
        windows.end()
    key = load_private(secrets.signing_key) if secrets.signing_key is not None else None
    for item in summary.submissions:
        if item.outcome == "scored":
            record_service_cpu(competition.final_results / item.name / RESULT_NAME, item.name, item.runs, windows,
                               key)
    return summary


def board_signature_problem(folder: Path, public_key_path: Path) -> str:
    """Why ``folder``'s board.json is not signed by the key (\"\" when it is): how a reader checks the board."""
    try:
        record = from_json(Signature, json.loads((folder / BOARD_SIGNATURE).read_text()))
    except (OSError, ValueError, EdlError) as exc:
        return f"no readable signature beside the board ({exc})"
    return bytes_signature_problem((folder / BOARD_JSON).read_bytes(), record, load_public(public_key_path),
                                   BOARD_CONTEXT, "board")


def publish(competition: Competition, store: Store) -> Path:
    """The final board written under ``published/`` (JSON signed with the competition's key, and HTML); the
    competition marked published. Returns the folder."""
    current = phase(competition.settings, store)
    if current != "final":
        raise UsageError(f"edl competition publish: the competition is {current}; run edl competition final first"
                         if current != "published" else "edl competition publish: published already")
    board = final_board(competition)
    if not board.ranked and not any(entries for _, entries in board.apart()):
        raise UsageError(f"edl competition publish: no final result in {competition.final_results}; run edl "
                         "competition final again")
    folder = competition.published
    folder.mkdir(exist_ok=True)
    body = render.render(board, "json").encode()
    (folder / BOARD_JSON).write_bytes(body)
    (folder / BOARD_HTML).write_text(render.render(board, "html"))
    key_path = competition.secrets().signing_key
    if key_path is not None:
        signature = sign_bytes(body, load_private(key_path), BOARD_CONTEXT)
        (folder / BOARD_SIGNATURE).write_text(json.dumps(to_json(signature), indent=2) + "\n")
    store.set_phase_mark("published")
    return folder
