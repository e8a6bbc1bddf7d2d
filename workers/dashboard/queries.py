"""What the dashboard reads: run lists, one run's detail. Data access only, no HTTP.

Listing must stay fast with 10,000 runs, so it never HGETALLs every run. With no filter but time, the page
comes straight from the runs index. With filters, on Redis a Lua script walks the index and reads only the
fields the filters look at, server-side (a pipeline of 10,000 HMGETs costs ~150 ms of parsing in redis-py;
the script ~10 ms of Redis time); on the in-process MemoryKV plain calls do the same. Then only the page's
runs are read in full.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from schemas.events import Step
from schemas.pipeline import RunStatus
from schemas.run import RunView
from workers import keys
from workers.runtime import Runtime
from workers.state import hmget_many, is_redis

SUMMARY_FIELDS = ("status", "video_id", "created", "updated", "step", "error", "skipped", "stalled", "generation",
                  "spec")
PREVIEW_BYTES = 4096


@dataclass(frozen=True)
class RunFilter:
    """The list's filters; retry-failed takes the same ones."""

    status: str | None = None
    channel: str | None = None
    step: Step | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None

    @property
    def needs_fields(self) -> bool:
        return any(v is not None and v != "" for v in (self.status, self.channel, self.step, self.q))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def run_ids(rt: Runtime, since: float | None = None, until: float | None = None) -> list[str]:
    """Run ids newest first, created within [since, until] when given."""
    kv = rt.state.kv
    if is_redis(kv):
        lo = "-inf" if since is None else since
        hi = "+inf" if until is None else until
        return [_text(i) for i in kv.zrevrangebyscore(keys.runs_index_key(), hi, lo)]  # type: ignore[attr-defined]
    ids = [_text(i) for i in reversed(kv.zrange(keys.runs_index_key(), 0, -1))]
    if since is None and until is None:
        return ids
    created = [_float(row[0]) or 0.0 for row in hmget_many(kv, [keys.run_key(i) for i in ids], ["created"])]
    return [i for i, c in zip(ids, created, strict=True)
            if (since is None or c >= since) and (until is None or c <= until)]


def _channel_of(spec: str | None) -> str | None:
    if not spec:
        return None
    try:
        return json.loads(spec).get("channel_id")  # type: ignore[no-any-return]
    except ValueError:
        return None


# KEYS[1] the runs index; ARGV: max score, min score, run key prefix, status, step, lowercased text, channel
# marker ('"channel_id":"UC…"', as pydantic writes the spec JSON). Empty ARGV = no such filter.
_MATCH_LUA = """
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
local out = {}
local q, marker = ARGV[6], ARGV[7]
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local f = redis.call('HMGET', key, 'status', 'step', 'video_id', 'error', 'skipped')
  if f[1] and (ARGV[4] == '' or f[1] == ARGV[4]) and (ARGV[5] == '' or f[2] == ARGV[5]) then
    local ok = true
    if q ~= '' then
      ok = string.find(string.lower(id), q, 1, true) ~= nil
      for i = 3, 5 do
        if not ok and f[i] then ok = string.find(string.lower(f[i]), q, 1, true) ~= nil end
      end
    end
    if ok and marker ~= '' then
      local spec = redis.call('HGET', key, 'spec')
      ok = spec and string.find(spec, marker, 1, true) ~= nil
    end
    if ok then out[#out + 1] = id end
  end
end
return out
"""


def _matching_in_redis(kv: Any, f: RunFilter) -> list[str]:
    """The filter run inside Redis (one script call; string.lower there folds ASCII only)."""
    args = ["+inf" if f.until is None else f.until, "-inf" if f.since is None else f.since, keys.run_key(""),
            f.status or "", f.step.value if f.step else "", (f.q or "").lower(),
            f'"channel_id":"{f.channel}"' if f.channel else ""]
    return [_text(i) for i in kv.eval(_MATCH_LUA, 1, keys.runs_index_key(), *args)]


def matching_ids(rt: Runtime, f: RunFilter) -> list[str]:
    """Every run id (newest first) passing the filter; reads only the fields the filter looks at."""
    if f.needs_fields and is_redis(rt.state.kv):
        return _matching_in_redis(rt.state.kv, f)
    ids = run_ids(rt, f.since, f.until)
    if not f.needs_fields:
        return ids
    fields = ["status"]  # read always: an index entry whose run is gone has none, and is skipped
    if f.step is not None:
        fields.append("step")
    if f.q:
        fields += ["video_id", "error", "skipped"]
    if f.channel:
        fields.append("spec")
    rows = hmget_many(rt.state.kv, [keys.run_key(i) for i in ids], fields)
    q = (f.q or "").lower()
    channel_marker = f'"channel_id":"{f.channel}"' if f.channel else ""
    out = []
    for run_id, row in zip(ids, rows, strict=True):
        got = dict(zip(fields, row, strict=True))
        if got["status"] is None or (f.status and got["status"] != f.status):
            continue
        if f.step is not None and got.get("step") != f.step.value:
            continue
        if q and not any(q in (v or "").lower() for v in (run_id, got.get("video_id"), got.get("error"),
                                                          got.get("skipped"))):
            continue
        spec = got.get("spec") or ""
        if f.channel and (channel_marker not in spec or _channel_of(spec) != f.channel):
            continue
        out.append(run_id)
    return out


def summaries(rt: Runtime, ids: Sequence[str]) -> list[dict[str, Any]]:
    """One line per run, from the run-level fields of its hash alone (no event log, no store)."""
    rows = hmget_many(rt.state.kv, [keys.run_key(i) for i in ids], SUMMARY_FIELDS)
    out = []
    for run_id, row in zip(ids, rows, strict=True):
        fields = {k: v for k, v in zip(SUMMARY_FIELDS, row, strict=True) if v is not None}
        if "status" not in fields:
            continue  # discarded between the index read and this one
        run = RunView.from_fields(run_id, fields)
        out.append({
            "id": run_id, "status": run.status.value, "video_id": run.video_id,
            "channel_id": run.spec.channel_id if run.spec else None,
            "title": run.spec.source.filename if run.spec else None, "created": run.created,
            "updated": run.updated, "step": run.step.value if run.step else None,
            "error": run.error or run.skipped, "stalled": run.stalled, "generation": run.generation,
        })
    return out


def list_runs(rt: Runtime, f: RunFilter = RunFilter(), *, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """{total, offset, limit, runs}: a page of run summaries, newest first."""
    kv = rt.state.kv
    if not f.needs_fields and is_redis(kv):  # the page straight from the index: two cheap commands
        lo = "-inf" if f.since is None else f.since
        hi = "+inf" if f.until is None else f.until
        total = int(kv.zcount(keys.runs_index_key(), lo, hi))  # type: ignore[attr-defined]
        page = [_text(i) for i in kv.zrevrangebyscore(  # type: ignore[attr-defined]
            keys.runs_index_key(), hi, lo, start=offset, num=limit)]
    else:
        ids = matching_ids(rt, f)
        total, page = len(ids), ids[offset : offset + limit]
    return {"total": total, "offset": offset, "limit": limit, "runs": summaries(rt, page)}


def usage_and_cost(rt: Runtime, steps: list[dict[str, Any]]) -> dict[str, float]:
    """The run's totals (audio minutes transcribed, tokens) and what they cost at the configured prices.
    Transcription is counted once per run (captions cost nothing; download's audio seconds are not billed)."""
    usage = {step["step"]: step["usage"] for step in steps}
    minutes = usage.get("transcribe", {}).get("audio_seconds", 0.0) / 60
    tokens_in = sum(u.get("input_tokens", 0.0) for u in usage.values())
    tokens_out = sum(u.get("output_tokens", 0.0) for u in usage.values())
    s = rt.settings
    cached = sum(u.get("cached_tokens", 0.0) for u in usage.values())
    cost = minutes * s.transcription_usd_per_minute + s.llm_profile().cost(int(tokens_in), int(cached),
                                                                           int(tokens_out))
    return {"audio_minutes": round(minutes, 2), "input_tokens": tokens_in, "output_tokens": tokens_out,
            "estimated_cost_usd": round(cost, 4)}


def run_detail(rt: Runtime, run_id: str) -> dict[str, Any] | None:
    """Everything about one run, or None if there is no such run."""
    run = rt.state.view(run_id)
    if run is None:
        return None
    events = rt.state.events(run_id)
    artifacts = dict(events[-1].artifacts) if events else {}
    preview = None
    if run.status is RunStatus.succeeded and "post" in artifacts:
        try:
            preview = rt.store.get_bytes(artifacts["post"])[:PREVIEW_BYTES].decode(errors="replace")
        except Exception:  # the post is a nicety here: a store hiccup must not hide the run
            preview = None
    steps = [s.model_dump(mode="json") for s in run.steps]
    return {
        "id": run_id, "status": run.status.value, "video_id": run.video_id,
        "channel_id": run.spec.channel_id if run.spec else None, "created": run.created, "updated": run.updated,
        "step": run.step.value if run.step else None, "error": run.error or run.skipped, "stalled": run.stalled,
        "generation": run.generation, "steps": steps, "usage": usage_and_cost(rt, steps),
        "events": [e.model_dump(mode="json", exclude={"run"}) for e in events],
        "artifacts": {name: {"key": key, "url": rt.store.url(key)} for name, key in artifacts.items()},
        "post_preview": preview, "spec": run.spec.model_dump(mode="json") if run.spec else {},
    }
