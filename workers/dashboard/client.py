"""The CLI's way to the dashboard API (when PRESSROOM_DASHBOARD_URL is set): actions go through the same
auth and audit log as the dashboard's buttons."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from workers.errors import PermanentError, TransientError


def segment(run_id: str) -> str:
    """A run id as one path segment: every character but unreserved ones percent-encoded, so no id (say
    'x/../../runs/retry-failed?') can reach another endpoint; "." and ".." are encoded too, or a URL parser
    would resolve them as dot segments."""
    encoded = quote(run_id, safe="")
    return encoded.replace(".", "%2E") if encoded in {".", ".."} else encoded


class DashboardClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **params: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as exc:
            raise TransientError(f"dashboard at {self.http.base_url} unreachable: {exc}; check "
                                 "PRESSROOM_DASHBOARD_URL") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.text
            except ValueError:
                message = response.text
            raise PermanentError(f"dashboard answered {response.status_code}: {message}")
        body: dict[str, Any] = response.json()
        return body

    def runs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self._call("GET", "/api/runs", status=status, limit=limit)["runs"]
        return runs

    def retry(self, run_id: str, from_step: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/api/runs/{segment(run_id)}/retry", from_step=from_step)

    def retry_failed(self) -> list[str]:
        retried: list[str] = self._call("POST", "/api/runs/retry-failed")["retried"]
        return retried

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/runs/{segment(run_id)}/cancel")

    def reviews(self, limit: int = 100) -> list[dict[str, Any]]:
        posts: list[dict[str, Any]] = self._call("GET", "/api/reviews", limit=limit)["posts"]
        return posts

    def review(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/runs/{segment(run_id)}/review")

    def approve(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/runs/{segment(run_id)}/approve")
