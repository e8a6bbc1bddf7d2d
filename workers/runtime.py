"""What a task needs at run time — settings, store, run state, providers — built once per process."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, cast

from workers.settings import Settings
from workers.state import KV, MemoryKV, RunState
from workers.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from workers.providers.llm import LLM
    from workers.providers.transcription import Transcriber


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

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
    def transcriber(self) -> Transcriber:
        from workers.providers.transcription import OpenAITranscriber

        url, key = self.settings.transcription_endpoint()
        return OpenAITranscriber(url, key, self.settings.transcription_model, self.settings.transcription_timeout)

    @cached_property
    def llm(self) -> LLM:
        from workers.providers.llm import OpenAILLM

        url, key = self.settings.llm_endpoint()
        return OpenAILLM(url, key, self.settings.llm_model, self.settings.llm_timeout)
