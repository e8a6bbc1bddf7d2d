"""What a task needs at run time — settings, store, run state, providers — built once per process."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, cast

from schemas.glossary import Glossary
from schemas.run import RunSpec
from workers.settings import Settings
from workers.state import KV, MemoryKV, RunState
from workers.storage import ObjectStore, open_store

if TYPE_CHECKING:
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

    def glossary(self, run: RunSpec) -> Glossary:
        """The run's glossary (stored by content hash, so it is read once per process)."""
        if not run.glossary_key:
            return Glossary()
        if run.glossary_key not in self._glossaries:
            from workers.glossary import GlossaryLimits, parse_glossary

            self._glossaries[run.glossary_key] = parse_glossary(
                self.store.get_bytes(run.glossary_key), run.glossary_key, GlossaryLimits.of(self.settings))
        return self._glossaries[run.glossary_key]

    @cached_property
    def transcriber(self) -> Transcriber:
        from workers.providers.openai_transcription import OpenAITranscriber

        url, key = self.settings.transcription_endpoint()
        s = self.settings
        return OpenAITranscriber(url, key, s.transcription_model, s.transcription_timeout, s.transcription_max_retries,
                                 max_chars_per_second=s.max_transcript_chars_per_second)

    @cached_property
    def llm(self) -> LLM:
        from workers.providers.openai_llm import OpenAILLM

        url, key = self.settings.llm_endpoint()
        return OpenAILLM(url, key, self.settings.llm_model, self.settings.llm_timeout, self.settings.llm_max_retries)
