"""The one settings object. Nothing else in Pressroom reads the environment."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from schemas.post import FrontMatterDefaults
from workers.errors import ConfigError, redact
from workers.providers.profiles import PROFILES, Profile, ProviderName, Structured

OPENAI_URL = "https://api.openai.com/v1"

PublishTargetName = Literal["directory", "git", "webhook"]
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRESSROOM_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    # distributed mode: unset means embedded (in-process broker, local store)
    broker_url: str | None = Field(default=None, description="redis://host:6379/0; unset = embedded")
    redis_url: str | None = Field(default=None, description="run state; defaults to the broker URL")
    storage_url: str | None = Field(default=None, description="s3://bucket/prefix or a directory")
    s3_endpoint_url: str | None = Field(default=None, description="MinIO or other S3-compatible endpoint")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".local" / "share" / "pressroom")
    out_dir: Path | None = Field(default=None, description="posts are also written here")

    # providers: each falls back to OPENAI_BASE_URL / OPENAI_API_KEY
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    openai_api_key: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    transcription_base_url: str | None = None
    transcription_api_key: str | None = None
    transcription_model: str = "whisper-1"
    transcription_timeout: float = Field(default=600.0, gt=0)
    transcription_max_retries: int = Field(
        default=2, ge=0, description="quick in-request retries (429 with Retry-After, 5xx) before the step's own"
    )
    plan_workers: int = Field(
        default=4, ge=1, le=1000, description="pool processes to plan a fanned-out step's parts for when no "
        "worker of its queue announces itself (embedded mode, or workers not started yet)")
    transcription_chunk_seconds: float = Field(
        default=300.0, ge=60, le=4200, description="longest piece of audio sent in one transcription request")
    llm_provider: ProviderName = Field(
        default="openai", description="the LLM provider's profile (workers/providers/profiles.py): base URL, "
        "structured-output mode, prices, limits; each can be overridden below")
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str | None = Field(default=None, description="the model; unset: the provider's")
    llm_structured_output: Structured | None = Field(
        default=None, description="auto, json_schema, json_object or text; unset: the provider's")
    llm_context_window: int | None = Field(default=None, gt=0, description="tokens; unset: the provider's")
    llm_max_output: int | None = Field(default=None, gt=0, description="tokens; unset: the provider's")
    llm_timeout: float = Field(default=180.0, gt=0)
    llm_max_retries: int = Field(
        default=3, ge=0, description="quick in-request retries (429 with Retry-After, 5xx) before the step's own"
    )

    # shared limits per provider endpoint, across every worker (workers/providers/limiter.py); unset = none
    transcription_rpm: int | None = Field(default=None, gt=0, description="transcription requests per minute")
    transcription_tpm: int | None = Field(default=None, gt=0, description="transcription tokens per minute")
    transcription_concurrency: int | None = Field(default=None, gt=0, description="transcription requests in flight")
    llm_rpm: int | None = Field(default=None, gt=0, description="LLM requests per minute, all workers together")
    llm_tpm: int | None = Field(default=None, gt=0, description="LLM tokens per minute (prompt + max output)")
    llm_concurrency: int | None = Field(default=None, gt=0, description="LLM requests in flight, all workers together")
    provider_max_wait: float = Field(
        default=5.0, ge=0, le=120,
        description="seconds a task may wait for a provider limit; longer, it goes back to the queue to wait")

    # prices for the dashboard's cost estimate (USD)
    transcription_usd_per_minute: float = Field(default=0.006, ge=0, description="transcription price per audio minute")
    llm_usd_per_million_input: float | None = Field(default=None, ge=0, description="LLM price per million input "
                                                     "tokens; unset: the provider's")
    llm_usd_per_million_cached_input: float | None = Field(default=None, ge=0, description="LLM price per million "
                                                            "cached input tokens; unset: the provider's")
    llm_usd_per_million_output: float | None = Field(default=None, ge=0, description="LLM price per million "
                                                      "output tokens; unset: the provider's")

    # spending caps in USD (estimated at the prices above); a paid call that would pass one is not made
    budget_usd_per_run: float | None = Field(default=None, gt=0, description="per run")
    budget_usd_per_channel_day: float | None = Field(default=None, gt=0, description="per watched channel per "
                                                      "UTC day")
    budget_usd_per_day: float | None = Field(default=None, gt=0, description="everything, per UTC day")

    front_matter: FrontMatterDefaults = Field(default_factory=FrontMatterDefaults)
    glossary_file: Path | None = Field(default=None, description="YAML glossary used when a run names none")
    captions: Literal["off", "human", "auto"] = Field(
        default="human", description="use a video's captions instead of paid transcription: human ones, or auto too"
    )

    # channel watching
    channels_file: Path | None = Field(default=None, description="YAML list of the channels to watch")
    feed_url_template: str = Field(
        default="https://www.youtube.com/feeds/videos.xml?channel_id={channel_id}",
        description="where a channel's feed is read; {channel_id} is replaced",
    )
    poll_interval: int = Field(default=900, ge=10, description="seconds between polls of each channel's feed")
    poll_backoff_max: int = Field(default=6 * 3600, ge=60, description="longest wait after a channel's feed fails")

    websub_secret: str | None = Field(default=None, description="master secret; each channel's is derived from it")
    websub_callback_base: str | None = Field(default=None, description="public URL the hub calls: <base>/websub/<id>")
    websub_hub_url: str = Field(default="https://pubsubhubbub.appspot.com/subscribe", description="the WebSub hub")
    websub_lease_seconds: int = Field(default=432000, ge=3600, description="subscription lease asked of the hub")

    # retry dashboard
    dashboard_url: str | None = Field(
        default=None, description="the CLI's runs/retry/cancel go through this dashboard API; unset = Redis"
    )
    dashboard_token: SecretStr | None = Field(
        default=None, description="bearer token for the dashboard's actions; unset = read-only, loopback only"
    )

    # publishing: where finished posts go besides the store (and PRESSROOM_OUT_DIR)
    publish_targets: Annotated[list[PublishTargetName], NoDecode] = Field(
        default_factory=list, description="targets every post goes to: directory, git, webhook (a JSON list or "
        "comma-separated); empty = only the store and PRESSROOM_OUT_DIR; a channel's publish_targets overrides it")
    publish_dir: Path | None = Field(default=None, description="the directory target: posts are written here")
    publish_git_url: str | None = Field(default=None, description="the git target: the site repository (any git "
                                        "URL; credentials in it are never printed)")
    publish_git_branch: str = Field(default="main", description="the git target's branch for published posts")
    publish_git_path: str = Field(default="posts", description="the git target's directory inside the repository")
    publish_git_branch_per_post: bool = Field(
        default=False, description="drafts go to branch pressroom/<post name> for review; other posts to the branch")
    publish_git_author: str = Field(default="Pressroom <pressroom@localhost>",
                                    description="author of the git target's commits: Name <email>")
    publish_webhook_url: str | None = Field(default=None, description="the webhook target: posts are POSTed here")
    publish_webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key of the webhook's X-Pressroom-Signature header")
    publish_timeout: float = Field(default=30.0, gt=0, description="seconds each git command or webhook request "
                                   "may take")

    # limits: what each input may be; a refusal names the limit and its setting
    max_input_bytes: int = Field(default=8 * 1024**3, ge=1024, description="largest media file taken (bytes)")
    max_input_duration: float = Field(default=6 * 3600, gt=0, description="longest talk taken (seconds)")
    max_glossary_bytes: int = Field(default=1_000_000, ge=100, description="largest glossary file (bytes)")
    max_glossary_terms: int = Field(default=5000, ge=1, description="most terms in a glossary")
    max_transcript_chars_per_second: float = Field(
        default=60.0, gt=0, description="a transcription longer than this per second of audio is refused (speech "
        "runs at ~15 characters a second)")
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="largest body a WebSub notification or "
                                   "dashboard request may have (bytes)")
    audit_retention_days: float = Field(default=90.0, gt=0, description="days the audit log keeps an entry")

    # Celery
    visibility_timeout: int = Field(
        default=60, ge=5, description="seconds after which the messages of a worker that stopped refreshing them "
        "(it died) go to another worker; workers refresh theirs every timeout/6 s")
    stall_after: int = Field(default=120, ge=10, description="seconds without progress, and with no message "
                             "behind it, after which the reconciler re-drives a run")
    worker_concurrency: int = Field(default=2, ge=1)
    embedded_concurrency: int = Field(default=4, ge=1)

    @field_validator("feed_url_template")
    @classmethod
    def _feed_template(cls, v: str) -> str:
        if "{channel_id}" not in v or urlparse(v.replace("{channel_id}", "x")).scheme not in {"http", "https"}:
            raise ValueError(f"{v!r} must be an http(s) URL containing {{channel_id}}")
        return v

    @field_validator("broker_url", "redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v and urlparse(v).scheme not in {"redis", "rediss", "memory"}:
            raise ValueError(f"{redact(v)!r} is not a Redis URL: use redis://host:6379/0 (or leave unset for "
                             "embedded)")
        return v or None

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        scheme = urlparse(v).scheme
        if scheme == "s3" or v.startswith("s3:"):
            parsed = urlparse(v)
            if parsed.scheme != "s3" or not v.startswith("s3://") or len(parsed.netloc) < 3:
                raise ValueError(f"{v!r} is not valid: use s3://bucket/prefix (bucket of 3+ characters)")
        elif "://" in v or (scheme and len(scheme) > 1):
            raise ValueError(f"{redact(v)!r}: storage scheme {scheme!r} is not supported: use s3://bucket/prefix "
                             "(any S3-compatible store) or a directory path")
        return v

    @field_validator("s3_endpoint_url", "transcription_base_url", "llm_base_url", "openai_base_url",
                     "websub_callback_base", "websub_hub_url", "dashboard_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v and (urlparse(v).scheme not in {"http", "https"} or not urlparse(v).hostname):
            raise ValueError(f"{redact(v)!r} is not an http(s) URL, e.g. http://127.0.0.1:8000/v1")
        return v or None

    # --- publishing ---------------------------------------------------------------------------------
    @field_validator("publish_targets", mode="before")
    @classmethod
    def _publish_targets(cls, v: object) -> object:
        """A JSON list, or names separated by commas (`git,webhook`); each name once, in order."""
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                try:
                    v = json.loads(text)
                except ValueError:
                    raise ValueError(f"{text!r} is not a JSON list: use [\"git\",\"webhook\"] or git,webhook") from None
            else:
                v = [part.strip() for part in text.split(",") if part.strip()]
        if isinstance(v, list):
            known = get_args(PublishTargetName)
            unknown = [name for name in v if name not in known]
            if unknown:
                raise ValueError(f"unknown publish target {unknown[0]!r}: use any of {', '.join(known)}")
            return list(dict.fromkeys(v))
        return v

    @field_validator("publish_git_url", "publish_git_branch", "publish_git_path", "publish_git_author")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v.strip() if isinstance(v, str) else v

    @field_validator("publish_git_url")
    @classmethod
    def _git_url(cls, v: str | None) -> str | None:
        if v and (v.startswith("-") or any(c in v for c in "\n\r\0")):
            raise ValueError(f"{redact(v)!r} is not a git URL, e.g. https://github.com/org/site.git or "
                             "git@github.com:org/site.git")
        return v or None

    @field_validator("publish_git_branch")
    @classmethod
    def _git_branch(cls, v: str) -> str:
        if not _BRANCH.fullmatch(v) or ".." in v or v.endswith((".", "/", ".lock")) or "//" in v or "/." in v:
            raise ValueError(f"{v!r} is not a branch name, e.g. main")
        return v

    @field_validator("publish_git_path")
    @classmethod
    def _git_path(cls, v: str) -> str:
        parts = [p for p in v.replace("\\", "/").split("/") if p not in ("", ".")]
        if v.startswith("/") or ".." in parts or any(p.startswith(".git") for p in parts):
            raise ValueError(f"{v!r} must be a directory relative to the repository's root, e.g. posts or "
                             "src/posts (empty = the root)")
        return "/".join(parts)

    @field_validator("publish_git_author")
    @classmethod
    def _git_author(cls, v: str) -> str:
        name, email = parseaddr(v)
        if not name or "@" not in email or any(c in v for c in "\n\r\0"):
            raise ValueError(f"{v!r} is not Name <email>, e.g. Pressroom <pressroom@example.org>")
        return v

    @field_validator("publish_webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if v and (urlparse(v).scheme not in {"http", "https"} or not urlparse(v).hostname):
            raise ValueError(f"{redact(v)!r} is not an http(s) URL, e.g. https://site.example/hooks/pressroom")
        return v or None

    @model_validator(mode="after")
    def _publish_settings_present(self) -> Settings:
        """Each listed target has what it needs; a missing one is named now, not at the first post."""
        missing = self.publish_target_problems(self.publish_targets)
        if missing:
            raise ValueError("; ".join(missing))
        return self

    def publish_target_problems(self, names: Sequence[str]) -> list[str]:
        """What the named publish targets lack, one line each (empty when all are configured)."""
        problems = []
        for name in names:
            if name == "directory" and self.publish_dir is None:
                problems.append("PRESSROOM_PUBLISH_DIR is not set but the directory publish target is on: set it "
                                "to the directory posts go to")
            elif name == "git" and not self.publish_git_url:
                problems.append("PRESSROOM_PUBLISH_GIT_URL is not set but the git publish target is on: set it to "
                                "the site repository's URL")
            elif name == "webhook" and not self.publish_webhook_url:
                problems.append("PRESSROOM_PUBLISH_WEBHOOK_URL is not set but the webhook publish target is on: set "
                                "it to the receiver's http(s) URL")
            elif name == "webhook" and not (self.publish_webhook_secret
                                            and self.publish_webhook_secret.get_secret_value()):
                problems.append("PRESSROOM_PUBLISH_WEBHOOK_SECRET is not set but the webhook publish target is on: "
                                "set it to the key the receiver checks signatures with")
        return problems

    # --- derived -----------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        return self.broker_url is None or self.broker_url.startswith("memory")

    @property
    def state_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        return None if self.embedded else self.broker_url

    @property
    def store_url(self) -> str:
        return self.storage_url or str(self.data_dir / "store")

    def transcription_endpoint(self) -> tuple[str, str]:
        return self._endpoint(self.transcription_base_url, self.transcription_api_key, "TRANSCRIPTION")

    def llm_endpoint(self) -> tuple[str, str]:
        """The LLM's URL and key: PRESSROOM_LLM_BASE_URL, else a provider's own URL, else OPENAI_BASE_URL."""
        return self._endpoint(self._llm_base_url(), self.llm_api_key, "LLM")

    def _llm_base_url(self) -> str | None:
        return self.llm_base_url or (PROFILES[self.llm_provider].base_url if self.llm_provider != "openai" else None)

    def llm_profile(self) -> Profile:
        """The provider's profile with every field this configuration overrides."""
        base = PROFILES[self.llm_provider]
        overrides: dict[str, Any] = {"model": self.llm_model, "structured": self.llm_structured_output,
                     "usd_per_million_input": self.llm_usd_per_million_input,
                     "usd_per_million_cached_input": self.llm_usd_per_million_cached_input,
                     "usd_per_million_output": self.llm_usd_per_million_output,
                     "context_window": self.llm_context_window, "max_output": self.llm_max_output}
        url = self._llm_base_url() or self.openai_base_url or OPENAI_URL  # no key needed to price a call
        return dataclasses.replace(base, base_url=url,
                                   **{k: v for k, v in overrides.items() if v is not None})

    @property
    def llm_model_name(self) -> str:
        """The model the LLM steps use (part of their artifacts' keys)."""
        return self.llm_model or PROFILES[self.llm_provider].model

    def _endpoint(self, base_url: str | None, api_key: str | None, name: str) -> tuple[str, str]:
        url = base_url or self.openai_base_url or OPENAI_URL
        key = api_key or self.openai_api_key
        if not key:
            if urlparse(url).hostname == "api.openai.com":
                raise ConfigError(
                    f"no API key for {url}: set PRESSROOM_{name}_API_KEY or OPENAI_API_KEY, "
                    f"or point PRESSROOM_{name}_BASE_URL at an OpenAI-compatible server"
                )
            key = "unused"  # local OpenAI-compatible servers accept any key
        return url, key


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one line that names the variable and the fix."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:  # a nested setting (PRESSROOM_FRONT_MATTER__…) that is not valid JSON
        cause = exc.__cause__
        detail = f" ({' '.join(str(cause).split())[:120]})" if cause else ""
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "a setting"
        raise ConfigError(f"bad setting — PRESSROOM_{field.upper()}__…: cannot read its value{detail}; "
                          "lists are JSON, e.g. PRESSROOM_FRONT_MATTER__PROJECT='[\"ai\"]'") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = "__".join(str(p) for p in err["loc"]).upper()
            name = loc if loc.startswith("OPENAI_") else f"PRESSROOM_{loc}"
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}" if loc else message)  # a check across settings names its own
        raise ConfigError("bad setting — " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
