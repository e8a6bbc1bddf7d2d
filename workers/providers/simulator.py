"""An OpenAI-compatible server that fakes transcription and chat, so the pipeline runs offline and in tests.

Answers are deterministic (same audio → same transcript) and faults are drawn from random.Random(seed) in
request order, so a failure seen once can be reproduced. Answer generation lives in simulator_fake, the
defects of a bad translation (dropped, merged, empty, untranslated or cut-off items) in simulator_faults, and
each provider's dialect of the chat API (what response_format it takes, its usage fields) in simulator_dialects.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import math
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from workers.errors import PermanentError
from workers.providers import simulator_dialects as dialects
from workers.providers import simulator_fake as fake
from workers.providers import simulator_faults as tfaults
from workers.providers.transcription import MAX_UPLOAD_BYTES, probe_duration

MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4.1-mini", "gpt-4.1")
ANSWER_FAULTS = ("not_json", "html", "wrong_shape", "long_transcript")
HTML_PAGE = ("<!DOCTYPE html>\n<html><head><title>Sign in to continue</title></head>\n<body><form action=\"/login\">"
             "<input name=\"user\"></form>【模拟】</body></html>\n")  # fmt: skip


class SimulatorConfig(BaseModel):
    """Speed and fault knobs; probabilities are per request to /v1/audio/* and /v1/chat/*."""

    model_config = ConfigDict(extra="forbid")

    transcript_path: Path | None = Field(default=None, description="text to 'hear'; default: built-in sample")
    latency: float = Field(default=0.0, ge=0, description="seconds added to every request")
    transcribe_seconds_per_audio_minute: float = Field(default=0.0, ge=0)
    llm_tokens_per_second: float = Field(default=0.0, ge=0, description="0 = answer at once")
    translation_ratio: float = Field(default=fake.TRANSLATION_RATIO, ge=0, description="a simulated translation's "
                                     "tokens per English token (1.0: real length; 0: short stubs)")  # fmt: skip
    fault_429: float = Field(default=0.0, ge=0, le=1, description="answer 429 with a Retry-After header")
    retry_after: float = Field(default=1.0, ge=0, description="Retry-After seconds sent with a 429")
    fault_500: float = Field(default=0.0, ge=0, le=1, description="answer 500")
    fault_slow: float = Field(default=0.0, ge=0, le=1, description="delay the answer by slow_seconds")
    slow_seconds: float = Field(default=5.0, ge=0)
    fault_refusal: float = Field(default=0.0, ge=0, le=1, description="chat answers with a refusal")
    dialect: dialects.DialectName = Field(default="openai", description="the provider whose chat API to speak")
    fault_blank: float = Field(default=0.0, ge=0, le=1, description="a JSON-mode (json_object) answer is blank: "
                               "spaces with finish_reason=stop, as DeepSeek's")  # fmt: skip
    # per TranslationBatch request, each drawn independently; several can hit the same answer
    fault_drop: float = Field(default=0.0, ge=0, le=1, description="translations omit ~20% of ids (≥1)")
    fault_merge: float = Field(default=0.0, ge=0, le=1, description="two adjacent items come back as one")
    fault_cutoff: float = Field(default=0.0, ge=0, le=1, description="JSON cut at 60%, finish_reason=length")
    fault_empty: float = Field(default=0.0, ge=0, le=1, description="one item's zh is an empty string")
    fault_english: float = Field(default=0.0, ge=0, le=1, description="one item's zh is the English source")
    fault_refuse_paragraph: bool = Field(default=False, description="refuse any batch with a [[refuse]] paragraph")
    # answers of the wrong kind, per request to /v1/audio/* and /v1/chat/*, each drawn independently
    fault_not_json: float = Field(default=0.0, ge=0, le=1, description="a 200 whose JSON body is cut short")
    fault_html: float = Field(default=0.0, ge=0, le=1, description="a 200 with an HTML page (a proxy's login page)")
    fault_wrong_shape: float = Field(default=0.0, ge=0, le=1, description="a 200 with JSON of the wrong shape")
    fault_long_transcript: float = Field(default=0.0, ge=0, le=1, description="a transcription loops on its "
                                         "last sentence up to long_transcript_chars characters")  # fmt: skip
    long_transcript_chars: int = Field(default=10_000_000, ge=1, description="length of a looping transcript")
    trickle_seconds: float = Field(default=0.0, ge=0, description="send every answer one byte per this many "
                                   "seconds (0 = at once)")  # fmt: skip
    rpm_limit: int = Field(default=0, ge=0, description="answer 429 (with Retry-After) to requests beyond this many "
                           "in any 60 s, as a provider's rate limit does (0 = none)")
    api_key: str | None = Field(default=None, description="if set, other bearer tokens get 401")
    seed: int = 0


def error(status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None,
          headers: dict[str, str] | None = None, param: str | None = None) -> JSONResponse:  # fmt: skip
    """An error in OpenAI's shape, so the SDK raises the same exception types as against the real API."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class _Faults:
    """Seeded fault draws; a lock keeps the sequence fixed however requests interleave."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._translation_rng = random.Random(f"{config.seed}:translation")  # keeps the stream above as it was
        self._answer_rng = random.Random(f"{config.seed}:answer")
        self._blank_rng = random.Random(f"{config.seed}:blank")
        self._lock = threading.Lock()
        self.rates = {name: float(getattr(config, f"fault_{name}")) for name in tfaults.FAULTS}
        self._granted: collections.deque[float] = collections.deque()  # within the last 60 s, for rpm_limit
        self.arrivals: list[tuple[float, int]] = []  # (time, 200 or 429) of each request rpm_limit judged

    def over_rate(self) -> float | None:
        """With rpm_limit: None if this request is within it, else seconds until it would be."""
        now = time.time()
        with self._lock:
            while self._granted and self._granted[0] <= now - 60:
                self._granted.popleft()
            if len(self._granted) >= self.config.rpm_limit:
                self.arrivals.append((now, 429))
                return self._granted[0] + 60 - now
            self._granted.append(now)
            self.arrivals.append((now, 200))
            return None

    def draw(self) -> tuple[float, float, float, float]:
        with self._lock:
            return (self._rng.random(), self._rng.random(), self._rng.random(), self._rng.random())

    def answer_fault(self) -> str | None:
        """Which answer-of-the-wrong-kind fault (ANSWER_FAULTS) this answer gets, if any: one draw per fault
        and answer, in that order, so switching one on does not move the others."""
        with self._lock:
            draws = [(name, self._answer_rng.random()) for name in ANSWER_FAULTS]
        return next((n for n, r in draws if r < float(getattr(self.config, f"fault_{n}"))), None)

    def blank(self) -> bool:
        """Whether this JSON-mode answer comes back blank (one draw per json_object answer)."""
        with self._lock:
            return self._blank_rng.random() < self.config.fault_blank

    def translation_seed(self) -> int:
        """One seed per TranslationBatch request that passed the gate, in request order."""
        with self._lock:
            return self._translation_rng.getrandbits(64)

    async def gate(self, request: Request) -> tuple[Response | None, bool]:
        """Auth, latency and injected faults; returns (an error answer or None, refuse-this-chat)."""
        c = self.config
        if c.api_key is not None and request.headers.get("authorization") != f"Bearer {c.api_key}":
            return error(401, "Incorrect API key provided.", code="invalid_api_key"), False
        if c.rpm_limit and (wait := self.over_rate()) is not None:
            return error(429, f"Rate limit reached: {c.rpm_limit} requests per minute (simulated).", kind="requests",
                         code="rate_limit_exceeded", headers={"retry-after": f"{math.ceil(wait)}"}), False
        if c.latency:
            await asyncio.sleep(c.latency)
        r429, r500, rslow, rrefuse = self.draw()
        if r429 < c.fault_429:
            headers = {"retry-after": f"{c.retry_after:g}"}
            return error(429, "Rate limit reached (simulated).", kind="requests", code="rate_limit_exceeded",
                         headers=headers), False  # fmt: skip
        if r500 < c.fault_500:
            return error(500, "The server had an error while processing your request (simulated).",
                         kind="server_error"), False  # fmt: skip
        if rslow < c.fault_slow:
            await asyncio.sleep(c.slow_seconds)
        return None, rrefuse < c.fault_refusal


def create_app(config: SimulatorConfig | None = None) -> FastAPI:
    """The simulator as an ASGI app (mount it, or run it with serve()/running_simulator())."""
    config = config or SimulatorConfig()
    sentences = fake.load_sentences(config.transcript_path)
    faults = _Faults(config)
    counter = iter(range(1, 1 << 62))
    app = FastAPI(title="Pressroom OpenAI simulator")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    seen: dict[str, int] = {}  # request fingerprint → times asked: work a client did twice shows here

    def count(kind: str, fingerprint: bytes) -> None:
        key = kind + ":" + hashlib.sha256(fingerprint).hexdigest()
        seen[key] = seen.get(key, 0) + 1

    @app.get("/debug/requests")
    async def requests_seen() -> dict[str, int]:
        """How many requests came, and how many repeated one already answered (same body)."""
        return {"requests": sum(seen.values()), "distinct": len(seen),
                "repeated": sum(n - 1 for n in seen.values())}

    @app.get("/debug/arrivals")
    async def arrivals() -> dict[str, Any]:
        """With rpm_limit: when each request came and whether it was let through (200) or refused (429)."""
        return {"rpm_limit": config.rpm_limit, "arrivals": faults.arrivals}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "pressroom-simulator"} for m in MODELS]
        return {"object": "list", "data": data}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        refused, _ = await faults.gate(request)
        if refused is not None:
            return refused
        form = await request.form()
        upload, model = form.get("file"), str(form.get("model") or "")
        fmt = str(form.get("response_format") or "json")
        if not isinstance(upload, UploadFile) or not model:
            return error(400, "multipart fields 'file' and 'model' are required")
        if fmt not in ("json", "text", "verbose_json"):
            return error(400, f"response_format {fmt!r} is not supported by the simulator: use json/text")
        if fmt == "verbose_json" and "whisper" not in model:
            return error(400, f"response_format 'verbose_json' is not compatible with model '{model}'. "
                              "Use 'json' or 'text' instead.", code="unsupported_value")  # fmt: skip
        upload.file.seek(0)
        count("transcription", model.encode() + await run_in_threadpool(upload.file.read))
        try:
            duration = await run_in_threadpool(_measure, upload)
        except PermanentError as exc:
            return error(400, f"Audio file could not be decoded: {exc}", code="invalid_value")
        except ValueError as exc:
            return error(413, str(exc), code="file_too_large")
        if config.transcribe_seconds_per_audio_minute:
            await asyncio.sleep(config.transcribe_seconds_per_audio_minute * duration / 60)
        answer = fake.transcription_answer(sentences, duration, fmt)
        fault = faults.answer_fault()
        if fault == "long_transcript":
            answer = fake.looping_transcript(answer, config.long_transcript_chars)
        elif fault == "wrong_shape":
            answer = _wrong_shape(answer)
        return _deliver(answer, fault, config.trickle_seconds)

    dialect = dialects.DIALECTS[config.dialect]
    cache = dialects.PromptCache()
    chat_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=10_000)

    @app.get("/debug/chat-log")
    async def chat_log_seen() -> list[dict[str, Any]]:
        """Each chat request (the last 10,000): the response_format type sent, the model, the status answered,
        the cached tokens reported and the length of the serialized messages."""
        return list(chat_log)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        refused, refuse = await faults.gate(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        messages = body.get("messages") if isinstance(body, dict) else None
        prompt = json.dumps(messages, ensure_ascii=False) if isinstance(messages, list) else ""
        model = str(body.get("model") or "") if isinstance(body, dict) else ""
        entry = {"response_format": dialects.format_type(body), "model": model, "status": 200, "cached_tokens": 0,
                 "prompt_chars": len(prompt)}  # fmt: skip
        chat_log.append(entry)
        if refused is None:
            refused = _rejection(dialect, body, messages)
        if refused is not None:
            entry["status"] = refused.status_code
            return refused
        assert isinstance(body, dict) and isinstance(messages, list)
        count("chat", json.dumps(messages, sort_keys=True).encode())
        content, cut = dialects.content(faults, dialect, body, messages, refuse, config.fault_refuse_paragraph,
                                        config.translation_ratio)
        cached = dialects.reported_cache(dialect, cache.see(prompt, dialects.prompt_tokens(messages)))
        entry["cached_tokens"] = cached
        answer = dialects.completion(dialect, body, messages, content, cut, next(counter), cached)
        if config.llm_tokens_per_second:
            await asyncio.sleep(answer["usage"]["completion_tokens"] / config.llm_tokens_per_second)
        fault = faults.answer_fault()
        return _deliver(_wrong_shape(answer) if fault == "wrong_shape" else answer, fault, config.trickle_seconds)

    return app


def _wrong_shape(answer: dict[str, Any] | str) -> dict[str, Any] | str:
    """Valid JSON that is not what was asked for: choices whose message is a string, whisper segments that
    are not a list, a plain transcription without its "text"."""
    if isinstance(answer, str):
        return answer  # a text transcription has no shape to get wrong
    if "choices" in answer:
        return {**answer, "choices": [{"index": 0, "message": f"{fake.MARK}not a message", "finish_reason": "stop"}]}
    if "segments" in answer:
        return {**answer, "segments": f"{fake.MARK}not a list"}
    return {"foo": 1}


def _deliver(answer: dict[str, Any] | str, fault: str | None, trickle: float) -> Response:
    """The answer as a response, spoiled by a not_json or html fault, and sent a byte at a time if asked."""
    if fault == "html":
        body, media = HTML_PAGE.encode(), "text/html; charset=utf-8"
    elif isinstance(answer, str):
        body, media = answer.encode(), "text/plain; charset=utf-8"
    else:
        body, media = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode(), "application/json"
        if fault == "not_json":  # cut short, between two characters
            body = body[: len(body) // 2].decode(errors="ignore").encode()
    if not trickle:
        return Response(body, media_type=media)

    async def drip() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            if i:
                await asyncio.sleep(trickle)
            yield body[i : i + 1]

    return StreamingResponse(drip(), media_type=media, headers={"content-length": str(len(body))})


def _measure(upload: UploadFile) -> float:
    """Copy the (already spooled) upload to a named temp file in chunks and ffprobe its duration."""
    suffix = Path(upload.filename or "audio").suffix[:8]
    with tempfile.TemporaryDirectory(prefix="pressroom-sim-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        upload.file.seek(0)
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out, length=1 << 20)
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise ValueError(f"Maximum content size limit ({MAX_UPLOAD_BYTES}) exceeded.")
        return round(probe_duration(path), 3)


def _rejection(dialect: dialects.Dialect, body: Any, messages: Any) -> Response | None:
    """The 400 for a malformed request or one this dialect does not take."""
    if not isinstance(body, dict):
        return error(400, "the request body is not valid JSON")
    if not isinstance(messages, list) or not messages or not body.get("model"):
        return error(400, "'model' and a non-empty 'messages' list are required")
    if body.get("stream"):
        return error(400, "stream=true is not supported by the simulator")
    rejected = dialects.check(dialect, body, messages)
    return None if rejected is None else error(400, rejected.message, code=rejected.code, param=rejected.param)


def serve(port: int, config: SimulatorConfig | None = None, host: str = "127.0.0.1") -> None:
    """Run the simulator in the foreground until interrupted."""
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")


@contextmanager
def running_simulator(config: SimulatorConfig | None = None, port: int = 0) -> Iterator[str]:
    """Run the simulator on a background thread; yields its base URL ("http://127.0.0.1:PORT/v1")."""
    # IPPROTO_TCP, not 0: only then does asyncio set TCP_NODELAY (else Nagle + delayed ACK cost 40 ms a request)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))  # bound here so port 0 resolves before the server starts
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), log_config=None, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="simulator")
    thread.start()
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health", thread)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_ready(url: str, thread: threading.Thread, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the simulator thread exited during startup: see its log above")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"the simulator did not answer {url} within {timeout:g} s")


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Serve the simulator: a local stand-in for OPENAI_BASE_URL whose answers are labelled 【模拟】."""
    parser = argparse.ArgumentParser(prog=prog, description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 inside a container)")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--config", type=Path, help="JSON file with SimulatorConfig fields")
    for name, field in SimulatorConfig.model_fields.items():  # each overrides the config file's value
        text = (field.description or "").replace("%", "%%")
        parser.add_argument(f"--{name.replace('_', '-')}", default=None, help=text, **_flag(field.annotation))
    args = parser.parse_args(argv)
    config = SimulatorConfig.model_validate_json(args.config.read_text()) if args.config else SimulatorConfig()
    flags = {n: getattr(args, n) for n in SimulatorConfig.model_fields if getattr(args, n) is not None}
    config = SimulatorConfig.model_validate({**config.model_dump(), **flags})
    print(f"simulator on http://{args.host}:{args.port}/v1 (answers are labelled 【模拟】)", file=sys.stderr)
    serve(args.port, config, host=args.host)


def _flag(annotation: Any) -> dict[str, Any]:
    """argparse keywords for a config field: choices for a Literal, a switch for a bool, else its type."""
    if get_origin(annotation) is Literal:
        return {"choices": list(get_args(annotation))}
    annotation = next((a for a in get_args(annotation) if a is not type(None)), annotation)
    return {"action": "store_true"} if annotation is bool else {"type": annotation}


if __name__ == "__main__":
    main()
