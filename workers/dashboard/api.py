"""The dashboard's JSON API. Reads are open; actions need the bearer token and are all audited.

Errors are always {"error": "<one line>"}: 404 unknown run, 409 the run's state forbids the action,
422 a bad parameter, 401 no token, 403 a wrong token (or none configured: read-only).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from schemas.pipeline import RunStatus, Step
from schemas.run import RunView
from workers.dashboard import audit
from workers.dashboard.queries import RunFilter, list_runs, matching_ids, run_detail
from workers.dashboard.queues import queue_stats
from workers.errors import PermanentError
from workers.operations import cancel, discard, retry, retry_all_failed
from workers.runtime import Runtime

READ_ONLY = "read-only: set PRESSROOM_DASHBOARD_TOKEN to allow actions"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, " ".join(message.split()), headers


def _validation_line(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
    return f"{where or 'request'}: {first.get('msg', 'invalid')}"


def run_filter(
    status: RunStatus | None = None,
    channel: Annotated[str | None, Query(description="channel id of watched runs")] = None,
    step: Annotated[Step | None, Query(description="the run's current (or failed) step")] = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601 or epoch seconds)")] = None,
    until: Annotated[datetime | None, Query(description="created at or before")] = None,
    q: Annotated[str | None, Query(description="text in the run id, video id or error")] = None,
) -> RunFilter:
    return RunFilter(status=status, channel=channel or None, step=step, q=q or None,
                     since=since.timestamp() if since else None, until=until.timestamp() if until else None)


def authorize(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's audit name, once their token checks out; a refusal is audited too."""
    rt: Runtime = request.app.state.rt
    expected = rt.settings.dashboard_token.get_secret_value() if rt.settings.dashboard_token else None
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    who = audit.fingerprint(given or None)
    error: ApiError | None = None
    if not expected:
        error = ApiError(403, READ_ONLY)
    elif not given:
        error = ApiError(401, "missing token: send Authorization: Bearer <PRESSROOM_DASHBOARD_TOKEN>",
                         {"WWW-Authenticate": "Bearer"})
    elif not audit.token_matches(given, expected):
        error = ApiError(403, "wrong token: send the value of PRESSROOM_DASHBOARD_TOKEN")
    if error is not None:
        audit.record(rt, who=who, what=f"{request.method} {request.url.path}",
                     run_id=request.path_params.get("run_id"), outcome=f"refused: {error.message}")
        raise error
    return who


Who = Annotated[str, Depends(authorize)]


def create_api(app: Any) -> FastAPI:
    """The API over this Celery app's broker and run state."""
    rt: Runtime = app.pressroom
    api = FastAPI(title="Pressroom dashboard", openapi_url="/api/openapi.json", docs_url="/api/docs",
                  redoc_url=None)
    api.state.rt = rt

    @api.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_line(exc)}, status_code=422)

    @api.exception_handler(HTTPException)
    def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


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
                 offset: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        return list_runs(rt, f, offset=offset, limit=limit)

    @api.get("/api/runs/{run_id}", summary="One run: steps, events, artifacts, post preview")
    def get_run(run_id: str) -> dict[str, Any]:
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
    def post_retry(run_id: str, who: Who, from_step: Step | None = None) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            existing(run_id)
            step = retry(app, rt, run_id, from_step)  # refuses a run something still carries on (409)
            run = existing(run_id)
            return {"id": run_id, "from_step": step.value, "generation": run.generation}

        return act(who, f"retry from {from_step.value if from_step else 'failed step'}", run_id, action)

    @api.post("/api/runs/{run_id}/cancel", summary="Cancel a queued or running run")
    def post_cancel(run_id: str, who: Who) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            existing(run_id)
            cancel(rt, run_id)
            return {"id": run_id, "status": "cancelled"}

        return act(who, "cancel", run_id, action)

    @api.delete("/api/runs/{run_id}", summary="Discard a finished run's state (its artifacts stay)")
    def delete_run(run_id: str, who: Who) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            existing(run_id)
            discard(rt, run_id)
            return {"id": run_id, "discarded": True}

        return act(who, "discard", run_id, action)

    @api.get("/api/queues", summary="Per queue: depth, oldest message age, workers, last hour's work")
    def get_queues() -> dict[str, Any]:
        return queue_stats(app, rt)

    @api.get("/api/audit", summary="The audit log of actions, newest first")
    def get_audit(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        return {"entries": audit.entries(rt, limit)}

    from workers.dashboard.pages import mount_pages  # the HTML pages, over the same operations and audit log

    mount_pages(api, app)
    return api
