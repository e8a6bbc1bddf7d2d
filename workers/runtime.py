"""What a task needs at run time — settings, store, run state, providers — built once per process."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, cast

from schemas.glossary import Glossary
from schemas.pipeline import Step
from schemas.run import RunSpec
from workers.settings import Settings
from workers.state import KV, MemoryKV, RunState
from workers.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from workers.budget import Budget
    from workers.metrics.store import MetricsStore
    from workers.providers.gate import ProviderGate
    from workers.providers.llm import LLM
    from workers.providers.transcription import Transcriber


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._glossaries: dict[str, Glossary] = {}

    @cached_property
    def store(self) -> ObjectStore:
        s = self.settings
        return open_store(s.store_url, endpoint_url=s.s3_endpoint_url, region=s.s3_region,
                          access_key_id=s.s3_access_key_id, secret_access_key=s.s3_secret_access_key)

    @cached_property
    def state(self) -> RunState:
        url = self.settings.state_url
        if url is None:
            return RunState(MemoryKV())
        import redis

        client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        return RunState(cast(KV, client))

    @cached_property
    def metrics(self) -> MetricsStore:
        from workers.metrics.store import MetricsStore

        return MetricsStore(self.state.kv)

    def capacity(self, step: Step) -> int:
        """Pool processes serving the step's queue now (workers/capacity.py), or PRESSROOM_PLAN_WORKERS."""
        from workers import keys
        from workers.capacity import live_capacity
        from workers.state import is_redis

        if is_redis(self.state.kv):
            try:
                return live_capacity(self.state.kv, keys.QUEUES[step]) or self.settings.plan_workers
            except Exception:  # Redis trouble here is the delivery's business, not planning's
                return self.settings.plan_workers
        return self.settings.plan_workers

    def glossary(self, run: RunSpec) -> Glossary:
        """The run's glossary (stored by content hash, so it is read once per process)."""
        if not run.glossary_key:
            return Glossary()
        if run.glossary_key not in self._glossaries:
            from workers.glossary import GlossaryLimits, parse_glossary

            self._glossaries[run.glossary_key] = parse_glossary(
                self.store.get_bytes(run.glossary_key), run.glossary_key, GlossaryLimits.of(self.settings))
        return self._glossaries[run.glossary_key]

    def gate(self, role: str, base_url: str, model: str, timeout: float) -> ProviderGate:
        """The gate of one provider endpoint: its shared limits (in Redis, or this process when embedded)
        and its metrics."""
        from workers.providers.gate import Prices, ProviderGate, endpoint_id
        from workers.providers.limiter import Limiter, Limits, MemoryLimiter, RedisLimiter
        from workers.state import is_redis

        s = self.settings
        limits = Limits(getattr(s, f"{role}_rpm"), getattr(s, f"{role}_tpm"), getattr(s, f"{role}_concurrency"))
        limiter: Limiter | None = None
        if limits.any:
            kv = self.state.kv
            endpoint = endpoint_id(base_url, model)
            limiter = RedisLimiter(kv, endpoint, limits) if is_redis(kv) else MemoryLimiter(limits)
        if role == "llm":
            p = s.llm_profile()
            prices = Prices(p.usd_per_million_input, p.usd_per_million_output,
                            usd_per_million_cached_input=p.usd_per_million_cached_input)
        else:
            prices = Prices(usd_per_audio_minute=s.transcription_usd_per_minute)
        return ProviderGate(role, base_url, model, limiter=limiter, limits=limits, metrics=self.metrics,
                            prices=prices, max_wait=s.provider_max_wait, lease=timeout + 30,
                            setting_prefix=f"PRESSROOM_{role.upper()}", budget=self.budget,
                            usage=lambda run_id, step, usage: self.state.add_usage(run_id, Step(step), usage))

    @cached_property
    def budget(self) -> Budget:
        from workers.budget import Budget, Caps

        s = self.settings
        return Budget(self.state.kv, Caps(s.budget_usd_per_run, s.budget_usd_per_channel_day, s.budget_usd_per_day))

    @cached_property
    def transcriber(self) -> Transcriber:
        from workers.providers.openai_transcription import OpenAITranscriber

        url, key = self.settings.transcription_endpoint()
        s = self.settings
        gate = self.gate("transcription", url, s.transcription_model, s.transcription_timeout)
        # with shared limits, every request goes through them: no quick retries inside the SDK
        retries = 0 if gate.limits.any else s.transcription_max_retries
        return OpenAITranscriber(url, key, s.transcription_model, s.transcription_timeout, retries,
                                 max_chars_per_second=s.max_transcript_chars_per_second, gate=gate)

    @cached_property
    def llm(self) -> LLM:
        from workers.providers.openai_llm import ModeMemory, OpenAILLM

        url, key = self.settings.llm_endpoint()
        s = self.settings
        profile = s.llm_profile()
        gate = self.gate("llm", url, profile.model, s.llm_timeout)
        retries = 0 if gate.limits.any else s.llm_max_retries
        return OpenAILLM(url, key, profile.model, s.llm_timeout, retries, gate=gate, profile=profile,
                         modes=ModeMemory(self.state.kv))
