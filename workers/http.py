"""HTTP clients with a deadline on the whole request (for feeds, the WebSub hub, the dashboard API).

httpx's timeouts bound each phase — connecting, each read — so a server that trickles its answer a byte at
a time keeps a request alive forever. Here the response's body stream checks the time left on every chunk
and gives up once the deadline has passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx


class DeadlineExceeded(httpx.TimeoutException):
    """The whole request took longer than its deadline."""


class _Body(httpx.SyncByteStream):
    def __init__(self, inner: Any, deadline: float, seconds: float, request: httpx.Request) -> None:
        self.inner, self.deadline, self.seconds, self.request = inner, deadline, seconds, request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if time.monotonic() > self.deadline:
                raise DeadlineExceeded(f"no complete answer within {self.seconds:g} s", request=self.request)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class DeadlineTransport(httpx.HTTPTransport):
    def __init__(self, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.seconds
        response = super().handle_request(request)
        if time.monotonic() > deadline:
            response.close()
            raise DeadlineExceeded(f"no answer within {self.seconds:g} s", request=request)
        response.stream = _Body(response.stream, deadline, self.seconds, request)
        return response


def client(seconds: float, **kwargs: Any) -> httpx.Client:
    """An httpx.Client whose every request ends within `seconds` (each read waits at most that long too)."""
    return httpx.Client(transport=DeadlineTransport(seconds), timeout=httpx.Timeout(seconds), **kwargs)
