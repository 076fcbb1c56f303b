"""``edl serve DIR`` (the web app and its scoring worker) and ``edl submit MODEL --server URL --token T``."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer

from evaluator.cli.console import error, note, say, warn
from evaluator.errors import EdlError, UsageError


def _start_worker(directory: Path) -> subprocess.Popen[bytes]:
    """The scoring worker as its own process, watching this server's pid (its CPU time is recorded per window)."""
    from evaluator.serve.worker import start_worker_process

    process = start_worker_process(directory)
    note(f"scoring worker started (pid {process.pid}); its log: {directory / 'logs' / 'worker.log'}")
    return process


def _check_free(host: str, port: int) -> None:
    """A port already taken (another edl serve?) is a usage error in one line, before the worker starts."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); choose another --port, "
                         "or stop what uses it") from None


def serve(
    directory: Annotated[Path, typer.Argument(help="The competition's folder (edl competition init made it)",
                                              metavar="DIR")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface)", metavar="HOST")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on", metavar="PORT", min=1, max=65535)] = 8000,
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Start the scoring worker beside the web app "
                                         "(--no-worker: the web app alone, e.g. off the GPU hosts with Ray)",
                                         metavar="")] = True,
) -> None:
    """Serve a competition: the board, the teams' pages and uploads, the organiser's page, the JSON API."""
    try:
        import uvicorn

        from evaluator.serve.app import create_app
    except ImportError as exc:
        raise UsageError(f"edl serve needs the serve extra ({exc.name} is missing): pip install 'edl-evaluator[serve]'"
                         ) from None
    from evaluator.serve.competition import hold_lock, refuse_incomparable_results
    from evaluator.serve.worker import worker_id_of

    app = create_app(directory)  # a broken settings file is refused here, before anything starts
    competition = app.state.web.competition
    lock = hold_lock(competition, "serve")  # held while serving: a second edl serve on DIR is refused
    refuse_incomparable_results(competition)
    _check_free(host, port)
    scoring = _start_worker(directory) if worker else None
    say(f"serving {app.state.web.settings.name!r} on http://{host}:{port}/ (API: /api/docs)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)
    finally:
        if scoring is not None:
            scoring.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                scoring.wait(timeout=30)
            if scoring.poll() is None:
                scoring.kill()
            for submission in app.state.web.store.put_back_by(worker_id_of(scoring.pid)):
                say(f"submission {submission.id} ({submission.name}) was being scored: it is back in the queue, "
                    "first in line, and is scored again at the next edl serve")
        lock.close()


def _answer(response: Any) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = {"detail": response.text[:200]}
    if response.status_code >= 400:
        detail = document.get("detail", "refused") if isinstance(document, dict) else "refused"
        raise (UsageError if response.status_code < 500 else EdlError)(f"the server refused ({response.status_code}): "
                                                                       f"{detail}")
    assert isinstance(document, dict)
    return document


def _post_file(url: str, token: str, field: str, path: Path, method: str) -> dict[str, Any]:
    import httpx

    if not path.is_file():
        raise UsageError(f"{path}: no such file; give the path of the file to upload")
    try:
        with path.open("rb") as handle:  # streamed from the file, never read whole
            response = httpx.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                     files={field: (path.name, handle)}, timeout=600)
    except httpx.HTTPError as exc:
        raise EdlError(f"cannot reach {url} ({type(exc).__name__}: {exc}); check --server") from None
    return _answer(response)


CHECK_POLL_S = 2.0  # how often edl submit asks whether a held upload has been checked


def _get(url: str, token: str) -> dict[str, Any]:
    import httpx

    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    except httpx.HTTPError as exc:
        raise EdlError(f"cannot reach {url} ({type(exc).__name__}: {exc}); check --server") from None
    return _answer(response)


def _await_check(base: str, token: str, document: dict[str, Any], wait_s: float) -> dict[str, Any]:
    """An upload only received (its check waits for the measurement in progress) polled until it is checked, at most
    ``wait_s`` seconds; the latest answer."""
    import time

    if document["state"] not in ("received", "checked"):
        return document
    say(f"submission {document['id']} ({document['name']}): {document['message']}; waiting up to {wait_s:g} s")
    deadline = time.monotonic() + wait_s
    while document["state"] in ("received", "checked") and time.monotonic() < deadline:
        time.sleep(min(CHECK_POLL_S, max(0.0, deadline - time.monotonic())))
        document = _get(f"{base}/api/submissions/{document['id']}", token)
    return document


def submit(
    model: Annotated[Path, typer.Argument(help="The .onnx submission", metavar="MODEL")],
    server: Annotated[str, typer.Option(help="The competition's address (http://host:port)", metavar="URL",
                                        envvar="EDL_SERVER")],
    token: Annotated[str, typer.Option(help="Your team's token", metavar="TOKEN", envvar="EDL_TOKEN")],
    description: Annotated[Path | None, typer.Option(help="Your method's description (PDF, at most two pages)",
                                                     metavar="PDF")] = None,
    wait_s: Annotated[float, typer.Option(help="An upload whose check waits for a measurement in progress: wait "
                                          "this long (s) for its verdict", metavar="SECONDS", min=0)] = 300.0,
) -> None:
    """Upload a submission to a competition served by edl serve; prints 'queued, position N' or every problem."""
    base = server.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--server {server!r}: give the address with its scheme, e.g. http://host:8000")
    if description is not None:
        outcome = _post_file(f"{base}/api/description", token, "description", description, "PUT")
        if not outcome.get("accepted"):
            for problem in outcome.get("problems", []):
                error(f"description: {problem}")
            raise typer.Exit(2)
        say("description accepted")
    document = _await_check(base, token, _post_file(f"{base}/api/submissions", token, "model", model, "POST"), wait_s)
    for problem in document.get("problems", []):
        error(problem)
    for warning in document.get("warnings", []):
        warn(warning)
    if document["state"] == "failed":
        if not document.get("problems"):
            error(document["message"])
        say(f"submission {document['id']} ({document['name']}): failed; fix the problems above and upload again")
        raise typer.Exit(2)
    if document["state"] in ("received", "checked"):
        warn(f"submission {document['id']} ({document['name']}): still not checked after {wait_s:g} s (a "
             "measurement is in progress); its verdict will be on the team page")
    else:
        say(f"submission {document['id']} ({document['name']}): {document['message']}")
    note(f"follow it on {base}/team or GET {base}/api/submissions/{document['id']}")
