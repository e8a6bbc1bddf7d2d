"""docker-compose.yml and .env.example checked against the code: queues, Redis durability, setting names.

The YAML checks need nothing installed. If a compose CLI is on PATH (`docker-compose`, or `docker compose`),
the file is also validated by it (`config -q`); without one a warning says that part did not run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo

from schemas.events import Step
from workers import keys
from workers.retry import POLICIES
from workers.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

# A setting-like name anywhere in a file, comments included: PRESSROOM_… or OPENAI_…
MENTION = re.compile(r"(?<![A-Za-z0-9_])(?:PRESSROOM|OPENAI)_[A-Z0-9_]+")
# A documented variable in .env.example: `NAME=value` or `# NAME=value` (indented lines are examples)
ENTRY = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$")
DEFAULT = re.compile(r"\(default: `([^`]*)`\)")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


# --- what the code accepts ------------------------------------------------------------------------------
def _env_names(name: str, field: FieldInfo) -> list[str]:
    """The environment names pydantic-settings reads for one top-level field of Settings."""
    config = Settings.model_config
    alias = field.validation_alias
    names = [c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices) else []
    if isinstance(alias, str):
        names.append(alias)
    if not names or config.get("populate_by_name"):
        names.append(f"{config.get('env_prefix', '')}{name}")
    return [n.upper() for n in names]


def _nested_model(field: FieldInfo) -> type[BaseModel] | None:
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def setting_names() -> tuple[set[str], dict[str, FieldInfo]]:
    """(every name Settings reads, {the name to document: its field}) — nested models by their keys."""
    delimiter = Settings.model_config.get("env_nested_delimiter") or "__"
    valid: set[str] = set()
    documented: dict[str, FieldInfo] = {}
    for name, field in Settings.model_fields.items():
        names = _env_names(name, field)
        valid.update(names)  # a nested model also reads its whole value as JSON
        model = _nested_model(field)
        if model is None:
            documented[names[0]] = field
            continue
        for sub_name, sub_field in model.model_fields.items():
            for prefix in names:
                valid.add(f"{prefix}{delimiter}{sub_name}".upper())
            documented[f"{names[0]}{delimiter}{sub_name}".upper()] = sub_field
    return valid, documented


def rendered_default(field: FieldInfo) -> str:
    """A field's default as .env.example writes it in `(default: `…`)`."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Path):
        home = str(Path.home())
        return "~" + str(value)[len(home) :] if str(value).startswith(home) else str(value)
    if isinstance(value, list):
        return json.dumps(value)
    return str(value) if value != "" else "empty"


# --- the files -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def env_example_entries() -> dict[str, tuple[str, list[str]]]:
    """{name: (example value, the comment lines just above it)} of .env.example, first entry of a name."""
    entries: dict[str, tuple[str, list[str]]] = {}
    comments: list[str] = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENTRY.match(line)
        if match:
            entries.setdefault(match[1], (match[2], comments))
            comments = []
        elif line.startswith("#"):
            comments.append(line)
        else:
            comments = []
    return entries


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def resolve(value: Any) -> str:
    """A compose value with `${VAR:-default}` replaced by its default, as when VAR is not set."""
    return INTERPOLATION.sub(lambda m: m[2] or "", str(value)).replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: resolve(v) for k, v in env.items()}


def seconds(duration: str) -> int:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(duration))
    assert parts and any(parts.groups()), f"unexpected duration {duration!r}"
    h, m, s = (int(p or 0) for p in parts.groups())
    return h * 3600 + m * 60 + s


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a container with exactly this environment (of Pressroom's names) would load them."""
    for name in list(os.environ):
        if name.upper().startswith(("PRESSROOM_", "OPENAI_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


# --- workers ---------------------------------------------------------------------------------------------
def test_one_worker_service_per_queue(compose: dict[str, Any]) -> None:
    services = compose["services"]
    workers = {name: svc for name, svc in services.items() if name.startswith("worker-")}
    assert set(workers) == {f"worker-{step.value}" for step in keys.QUEUES} | {"worker-watch"}
    assert argv(services["worker-watch"]["command"]) == ["worker", "--queues", "watch"]
    assert argv(services["beat"]["command"]) == ["beat"]
    for step, queue in keys.QUEUES.items():
        service = workers[f"worker-{step.value}"]
        args = argv(service["command"])
        assert args[0] == "worker" and "--queues" in args, args
        names = args[args.index("--queues") + 1].split(",")
        assert names == [step.value], f"worker-{step.value} works {names}"
        assert [keys.QUEUES[Step(n)] for n in names] == [queue]  # what `pressroom worker` consumes

        env = environment(service)
        assert int(env["PRESSROOM_WORKER_CONCURRENCY"]) >= 1, f"worker-{step.value}: own concurrency"
        assert service.get("restart") == "unless-stopped"
        grace = seconds(service["stop_grace_period"])
        assert grace >= POLICIES[step].time_limit, f"worker-{step.value}: grace shorter than the step's limit"
        depends = service["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["minio"]["condition"] == "service_healthy"
        assert depends["minio-init"]["condition"] == "service_completed_successfully"


def test_workers_load_distributed_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    minio_env = environment(services["minio"])
    for step in keys.QUEUES:
        env = environment(services[f"worker-{step.value}"])
        settings = settings_from(env, monkeypatch)
        assert not settings.embedded
        assert settings.broker_url == "redis://redis:6379/0"
        assert settings.store_url.startswith("s3://")
        assert settings.s3_endpoint_url == "http://minio:9000"
        assert settings.s3_access_key_id == minio_env["MINIO_ROOT_USER"]
        assert settings.s3_secret_access_key == minio_env["MINIO_ROOT_PASSWORD"]
        assert settings.worker_concurrency == int(env["PRESSROOM_WORKER_CONCURRENCY"])


def test_minio_init_creates_the_storage_bucket(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bucket = environment(services["worker-download"])["PRESSROOM_STORAGE_URL"].removeprefix("s3://")
    bucket = bucket.split("/", 1)[0]
    args = argv(services["minio-init"]["command"])
    assert "mb" in args and args[-1].endswith(f"/{bucket}"), args
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_tools_and_rehearsal(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    assert services["submit"]["profiles"] == ["tools"]
    assert argv(services["submit"]["entrypoint"]) == ["pressroom", "submit"]
    assert not settings_from(environment(services["submit"]), monkeypatch).embedded

    run = services["run"]
    assert run["profiles"] == ["tools"]
    assert argv(run["entrypoint"]) == ["pressroom", "run"]
    settings = settings_from(environment(run), monkeypatch)
    assert settings.embedded and settings.storage_url is None
    assert any(str(v).split(":")[1] == str(settings.out_dir) for v in run["volumes"]), "out dir is bind-mounted"

    simulator = services["simulator"]
    assert simulator["profiles"] == ["rehearsal"]
    args = argv(simulator["command"])
    assert args[0] == "simulate" and args[args.index("--host") + 1] == "0.0.0.0"


# --- Redis -----------------------------------------------------------------------------------------------
def test_redis_is_durable_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    args = argv(redis["command"])
    options = dict(zip(args[1::2], args[2::2], strict=False))
    assert args[0] == "redis-server"
    assert options.get("--appendonly") == "yes"
    assert options.get("--appendfsync") == "everysec"
    assert options.get("--maxmemory-policy") == "noeviction"
    assert any(str(v).endswith(":/data") for v in redis["volumes"]), "AOF needs a volume on /data"
    assert "redis-cli" in argv(redis["healthcheck"]["test"]) and "ping" in argv(redis["healthcheck"]["test"])


# --- setting names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [COMPOSE, ENV_EXAMPLE], ids=lambda p: p.name)
def test_every_mentioned_setting_exists(path: Path) -> None:
    valid, _ = setting_names()
    mentioned = set(MENTION.findall(path.read_text()))
    assert mentioned, f"{path.name} names no setting"
    unknown = sorted(mentioned - valid)
    assert not unknown, f"{path.name} names settings that workers/settings.py does not read: {unknown}"


def test_every_setting_is_documented_with_its_default() -> None:
    _, documented = setting_names()
    entries = env_example_entries()
    missing = sorted(set(documented) - set(entries))
    assert not missing, f".env.example does not document {missing}"
    for name, field in documented.items():
        _, comments = entries[name]
        defaults = [m for line in comments for m in DEFAULT.findall(line)]
        assert defaults, f".env.example: {name} needs a comment line with (default: `…`) above it"
        assert defaults[-1] == rendered_default(field), f".env.example: {name}'s default is wrong"


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    valid, _ = setting_names()
    env = {name: value for name, (value, _) in env_example_entries().items() if name in valid}
    settings = settings_from(env, monkeypatch)  # raises ConfigError naming the bad variable
    assert settings.front_matter.project == json.loads(env["PRESSROOM_FRONT_MATTER__PROJECT"])


# --- the compose CLI -------------------------------------------------------------------------------------
def compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def test_compose_file_is_valid(compose: dict[str, Any], tmp_path: Path) -> None:
    """PyYAML parsed it (the fixture), and compose itself accepts it with .env.example as .env."""
    assert {"redis", "minio", "minio-init"} <= set(compose["services"])
    assert set(compose.get("volumes") or {}) >= {"redis-data", "minio-data"}
    cli = compose_cli()
    assert cli is not None, "no docker-compose on PATH: ./run-tests installs it (apt-get install docker-compose)"
    # A copy, so .env (which compose requires) is .env.example and the real .env is never touched.
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    result = subprocess.run(
        [*cli, "-f", "docker-compose.yml", "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{' '.join(cli)} config rejected docker-compose.yml:\n{result.stderr}"
