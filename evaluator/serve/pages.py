"""The pages: server-rendered HTML (Jinja2), no build step. Sign-in with a token, a session cookie, CSRF tokens.

The board is what the renderer made last (never rendered for a request). A team's page and the
organiser's page are rendered from the store and the results on each visit; every form carries the
session's CSRF token, and the session cookie is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from evaluator.errors import EdlError
from evaluator.serve.api import SubmissionId
from evaluator.serve.auth import (
    ORGANISER,
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    UNKNOWN_TOKEN,
    Session,
    same_secret,
)
from evaluator.serve.store import Submission, Team
from evaluator.serve.uploads import declared_length, receive_form
from evaluator.serve.web import DESCRIPTION_FIELD, MODEL_FIELD, Refused, Web

router = APIRouter(include_in_schema=False)
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                               autoescape=True, undefined=jinja2.StrictUndefined)
SMALL_FORM_BYTES = 8192
CSRF_REFUSED = "the form's security token is missing or stale (a page older than your session, or a request made " \
               "by another site); reload the page and send the form again"


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    web = web_of(request)
    context = {"competition": web.settings.name, "phase": web.phase_words(), "deadline": web.settings.deadline,
               "who": session_of(request), "message": "", "problems": [], "title": ""} | values
    return HTMLResponse(TEMPLATES.get_template(template).render(**context), status_code=status,
                        headers={"cache-control": "no-store"})


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status, title=f"Refused ({status})", problems=[message])


def session_of(request: Request) -> Session | None:
    return web_of(request).sessions.get(request.cookies.get(SESSION_COOKIE))


def team_session(request: Request) -> tuple[Session, Team]:
    session = session_of(request)
    team = web_of(request).current_team(session.subject) if session and session.kind == "team" else None
    if session is None or team is None:
        raise Refused("sign in with your team's token first (/signin)", 401)
    return session, team


def organiser_session(request: Request) -> Session:
    session = session_of(request)
    if session is None or session.kind != ORGANISER:
        raise Refused("sign in with the organiser's token first (/signin)", 401)
    return session


async def small_form(request: Request) -> dict[str, str]:
    """A short url-encoded form, read up to a few kilobytes (never a whole body of any size)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > SMALL_FORM_BYTES:
            raise Refused("the form is too large", 413)
    parsed = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=16)
    return {key: values[0] for key, values in parsed.items()}


def require_csrf(session: Session, given: str | None) -> None:
    if not same_secret(given, session.csrf):
        raise Refused(CSRF_REFUSED, 403)


def back_to(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


@router.get("/", response_class=HTMLResponse)
def board(request: Request) -> HTMLResponse:
    return HTMLResponse(web_of(request).board.html)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request) -> HTMLResponse:
    import secrets

    nonce = secrets.token_urlsafe(24)
    response = render(request, "signin.html", title="Sign in", signin_csrf=nonce)
    response.set_cookie(PRESESSION_COOKIE, nonce, httponly=True, samesite="strict", max_age=3600)
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await small_form(request)
    if not same_secret(form.get("csrf"), request.cookies.get(PRESESSION_COOKIE)):
        raise Refused(CSRF_REFUSED, 403)
    web, token = web_of(request), form.get("token", "").strip()
    team = web.team_for(token)
    if team is not None:
        session_id, _ = web.sessions.open("team", team.name)
        target = "/team"
    elif web.is_organiser(token):
        session_id, _ = web.sessions.open(ORGANISER, ORGANISER)
        target = "/organiser"
    else:
        return render(request, "error.html", 401, title="Sign in refused",
                      problems=[UNKNOWN_TOKEN])
    response = back_to(target)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=int(web.sessions.lifetime_s))
    response.delete_cookie(PRESESSION_COOKIE)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    session = session_of(request)
    if session is not None:
        require_csrf(session, (await small_form(request)).get("csrf"))
        web_of(request).sessions.close(request.cookies.get(SESSION_COOKIE))
    response = back_to("/")
    response.delete_cookie(SESSION_COOKIE)
    return response


@dataclass(frozen=True)
class Row:
    """One submission as the team's page shows it."""

    submission: Submission
    message: str
    position: int | None
    detail: Any  # api.SubmissionDetail
    same_file_as: str | None = None  # another team's submission of the same bytes
    rerunnable: bool = False  # the organiser's Re-run would be taken


def _rows(web: Web, submissions: list[Submission]) -> list[Row]:
    from evaluator.serve.api import detail_out

    rows = []
    for submission in reversed(submissions):
        verdict = web.verdict(submission)
        rows.append(Row(verdict.submission, verdict.message, verdict.position, detail_out(web, submission),
                        verdict.same_file_as, verdict.rerunnable))
    return rows


@router.get("/team", response_class=HTMLResponse)
def team_page(request: Request, sub: int | None = None, note: str = "") -> HTMLResponse:
    session, team = team_session(request)
    web = web_of(request)
    rows = _rows(web, web.store.submissions_of(team))
    message = next((row.message for row in rows if row.submission.id == sub), "")
    busy = any(row.submission.state in ("received", "queued", "scoring") for row in rows)
    return render(request, "team.html", title=f"Team {team.name}", rows=rows, quota=web.store.quota(team),
                  has_description=web.description_path(team).is_file(), csrf=session.csrf, refresh=busy,
                  message=message or {"description": "description accepted"}.get(note, ""),
                  max_bytes=web.settings.upload_max_bytes, max_pages=web.settings.description_max_pages)


@router.post("/team/upload")
async def team_upload(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    session, team = team_session(request)
    web = web_of(request)
    web.refuse_upload(team)
    parts = web.model_parts()
    declared_length(dict(request.headers), parts)
    form = await receive_form(request.headers.get("content-type", ""), request.stream(), web.staging, parts)
    if not same_secret(form.fields.get("csrf"), session.csrf):
        form.discard()
        raise Refused(CSRF_REFUSED, 403)
    verdict = await run_in_threadpool(web.accept, team, form.files.get(MODEL_FIELD))
    return back_to(f"/team?sub={verdict.submission.id}")


@router.post("/team/description")
async def team_description(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    session, team = team_session(request)
    web = web_of(request)
    parts = web.description_parts()
    declared_length(dict(request.headers), parts)
    form = await receive_form(request.headers.get("content-type", ""), request.stream(), web.staging, parts)
    if not same_secret(form.fields.get("csrf"), session.csrf):
        form.discard()
        raise Refused(CSRF_REFUSED, 403)
    outcome = await run_in_threadpool(web.accept_description, team, form.files.get(DESCRIPTION_FIELD))
    if not outcome.valid:
        return error_page(request, 400, "description refused: " + "; ".join(outcome.problems))
    return back_to("/team?note=description")


@router.post("/team/submissions/{submission_id}/{action}")
async def team_action(request: Request, submission_id: SubmissionId, action: str) -> Response:
    session, team = team_session(request)
    require_csrf(session, (await small_form(request)).get("csrf"))
    web = web_of(request)
    web.own_submission(team, submission_id)
    actions = {"cancel": lambda: web.store.cancel(submission_id, team),
               "choose": lambda: web.store.choose(submission_id, team)}
    if action not in actions:
        raise Refused(f"no action {action!r}; use cancel or choose", 404)
    web.change(actions[action])
    return back_to(f"/team?sub={submission_id}")


@router.get("/team/submissions/{submission_id}/result.json")
def team_result(request: Request, submission_id: SubmissionId) -> FileResponse:
    from evaluator.report.result import RESULT_NAME

    _, team = team_session(request)
    web = web_of(request)
    folder = web.result_folder(web.own_submission(team, submission_id))
    if folder is None or not (folder / RESULT_NAME).is_file():
        raise Refused(f"submission {submission_id} has no result yet", 404)
    return FileResponse(folder / RESULT_NAME, media_type="application/json", filename=f"{submission_id}-result.json")


@router.get("/team/submissions/{submission_id}/timeline.png")
def team_timeline(request: Request, submission_id: SubmissionId) -> FileResponse:
    _, team = team_session(request)
    web = web_of(request)
    picture = web.timeline(web.own_submission(team, submission_id))
    if picture is None:
        raise Refused(f"submission {submission_id} has no timeline picture", 404)
    return FileResponse(picture, media_type="image/png")


@router.get("/descriptions/{team_name}.pdf")
def description_file(request: Request, team_name: str) -> FileResponse:
    """A team's description: public once the board is published; before, only to the team and the organiser."""
    web = web_of(request)
    session = session_of(request)
    allowed = web.phase() == "published" or (session is not None and (
        session.kind == ORGANISER or session.subject == team_name))
    team = web.current_team(team_name) if allowed else None
    path = web.description_path(team) if team is not None else None
    if path is None or not path.is_file():
        raise Refused(f"no description of {team_name!r} to show", 404)
    return FileResponse(path, media_type="application/pdf")


@router.get("/organiser", response_class=HTMLResponse)
def organiser_page(request: Request) -> HTMLResponse:
    session = organiser_session(request)
    web = web_of(request)
    everything = web.store.all_submissions()
    waiting = [s for s in everything if s.state in ("received", "checked", "queued", "scoring")]
    teams = [(team, web.store.quota(team)) for team in web.store.list_teams()]
    return render(request, "organiser.html", title="Organiser", csrf=session.csrf, queue=_rows(web, waiting),
                  submissions=_rows(web, everything), teams=teams, hosts=web.hosts(),
                  measuring=web.store.window_open())


@router.post("/organiser/submissions/{submission_id}/{action}")
async def organiser_action(request: Request, submission_id: SubmissionId, action: str) -> Response:
    session = organiser_session(request)
    form = await small_form(request)
    require_csrf(session, form.get("csrf"))
    web = web_of(request)
    try:
        web.organiser_action(submission_id, action, form.get("why", ""))
    except EdlError as exc:
        if isinstance(exc, Refused):
            raise
        raise Refused(str(exc), 409) from None
    return back_to("/organiser")
