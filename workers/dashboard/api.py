"""The dashboard's JSON API. Run and queue reads are open; actions and the audit log need the bearer token.

Errors are always {"error": "<one line>"}: 404 unknown run, 409 the run's state forbids the action,
413 a body over PRESSROOM_MAX_REQUEST_BYTES, 422 a bad parameter (a run id that is not one, paging out of
bounds …), 401 no token, 403 a wrong token (or none configured: read-only), 503 run state unreachable.

Queue health is read from a snapshot one background thread keeps (workers.dashboard.queues): no request
waits on the broker. An authenticated caller's actions are audit entries; a request refused before
authentication is only counted (workers.dashboard.audit).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.pipeline import RunStatus, Step
from schemas.run import RunView
from workers import review
from workers.dashboard import audit
from workers.dashboard.queries import RunFilter, list_runs, matching_ids, run_detail
from workers.dashboard.queues import QueueMonitor
from workers.dashboard.reviews import post_of, review_detail, review_list
from workers.errors import PermanentError
from workers.metrics.collector import registry
from workers.operations import cancel, discard, retry, retry_all_failed
from workers.runtime import Runtime

log = logging.getLogger("pressroom.dashboard")
READ_ONLY = "read-only: set PRESSROOM_DASHBOARD_TOKEN to allow actions"
MAX_OFFSET = 1_000_000_000  # far past any real list; beyond it a 422, not Redis's "value is out of range"
RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # what new_run_id makes (20260131T120000-a1b2c3), and test ids
RUN_ID_RULE = "a run id is 1-100 letters, digits, '_', '.' or '-'"


class ParagraphText(BaseModel):
    translation: str = Field(min_length=1, max_length=20_000)


class FieldText(BaseModel):
    value: str = Field(min_length=1, max_length=2_000)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, " ".join(message.split()), headers


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _validation_line(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
    return one_line(f"{where or 'request'}: {first.get('msg', 'invalid')}")


def is_run_id(run_id: str) -> bool:
    return bool(RUN_ID.fullmatch(run_id)) and run_id not in {".", ".."}


def check_run_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise ApiError(422, f"run_id: {run_id[:120]!r} is not a run id ({RUN_ID_RULE})")
    return run_id


def valid_run_id(run_id: Annotated[str, Path(description=f"the run's id: {RUN_ID_RULE}")]) -> str:
    return check_run_id(run_id)


RunId = Annotated[str, Depends(valid_run_id)]


def run_filter(
    status: RunStatus | None = None,
    channel: Annotated[str | None, Query(max_length=100, description="channel id of watched runs")] = None,
    step: Annotated[Step | None, Query(description="the run's current (or failed) step")] = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601 or epoch seconds)")] = None,
    until: Annotated[datetime | None, Query(description="created at or before")] = None,
    q: Annotated[str | None, Query(max_length=200, description="text in the run id, video id or error")] = None,
) -> RunFilter:
    return RunFilter(status=status, channel=channel or None, step=step, q=q or None,
                     since=since.timestamp() if since else None, until=until.timestamp() if until else None)


def authorize(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's audit label ("operator") once their bearer token checks out. A refusal here is counted
    (per minute and reason), not logged: only authenticated callers make audit entries."""
    rt: Runtime = request.app.state.rt
    expected = rt.settings.dashboard_token.get_secret_value() if rt.settings.dashboard_token else None
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    if not expected:
        reason, error = "read_only", ApiError(403, READ_ONLY)
    elif not given:
        reason, error = "missing_token", ApiError(401, "missing token: send Authorization: Bearer "
                                                  "<PRESSROOM_DASHBOARD_TOKEN>", {"WWW-Authenticate": "Bearer"})
    elif not audit.token_matches(given, expected):
        reason, error = "wrong_token", ApiError(403, "wrong token: send the value of PRESSROOM_DASHBOARD_TOKEN")
    else:
        return audit.OPERATOR
    request.app.state.refusals.count(reason)
    raise error


Who = Annotated[str, Depends(authorize)]


class BodyLimit:
    """413 for a request body over `limit` bytes, before any endpoint sees the request: at once when its
    Content-Length says so, else once the bytes read pass it (a chunked body). A body within the limit is
    read whole first (at most `limit` bytes held) and handed on, so no action runs on a request that turns
    out too large, even one whose endpoint never reads its body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse({"error": f"request body over {self.limit} bytes: the limit is "
                                           "PRESSROOM_MAX_REQUEST_BYTES"}, status_code=413)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.limit):
            await too_large(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await too_large(scope, receive, send)
                return
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if handed:
                return await receive()  # after the body: the disconnect, when it comes
            handed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def create_api(app: Any, *, queue_interval: float = 5.0, queue_timeout: float = 2.0) -> FastAPI:
    """The API (and the HTML pages) over this Celery app's broker and run state. Queue facts are gathered
    every `queue_interval` seconds, each broker call bounded by `queue_timeout`."""
    rt: Runtime = app.pressroom
    refusals = audit.RefusalCounter(rt)
    monitor = QueueMonitor(app, rt, interval=queue_interval, timeout=queue_timeout, hooks=[refusals.flush])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            if moved := audit.migrate_legacy(rt):
                log.info("moved %d entries of the old audit list into the audit log", moved)
        except Exception as exc:  # the log's old shape is kept for next time; serving matters more
            log.warning("could not move the old audit list: %s", one_line(str(exc)))
        monitor.start()
        try:
            yield
        finally:
            monitor.stop()  # also flushes the refusal counts

    api = FastAPI(title="Pressroom dashboard", openapi_url="/api/openapi.json", docs_url="/api/docs",
                  redoc_url=None, lifespan=lifespan)
    api.state.rt, api.state.monitor, api.state.refusals = rt, monitor, refusals
    api.add_middleware(BodyLimit, limit=rt.settings.max_request_bytes)

    @api.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_line(exc)}, status_code=422)

    @api.exception_handler(HTTPException)
    def _http(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = f"no endpoint {request.method} {request.url.path}: see /api/docs"
        return JSONResponse({"error": one_line(message)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    import redis

    @api.exception_handler(redis.ConnectionError)
    @api.exception_handler(redis.TimeoutError)
    def _state_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": one_line(f"run state (Redis) unreachable: {exc}; try again shortly")},
                            status_code=503)

    @api.exception_handler(Exception)
    def _bug(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": one_line(f"internal error ({type(exc).__name__}): see the dashboard's log")},
                            status_code=500)

    def act(who: str, what: str, run_id: str | None, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run an action, audit its outcome, and turn a refusal into 404 (no such run) or 409."""
        try:
            result = action()
        except ApiError as exc:
            audit.record(rt, who=who, what=what, run_id=run_id, outcome=f"refused: {exc.message}")
            raise
        except PermanentError as exc:
            status = 404 if str(exc).startswith("no run ") else 409
            audit.record(rt, who=who, what=what, run_id=run_id, outcome=f"refused: {exc}")
            raise ApiError(status, str(exc)) from None
        audit.record(rt, who=who, what=what, run_id=run_id, outcome="ok")
        return result

    def existing(run_id: str) -> RunView:
        run = rt.state.view(run_id)
        if run is None:
            raise ApiError(404, f"no run {run_id!r}: check the run id")
        return run

    @api.get("/api/runs", summary="List runs, newest first")
    def get_runs(f: Annotated[RunFilter, Depends(run_filter)],
                 offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        return list_runs(rt, f, offset=offset, limit=limit)

    @api.get("/api/runs/{run_id}", summary="One run: steps, events, artifacts, post preview")
    def get_run(run_id: RunId) -> dict[str, Any]:
        detail = run_detail(rt, run_id)
        if detail is None:
            raise ApiError(404, f"no run {run_id!r}: check the run id")
        return detail

    @api.post("/api/runs/retry-failed", summary="Retry every failed run the filters select")
    def post_retry_failed(who: Who, f: Annotated[RunFilter, Depends(run_filter)]) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            return {"retried": retry_all_failed(app, rt, matching_ids(rt, f))}

        return act(who, "retry-failed", None, action)

    @api.post("/api/runs/{run_id}/retry", summary="Re-run from the failed step, or from from_step")
    def post_retry(run_id: RunId, who: Who, from_step: Step | None = None) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            existing(run_id)
            step = retry(app, rt, run_id, from_step)  # refuses a run something still carries on (409)
            run = existing(run_id)
            return {"id": run_id, "from_step": step.value, "generation": run.generation}

        return act(who, f"retry from {from_step.value if from_step else 'failed step'}", run_id, action)

    @api.post("/api/runs/{run_id}/cancel", summary="Cancel a queued or running run")
    def post_cancel(run_id: RunId, who: Who) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            existing(run_id)
            cancel(rt, run_id)
            return {"id": run_id, "status": "cancelled"}

        return act(who, "cancel", run_id, action)

    @api.delete("/api/runs/{run_id}", summary="Discard a finished run's state (its artifacts stay)")
    def delete_run(run_id: RunId, who: Who) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            existing(run_id)
            discard(rt, run_id)
            return {"id": run_id, "discarded": True}

        return act(who, "discard", run_id, action)

    # --- editorial review ---------------------------------------------------------------------------
    def reviewed(run_id: str, call: Callable[[], Any]) -> dict[str, Any]:
        try:
            call()
            return review_detail(rt, run_id)
        except PermanentError as exc:
            raise ApiError(404 if str(exc).startswith("no run ") else 409, str(exc)) from None

    @api.get("/api/reviews", summary="Finished posts, newest first, with their review state")
    def get_reviews(limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        return {"posts": review_list(rt, limit)}

    @api.get("/api/runs/{run_id}/review", summary="A post as its editor sees it: Chinese beside English")
    def get_review(run_id: RunId) -> dict[str, Any]:
        return reviewed(run_id, lambda: None)

    @api.post("/api/runs/{run_id}/review/paragraphs/{paragraph_id}", summary="Edit a paragraph's translation")
    def post_paragraph(run_id: RunId, who: Who, paragraph_id: Annotated[str, Path(pattern=r"^[\w.-]{1,64}$")],
                       body: ParagraphText) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            _, translation, _, _ = post_of(rt, run_id)
            return reviewed(run_id, lambda: review.edit_paragraph(rt, translation, paragraph_id, body.translation,
                                                                  who))

        return act(who, f"edit paragraph {paragraph_id}", run_id, action)

    @api.post("/api/runs/{run_id}/review/fields/{name}", summary="Edit the post's title, summary or tags")
    def post_field(run_id: RunId, who: Who, name: Annotated[str, Path(pattern=r"^(title|summary|tags)$")],
                   body: FieldText) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            video_id, _, _, _ = post_of(rt, run_id)
            return reviewed(run_id, lambda: review.edit_field(rt, video_id, name, body.value, who))

        return act(who, f"edit {name}", run_id, action)

    @api.post("/api/runs/{run_id}/approve", summary="Approve the post: draft: false, to the site's targets")
    def post_approve(run_id: RunId, who: Who) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            step = review.approve(app, rt, run_id, who)
            return {"id": run_id, "approved": True, "republishing_from": step.value}

        return act(who, "approve", run_id, action)

    @api.api_route("/api/runs/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    def unmatched_run_path(request: Request, rest: str) -> None:
        """A run id with a '/' in it (sent percent-encoded) matches no route above: say what is wrong."""
        if not rest:
            raise ApiError(404, f"no endpoint {request.method} {request.url.path}: see /api/docs")
        for action in ("/retry", "/cancel"):
            if request.method == "POST" and rest.endswith(action):
                rest = rest[: -len(action)]
                break
        check_run_id(rest)
        raise ApiError(404, f"no endpoint {request.method} {request.url.path}: see /api/docs")

    @api.get("/api/queues", summary="Per queue: depth, oldest message age, workers, last hour's work")
    def get_queues() -> dict[str, Any]:
        """From the latest snapshot of the background gatherer (at most a few seconds old): status "unknown"
        with null depths and workers when the broker could not be asked, `age` the last good facts' age."""
        return monitor.snapshot()

    metrics_registry = registry(rt.metrics, monitor.snapshot)

    @api.get("/metrics", summary="Prometheus metrics: queues, workers, runs, task outcomes, providers",
             response_class=PlainTextResponse)
    def get_metrics() -> Response:
        """The text exposition format; the gauges come from the gatherer's latest snapshot, never the broker."""
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/api/audit", summary="The audit log of actions, newest first (needs the token)")
    def get_audit(who: Who, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        return {"entries": audit.entries(rt, limit), "refused_last_hour": refusals.totals(60),
                "refused_last_day": audit.refused(rt, 24 * 60),
                "retention_days": rt.settings.audit_retention_days}

    from workers.dashboard.pages import mount_pages  # the HTML pages, over the same operations and audit log

    mount_pages(api, app)
    return api
