"""The JSON API: everything the pages show, for ``edl submit``, curl and scripts; ``Authorization: Bearer TOKEN``.

A team's token reads and changes only that team's submissions (another team's are the same 404 as none);
the organiser's token reaches the organiser's endpoints. Nothing here ever answers with a path of the
organiser's machine, a secret or a key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi import Path as PathParameter
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from evaluator.errors import EdlError
from evaluator.report.result import RESULT_NAME
from evaluator.serve.auth import UNKNOWN_TOKEN, bearer_token
from evaluator.serve.store import Submission, Team
from evaluator.serve.uploads import declared_length, receive_form
from evaluator.serve.web import DESCRIPTION_FIELD, MODEL_FIELD, Refused, Verdict, Web

router = APIRouter(prefix="/api")


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 401, 404, 409, 411, 413,
                                                                                  415, 422, 429)}


class SubmissionOut(BaseModel):
    id: int
    name: str = Field(description="the name it is scored and ranked under")
    state: str
    message: str = Field(description="the state in words: 'queued, position N', or every problem")
    queue_position: int | None = None
    sha256: str
    size: int
    times: dict[str, str]
    reason: str | None = None
    fault: str | None = None
    problems: list[str] = []
    warnings: list[str] = []
    chosen: bool = False
    held: bool = Field(default=False, description="the same file as another team's: held for the organiser's review, "
                       "no figures shown")


class ProgressOut(BaseModel):
    phase: str | None = None
    done_passes: int | None = None
    total_passes: int | None = None
    done_images: int | None = None
    total_images: int | None = None
    done_runs: int | None = None
    total_runs: int | None = None
    utc: str | None = None


class ResultOut(BaseModel):
    status: str
    accuracy: float | None = None
    category: float | None = None
    energy_j: float | None = None
    energy_j_interval: list[float] | None = None
    runs: int | None = None
    audit_verdict: str | None = None
    signed: bool = False
    reason: str = ""
    service_cpu_s: list[float | None] = Field(default=[], description="the web server's CPU seconds during each "
                                              "measured run (null: not known)")


class SubmissionDetail(SubmissionOut):
    log_tail: str | None = None
    progress: ProgressOut | None = None
    result: ResultOut | None = None
    history: list[list[str]] = []


class QuotaOut(BaseModel):
    used_today: int
    left_today: int
    used_total: int
    left_total: int
    waiting: int
    max_waiting: int


class MeOut(BaseModel):
    team: str
    quota: QuotaOut
    description: bool


class CompetitionOut(BaseModel):
    name: str
    phase: str
    deadline_utc: str
    board: str = Field(description="provisional or final")
    measuring: bool = Field(description="a measurement window is open: checks of new uploads wait")
    upload_max_bytes: int
    description_max_pages: int
    thresholds: list[float]


class DescriptionOut(BaseModel):
    accepted: bool
    problems: list[str]


class BoardOut(BaseModel):
    state: str
    board: dict[str, Any] | None = None
    note: str | None = None
    descriptions: list[str] = Field(default=[], description="links to the teams' descriptions, once published")


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def team_of(request: Request, authorization: Annotated[str | None, Header()] = None) -> Team:
    token = bearer_token(authorization)
    team = web_of(request).team_for(token)
    if team is None:
        raise Refused(UNKNOWN_TOKEN if token else "send your team's token as 'Authorization: Bearer TOKEN' (the "
                      "token the organiser gave you)", 401)
    return team


def organiser_of(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    if not web_of(request).is_organiser(bearer_token(authorization)):
        raise Refused("the organiser's token is needed (printed once by edl competition init)", 401)


TeamDep = Annotated[Team, Depends(team_of)]
# SQLite's integers: a larger id is a 422, never an overflow inside the store
SubmissionId = Annotated[int, PathParameter(ge=1, le=(1 << 63) - 1, description="the submission's number")]


def submission_out(verdict: Verdict) -> SubmissionOut:
    s = verdict.submission
    return SubmissionOut(id=s.id, name=s.name, state=s.state, message=verdict.message, queue_position=verdict.position,
                         sha256=s.sha256, size=s.size, times=s.times, reason=s.reason, fault=s.fault,
                         problems=verdict.problems, warnings=verdict.warnings, chosen=s.chosen,
                         held=verdict.held)


def detail_out(web: Web, submission: Submission) -> SubmissionDetail:
    verdict = web.verdict(submission)
    base = submission_out(verdict).model_dump()
    progress = None
    if submission.state == "scoring":
        p = web.store.latest_progress(submission.id)
        progress = ProgressOut(phase=p.phase, done_passes=p.done_passes, total_passes=p.total_passes,
                               done_images=p.done_images, total_images=p.total_images, done_runs=p.done_runs,
                               total_runs=p.total_runs, utc=p.utc)
    result = None if verdict.held else web.result_of(submission)
    summary = None
    if result is not None:
        energy = result.energy
        summary = ResultOut(status=result.status, accuracy=result.accuracy, category=result.category,
                            energy_j=energy.total_j if energy else None,
                            energy_j_interval=list(energy.total_j_interval) if energy and energy.total_j_interval
                            else None, runs=len(energy.repeats_j) if energy else None,
                            audit_verdict=result.audit.verdict if result.audit else None,
                            signed=result.signature is not None, reason=result.reason,
                            service_cpu_s=[run.fairness.service_cpu_s for run in result.runs])
    history = [[state, utc, web.public(detail) or ""] for state, utc, detail in web.store.history(submission.id)]
    return SubmissionDetail(**base, log_tail=verdict.submission.log_tail, progress=progress, result=summary,
                            history=history)


UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [MODEL_FIELD],
    "properties": {MODEL_FIELD: {"type": "string", "format": "binary"}}}}}}}
DESCRIPTION_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [DESCRIPTION_FIELD],
    "properties": {DESCRIPTION_FIELD: {"type": "string", "format": "binary"}}}}}}}


@router.get("/health")
def health() -> dict[str, bool]:
    return {"ok": True}


@router.get("/competition", response_model=CompetitionOut)
def competition(request: Request) -> CompetitionOut:
    web = web_of(request)
    settings = web.settings
    return CompetitionOut(name=settings.name, phase=web.phase(), deadline_utc=settings.deadline,
                          board=web.board_state(), measuring=web.store.window_open(),
                          upload_max_bytes=settings.upload_max_bytes,
                          description_max_pages=settings.description_max_pages, thresholds=list(settings.thresholds))


@router.get("/board", response_model=BoardOut)
def board(request: Request) -> Response:
    """The public board, as last rendered (never rendered for this request)."""
    return Response(web_of(request).board.json, media_type="application/json")


@router.get("/me", response_model=MeOut, responses=ERRORS)
def me(request: Request, team: TeamDep) -> MeOut:
    web = web_of(request)
    quota = web.store.quota(team)
    return MeOut(team=team.name, quota=QuotaOut(**vars(quota)), description=web.description_path(team).is_file())


@router.post("/submissions", response_model=SubmissionOut, responses=ERRORS, openapi_extra=UPLOAD_BODY)
async def submit(request: Request, team: TeamDep) -> SubmissionOut:
    """Upload a model (multipart field 'model'): answered with 'queued, position N' or every problem at once."""
    from starlette.concurrency import run_in_threadpool

    web = web_of(request)
    web.refuse_upload(team)
    parts = web.model_parts()
    declared_length(dict(request.headers), parts)
    form = await receive_form(request.headers.get("content-type", ""), request.stream(), web.staging, parts)
    verdict = await run_in_threadpool(web.accept, team, form.files.get(MODEL_FIELD))
    return submission_out(verdict)


@router.get("/submissions", response_model=list[SubmissionOut], responses=ERRORS)
def submissions(request: Request, team: TeamDep) -> list[SubmissionOut]:
    web = web_of(request)
    return [submission_out(web.verdict(s)) for s in web.store.submissions_of(team)]


@router.get("/submissions/{submission_id}", response_model=SubmissionDetail, responses=ERRORS)
def submission(request: Request, team: TeamDep, submission_id: SubmissionId) -> SubmissionDetail:
    web = web_of(request)
    return detail_out(web, web.own_submission(team, submission_id))


@router.get("/submissions/{submission_id}/result.json", responses=ERRORS)
def result_file(request: Request, team: TeamDep, submission_id: SubmissionId) -> FileResponse:
    """The signed result document, byte for byte (``edl verify`` checks it)."""
    web = web_of(request)
    verdict = web.verdict(web.own_submission(team, submission_id))
    folder = None if verdict.held else web.result_folder(verdict.submission)
    if folder is None or not (folder / RESULT_NAME).is_file():
        raise Refused(f"submission {submission_id} has no result yet", 404)
    return FileResponse(folder / RESULT_NAME, media_type="application/json", filename=f"{submission_id}-result.json")


@router.get("/submissions/{submission_id}/timeline.png", responses=ERRORS)
def timeline(request: Request, team: TeamDep, submission_id: SubmissionId) -> FileResponse:
    web = web_of(request)
    picture = web.timeline(web.own_submission(team, submission_id))
    if picture is None:
        raise Refused(f"submission {submission_id} has no timeline picture", 404)
    return FileResponse(picture, media_type="image/png")


@router.post("/submissions/{submission_id}/cancel", response_model=SubmissionOut, responses=ERRORS)
def cancel(request: Request, team: TeamDep, submission_id: SubmissionId) -> SubmissionOut:
    web = web_of(request)
    web.own_submission(team, submission_id)
    return submission_out(web.verdict(web.change(lambda: web.store.cancel(submission_id, team))))


@router.post("/submissions/{submission_id}/choose", response_model=SubmissionOut, responses=ERRORS)
def choose(request: Request, team: TeamDep, submission_id: SubmissionId) -> SubmissionOut:
    """The team's pick for the final scoring."""
    web = web_of(request)
    web.own_submission(team, submission_id)
    return submission_out(web.verdict(web.change(lambda: web.store.choose(submission_id, team))))


@router.put("/description", response_model=DescriptionOut, responses=ERRORS, openapi_extra=DESCRIPTION_BODY)
async def description(request: Request, team: TeamDep) -> DescriptionOut:
    """The team's method description (a PDF of at most the allowed pages); replaceable until the deadline."""
    from starlette.concurrency import run_in_threadpool

    web = web_of(request)
    web.refuse_description(team)
    parts = web.description_parts()
    declared_length(dict(request.headers), parts)
    form = await receive_form(request.headers.get("content-type", ""), request.stream(), web.staging, parts)
    outcome = await run_in_threadpool(web.accept_description, team, form.files.get(DESCRIPTION_FIELD))
    return DescriptionOut(accepted=outcome.valid, problems=outcome.problems)


class OrganiserSubmissionOut(SubmissionOut):
    team: str
    duplicate_of: int | None = Field(default=None, description="another team's submission of the same file")
    same_file_as: str | None = Field(default=None, description="that submission's name (team-number)")
    log_tail: str | None = None


class TeamOut(BaseModel):
    name: str
    added_utc: str
    revoked_utc: str | None = None
    quota: QuotaOut


class ActionIn(BaseModel):
    why: str = Field(default="", max_length=2000, description="the reason (a disqualification needs one)")


OrganiserDep = Annotated[None, Depends(organiser_of)]


@router.get("/organiser/submissions", response_model=list[OrganiserSubmissionOut], responses=ERRORS)
def organiser_submissions(request: Request, _: OrganiserDep) -> list[OrganiserSubmissionOut]:
    """Every submission of every team (the queue is those received, checked, queued or scoring)."""
    web = web_of(request)
    out = []
    for submission in web.store.all_submissions():
        verdict = web.verdict(submission)
        out.append(OrganiserSubmissionOut(**submission_out(verdict).model_dump(), team=submission.team,
                                          duplicate_of=submission.duplicate_of, same_file_as=verdict.same_file_as,
                                          log_tail=verdict.submission.log_tail))
    return out


@router.get("/organiser/teams", response_model=list[TeamOut], responses=ERRORS)
def organiser_teams(request: Request, _: OrganiserDep) -> list[TeamOut]:
    web = web_of(request)
    return [TeamOut(name=team.name, added_utc=team.added_utc, revoked_utc=team.revoked_utc,
                    quota=QuotaOut(**vars(web.store.quota(team)))) for team in web.store.list_teams()]


@router.get("/organiser/hosts", response_model=list[list[str]], responses=ERRORS)
def organiser_hosts(request: Request, _: OrganiserDep) -> list[list[str]]:
    """[host or worker, what it does]: the workers holding a lease now, then the hosts named in the results."""
    return [list(pair) for pair in web_of(request).hosts()]


@router.post("/organiser/submissions/{submission_id}/{action}", response_model=SubmissionOut, responses=ERRORS)
def organiser_action(request: Request, _: OrganiserDep, submission_id: SubmissionId, action: str,
                     body: ActionIn | None = None) -> SubmissionOut:
    """rerun, cancel, or disqualify (with ``why``: a review decision signed with the competition's key)."""
    web = web_of(request)
    try:
        submission = web.organiser_action(submission_id, action, body.why if body else "")
    except Refused:
        raise
    except EdlError as exc:
        raise Refused(str(exc), 409) from None
    return submission_out(web.verdict(web.store.submission(submission.id)))
