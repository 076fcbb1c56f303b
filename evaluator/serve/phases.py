"""The competition's phases: open -> frozen at the deadline -> final scoring -> published.

``open``: teams upload (within their quotas). ``frozen``: from the deadline on, uploads and new descriptions are
refused with the reason; what was queued before the deadline is still scored. ``final``: the organiser ran
``edl competition final``: each team's chosen submission (else its best scored one) is scored again with
``final_repeat`` runs into the final results root, ties rematched. ``published``: ``edl competition publish`` wrote
the final signed board and the descriptions are linked from it. The deadline decides ``frozen`` by the clock;
``final`` and ``published`` are marks the organiser's commands leave in the store.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from evaluator.serve.settings import CompetitionSettings
from evaluator.serve.store import Store, Team

Phase = Literal["open", "frozen", "final", "published"]
PHASES: tuple[Phase, ...] = ("open", "frozen", "final", "published")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def phase(settings: CompetitionSettings, store: Store, now: dt.datetime | None = None) -> Phase:
    """Where the competition stands at ``now`` (default: now)."""
    mark = store.phase_mark()
    if mark == "published":
        return "published"
    if mark == "final":
        return "final"
    moment = now or dt.datetime.fromtimestamp(store.clock(), dt.timezone.utc)
    return "open" if moment < settings.deadline_utc() else "frozen"


def phase_words(current: Phase, settings: CompetitionSettings) -> str:
    """The phase as a page says it."""
    deadline = settings.deadline_utc().strftime("%Y-%m-%d %H:%M UTC")
    return {"open": f"open until {deadline}: the board is provisional",
            "frozen": f"closed at {deadline}: the final scoring follows; the board is provisional",
            "final": "final scoring under way: the board is provisional until it is published",
            "published": "final: the board is published"}[current]


def refuse_upload_reason(settings: CompetitionSettings, store: Store, team: Team,
                         now: dt.datetime | None = None) -> str | None:
    """Why ``team`` cannot upload a model now (the phase, its revoked token, its quota), or None: the web app
    asks before it streams an upload; ``Store.mark_checked`` enforces the quota again when the check is done."""
    if team.organiser:
        return "the organiser's token cannot submit; sign in with a team's token"
    if team.revoked_utc is not None:
        return "this team's token was revoked; ask the organiser"
    current = phase(settings, store, now)
    if current != "open":
        return f"uploads are closed: the competition {phase_words(current, settings)}"
    return store.quota(team).refusal()


def refuse_description_reason(settings: CompetitionSettings, store: Store, team: Team,
                              now: dt.datetime | None = None) -> str | None:
    """Why ``team`` cannot upload or replace its description now, or None (replaceable until the deadline)."""
    if team.organiser or team.revoked_utc is not None:
        return "sign in with a team's token to upload its description"
    current = phase(settings, store, now)
    if current != "open":
        return f"descriptions can no longer be replaced: the competition {phase_words(current, settings)}"
    return None
