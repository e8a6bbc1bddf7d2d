"""The dashboard's HTML pages for operators: runs, one run, queues; actions as plain form POSTs.

Reads are open. Actions need the operator token, given once at POST /login (the browser then keeps an
HttpOnly, SameSite=Strict cookie holding an HMAC of the token, never the token) or as the password of HTTP
basic auth. Every form carries a CSRF token: an HMAC of the visitor's session id (its own cookie) under a
secret made when the process starts, so a restart logs everyone out. Actions go through workers.operations
and the same audit log as the JSON API; each answers 303 back to the page with a flash message. As there,
only a logged-in operator's actions are audit entries (named "operator", or the basic-auth user name); a
refusal of a visitor who is not logged in (or gave a wrong token) is only counted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from schemas.pipeline import ACTIVE, PIPELINE, RunStatus, Step
from workers import review
from workers.dashboard import audit
from workers.dashboard.api import MAX_OFFSET, is_run_id
from workers.dashboard.queries import RunFilter, list_runs, matching_ids, run_detail
from workers.dashboard.reviews import post_of, review_detail, review_list
from workers.errors import PermanentError
from workers.operations import cancel, discard, retry, retry_all_failed
from workers.runtime import Runtime

SID, AUTH, FLASH = "pressroom_sid", "pressroom_auth", "pressroom_flash"
PAGE = 50
STATUSES = [s.value for s in RunStatus]
FILTERS = ("status", "channel", "step", "since", "until", "q")
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "–"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


templates.env.filters.update(when=_when, seconds=_seconds)


class Guard:
    """The session, CSRF and token checks, under one per-process secret."""

    def __init__(self, rt: Runtime) -> None:
        self.rt, self.secret = rt, secrets.token_bytes(32)

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()

    @property
    def expected(self) -> str | None:
        token = self.rt.settings.dashboard_token
        return token.get_secret_value() if token else None

    def session_cookie(self, token: str) -> str:
        return self._mac("auth", token)

    def csrf(self, sid: str) -> str:
        return self._mac("csrf", sid)

    def csrf_ok(self, request: Request, given: str) -> bool:
        sid = request.cookies.get(SID)
        return bool(sid and given) and hmac.compare_digest(self.csrf(sid or ""), given)

    def basic_auth(self, request: Request) -> tuple[str, str] | None:
        """(user, password) of HTTP basic auth, if the request carries it."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except ValueError:
            return None
        return user, password

    def who(self, request: Request) -> str | None:
        """The caller's audit label if they hold the token (by cookie or basic auth), else None: "operator",
        or the user name given with basic auth. Never anything derived from the token."""
        expected = self.expected
        if not expected:
            return None
        cookie = request.cookies.get(AUTH, "")
        if cookie and hmac.compare_digest(cookie, self.session_cookie(expected)):
            return audit.OPERATOR
        basic = self.basic_auth(request)
        if basic and basic[1] and audit.token_matches(basic[1], expected):
            return audit.label(basic[0])
        return None


def _filter(params: dict[str, str]) -> tuple[RunFilter, list[str]]:
    """The list's filters from the query string; a bad value is dropped with a note, not a 422."""
    notes: list[str] = []
    status = params.get("status") or None
    if status and status not in STATUSES:
        notes.append(f"unknown status {status!r} ignored")
        status = None
    step = None
    if params.get("step"):
        try:
            step = Step(params["step"])
        except ValueError:
            notes.append(f"unknown step {params['step']!r} ignored")
    bounds: list[float | None] = []
    for name, extra in (("since", timedelta(0)), ("until", timedelta(days=1, microseconds=-1))):
        try:
            day = datetime.strptime(params[name], "%Y-%m-%d").replace(tzinfo=UTC) if params.get(name) else None
        except ValueError:
            notes.append(f"{name}: use a date like 2026-01-31")
            day = None
        bounds.append((day + extra).timestamp() if day else None)
    return RunFilter(status=status, channel=params.get("channel") or None, step=step, since=bounds[0],
                     until=bounds[1], q=params.get("q") or None), notes


def _flash(response: Response, message: str, kind: str = "ok") -> Response:
    response.set_cookie(FLASH, quote(f"{kind}|{message}"), max_age=60, httponly=True, samesite="strict")
    return response


def _back(to: str, message: str, kind: str = "ok") -> Response:
    return _flash(RedirectResponse(to if to.startswith("/") and not to.startswith("//") else "/", 303),
                  message, kind)


def _offset(raw: str | None, notes: list[str]) -> int:
    """The list's offset from the query string: a bad one is 0 with a note, a huge one is capped."""
    try:
        return min(max(int(raw or 0), 0), MAX_OFFSET)
    except ValueError:
        notes.append("offset: use a whole number")
        return 0


def mount_pages(api: FastAPI, app: Any) -> None:
    """Add the HTML pages and their form actions to the dashboard's FastAPI app (not in the OpenAPI doc)."""
    rt: Runtime = app.pressroom
    guard = Guard(rt)
    refusals: audit.RefusalCounter = api.state.refusals
    monitor = api.state.monitor

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        sid = request.cookies.get(SID) or secrets.token_urlsafe(24)
        kind, _, message = unquote(request.cookies.get(FLASH, "")).partition("|")
        response = templates.TemplateResponse(request, name, {
            **context, "csrf": guard.csrf(sid), "who": guard.who(request), "read_only": not guard.expected,
            "flash": {"kind": kind, "message": message} if message else None, "here": str(request.url.path),
        }, status_code=status)
        secure = request.url.scheme == "https"
        if request.cookies.get(SID) != sid:
            response.set_cookie(SID, sid, httponly=True, samesite="strict", secure=secure)
        if message:
            response.delete_cookie(FLASH)
        return response

    def action(request: Request, csrf: str, back: str, what: str, run_id: str | None,
               do: Callable[[], str], done_to: str | None = None) -> Response:
        """Check token and CSRF, run `do` (its return is the flash), audit the outcome, redirect back. A
        visitor who is not logged in is only counted; a logged-in operator's refusals are entries too."""
        if run_id is not None and not is_run_id(run_id):
            return _back("/", f"{run_id[:120]!r} is not a run id", "error")
        who = guard.who(request)
        if not guard.expected:
            refusals.count("read_only")
            return _back(back, "read-only: set PRESSROOM_DASHBOARD_TOKEN to allow actions", "error")
        if who is None:
            refusals.count("not_logged_in")
            return _back(back, "log in with the operator token first", "error")
        if not guard.csrf_ok(request, csrf):
            refusal = "the form expired (or came from elsewhere): reload the page and try again"
            audit.record(rt, who=who, what=what, run_id=run_id, outcome=f"refused: {refusal}")
            return _back(back, refusal, "error")
        try:
            message = do()
        except PermanentError as exc:
            audit.record(rt, who=who, what=what, run_id=run_id, outcome=f"refused: {exc}")
            return _back(back, str(exc), "error")
        audit.record(rt, who=who, what=what, run_id=run_id, outcome="ok")
        return _back(done_to or back, message)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def runs_page(request: Request) -> Response:
        params = {k: request.query_params.get(k, "") for k in FILTERS}
        f, notes = _filter(params)
        offset = _offset(request.query_params.get("offset"), notes)
        page = list_runs(rt, f, offset=offset, limit=PAGE)
        kept = {k: v for k, v in params.items() if v}

        def link(at: int) -> str:
            return "/?" + urlencode({**kept, "offset": at})

        return render(request, "runs.html", {
            "page": page, "params": params, "notes": notes, "statuses": STATUSES, "steps": list(PIPELINE),
            "filter_query": urlencode(kept),
            "prev": link(max(offset - PAGE, 0)) if offset > 0 else None,
            "next": link(offset + PAGE) if offset + PAGE < page["total"] else None,
        })

    @api.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: str) -> Response:
        detail = run_detail(rt, run_id)
        if detail is None:
            return render(request, "missing.html", {"run_id": run_id}, status=404)
        return render(request, "run.html", {"run": detail, "steps": list(PIPELINE),
                                            "active": {s.value for s in ACTIVE}, "now": time.time()})

    @api.get("/queues", response_class=HTMLResponse, include_in_schema=False)
    def queues_page(request: Request) -> Response:
        return render(request, "queues.html", {"stats": monitor.snapshot()})

    @api.post("/login", include_in_schema=False)
    def login(request: Request, token: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "",
              next: Annotated[str, Form()] = "/") -> Response:
        expected = guard.expected
        if not expected:
            return _back(next, "read-only: no PRESSROOM_DASHBOARD_TOKEN is configured", "error")
        if not guard.csrf_ok(request, csrf):
            return _back(next, "the form expired: reload the page and try again", "error")
        if not audit.token_matches(token, expected):
            refusals.count("wrong_token")
            return _back(next, "wrong token", "error")
        audit.record(rt, who=audit.OPERATOR, what="login", run_id=None, outcome="ok")
        response = _back(next, "logged in")
        response.set_cookie(AUTH, guard.session_cookie(expected), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @api.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        response = _back("/", "logged out")
        if guard.csrf_ok(request, csrf):
            response.delete_cookie(AUTH)
        return response

    @api.post("/runs/retry-failed", include_in_schema=False)
    def retry_failed_form(request: Request, csrf: Annotated[str, Form()] = "",
                          filters: Annotated[str, Form()] = "") -> Response:
        back = "/?" + filters
        f, notes = _filter({k: v for k, v in parse_qsl(filters) if k in FILTERS})
        if notes:
            return _back(back, "; ".join(notes), "error")

        def do() -> str:
            retried = retry_all_failed(app, rt, matching_ids(rt, f))
            return f"retried {len(retried)} failed run(s)"

        return action(request, csrf, back, "retry-failed", None, do)

    @api.post("/runs/{run_id}/retry", include_in_schema=False)
    def retry_form(request: Request, run_id: str, csrf: Annotated[str, Form()] = "",
                   from_step: Annotated[str, Form()] = "") -> Response:
        back = f"/runs/{quote(run_id, safe='')}"
        if from_step and from_step not in list(PIPELINE):
            return _back(back, f"unknown step {from_step!r}", "error")
        step = Step(from_step) if from_step else None

        def do() -> str:
            return f"re-running from {retry(app, rt, run_id, step)}"

        return action(request, csrf, back, f"retry from {step.value if step else 'failed step'}", run_id, do)

    @api.post("/runs/{run_id}/cancel", include_in_schema=False)
    def cancel_form(request: Request, run_id: str, csrf: Annotated[str, Form()] = "") -> Response:
        def do() -> str:
            cancel(rt, run_id)
            return "cancelled"

        return action(request, csrf, f"/runs/{quote(run_id, safe='')}", "cancel", run_id, do)

    mount_review_pages(api, app, guard, action, render)

    @api.post("/runs/{run_id}/discard", include_in_schema=False)
    def discard_form(request: Request, run_id: str, csrf: Annotated[str, Form()] = "") -> Response:
        def do() -> str:
            discard(rt, run_id)
            return f"discarded run {run_id} (its artifacts stay)"

        return action(request, csrf, f"/runs/{quote(run_id, safe='')}", "discard", run_id, do, done_to="/")


def mount_review_pages(api: FastAPI, app: Any, guard: Guard, action: Callable[..., Response],
                       render: Callable[..., Response]) -> None:
    """The editor's pages: the posts to review, and one post with its Chinese beside its English, each
    paragraph editable, and Approve."""
    rt: Runtime = app.pressroom

    @api.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def reviews_page(request: Request) -> Response:
        return render(request, "reviews.html", {"posts": review_list(rt, 200)})

    @api.get("/review/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def review_page(request: Request, run_id: str) -> Response:
        try:
            detail = review_detail(rt, run_id) if is_run_id(run_id) else None
        except PermanentError as exc:
            return render(request, "missing.html", {"run_id": run_id, "why": str(exc)}, status=404)
        if detail is None:
            return render(request, "missing.html", {"run_id": run_id}, status=404)
        return render(request, "review.html", {"post": detail})

    @api.post("/review/{run_id}/paragraphs/{paragraph_id}", include_in_schema=False)
    def edit_paragraph_form(request: Request, run_id: str, paragraph_id: str, csrf: Annotated[str, Form()] = "",
                            translation: Annotated[str, Form()] = "") -> Response:
        back = f"/review/{quote(run_id, safe='')}#{quote(paragraph_id, safe='')}"

        def do() -> str:
            _, translation_artifact, _, _ = post_of(rt, run_id)
            review.edit_paragraph(rt, translation_artifact, paragraph_id, translation, guard.who(request) or "")
            return f"paragraph {paragraph_id} saved"

        return action(request, csrf, back, f"edit paragraph {paragraph_id[:64]}", run_id, do)

    @api.post("/review/{run_id}/fields/{name}", include_in_schema=False)
    def edit_field_form(request: Request, run_id: str, name: str, csrf: Annotated[str, Form()] = "",
                        value: Annotated[str, Form()] = "") -> Response:
        def do() -> str:
            video_id, _, _, _ = post_of(rt, run_id)
            review.edit_field(rt, video_id, name, value, guard.who(request) or "")
            return f"{name} saved"

        return action(request, csrf, f"/review/{quote(run_id, safe='')}", f"edit {name[:20]}", run_id, do)

    @api.post("/review/{run_id}/approve", include_in_schema=False)
    def approve_form(request: Request, run_id: str, csrf: Annotated[str, Form()] = "") -> Response:
        def do() -> str:
            review.approve(app, rt, run_id, guard.who(request) or "")
            return "approved: publishing with draft: false"

        return action(request, csrf, f"/review/{quote(run_id, safe='')}", "approve", run_id, do)
