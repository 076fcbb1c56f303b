"""The web app: ``create_app(competition_dir)`` is what ``edl serve`` hands to uvicorn.

Every request first passes a per-client rate limit (a pure ASGI layer, so a refused request costs a
dictionary lookup and a short 429, nothing more), then the JSON API (``/api``) or the pages. The
library's refusals become answers with their status and one line; nothing else is caught here, so a
bug is a 500 the schemathesis run would find, never a silent success.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from evaluator import __version__
from evaluator.serve import api, pages
from evaluator.serve.auth import bearer_token
from evaluator.serve.uploads import UploadError
from evaluator.serve.web import Refused, Web, WebLimits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WRITES = ("/api/submissions", "/api/description", "/team/", "/organiser/")
REFUSAL_DELAY_S = 0.5  # a refused request is answered after this: a flood over one connection becomes 2 a second


def _kind(method: str, path: str) -> str:
    if path == "/signin" and method == "POST":
        return "signin"
    if method in ("POST", "PUT") and path.startswith(WRITES):
        return "write"
    return "read"


def _client(scope: Scope) -> str:
    """A team's token (hashed) when it sends one, so teams behind one address keep their own allowance; else the
    client's address."""
    headers = dict(scope.get("headers") or [])
    token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    client = scope.get("client")
    return "addr:" + (client[0] if client else "?")


class RateLimited:
    """The per-client limits, before anything else runs; a refusal waits a moment (asleep, costing nothing)."""

    def __init__(self, app: ASGIApp, web: Web) -> None:
        self.app, self.web = app, web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = _kind(scope["method"], scope["path"])
        limiter = self.web.rates[kind]
        if limiter.allow(_client(scope), kind):
            await self.app(scope, receive, send)
            return
        await asyncio.sleep(REFUSAL_DELAY_S)  # a flooder waiting for its answers is slowed at no CPU cost
        body = b'{"detail":"too many requests from this client; slow down and try again shortly"}'
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(limiter.retry_after_s()).encode())]})
        await send({"type": "http.response.body", "body": body})


def _refusal(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api"):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    return pages.error_page(request, status, message)


def create_app(competition_dir: Path, limits: WebLimits | None = None, background: bool = True) -> FastAPI:
    """The service's web app over the competition in ``competition_dir``; ``background`` starts its checker and
    board renderer with the app (tests may drive them by hand)."""
    web = Web(Path(competition_dir), limits)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if background:
            web.start()
        else:
            web.board.refresh(web.board_state())
        yield
        web.stop()

    app = FastAPI(title=f"edl serve: {web.settings.name}", version=__version__, lifespan=lifespan,
                  docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    app.state.web = web
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return _refusal(request, exc.status, str(exc))

    @app.exception_handler(UploadError)
    async def upload_refused(request: Request, exc: UploadError) -> Response:
        response = _refusal(request, exc.status, str(exc))
        response.headers["connection"] = "close"  # the rest of the body is never read
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _refusal(request, 422, f"{where}: {first.get('msg', 'invalid request')}")

    app.add_middleware(RateLimited, web=web)
    return app
