"""infra/k8s (the kustomize base with KEDA) checked offline against the real schemas and against the code.

No kustomize binary is needed: the resources listed in kustomization.yaml are loaded as they are. Kubernetes'
own kinds are validated with kubernetes-validate (the Kubernetes JSON schemas, shipped in the package) in
strict mode, so an unknown or misspelt field fails as `kubectl apply` would. KEDA's ScaledObject and
TriggerAuthentication are validated with jsonschema against the openAPIV3Schema of KEDA's CRDs, kept in
tests/fixtures/k8s (README.md there says which KEDA release), made strict the same way.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices, BaseModel

from schemas.pipeline import PIPELINE
from workers import keys
from workers.retry import POLICIES
from workers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "infra" / "k8s"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the base is meant for
KEDA_SCHEMAS = {"ScaledObject": "keda-scaledobject-v1alpha1.schema.json",
                "TriggerAuthentication": "keda-triggerauthentication-v1alpha1.schema.json"}
SECRET_EXAMPLE = K8S / "secret.example.yaml"
MAX_REPLICAS = {"download": 4, "transcribe": 6, "translate": 10, "tag": 4, "publish": 4}

Obj = dict[str, Any]


# --- loading the base -----------------------------------------------------------------------------------
def _documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@cache
def kustomization() -> Obj:
    data: Obj = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return data


@cache
def objects() -> tuple[Obj, ...]:
    """Every object of the base, as `kubectl apply -k` would get it (less kustomize's labels and namespace)."""
    return tuple(doc for name in kustomization()["resources"] for doc in _documents(K8S / name))


def find(kind: str, name: str) -> Obj:
    found = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in infra/k8s, found {len(found)}"
    return found[0]


def of_kind(kind: str) -> list[Obj]:
    return [o for o in objects() if o["kind"] == kind]


def _id(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def pod_spec(deployment: Obj) -> Obj:
    spec: Obj = deployment["spec"]["template"]["spec"]
    return spec


def container(deployment: Obj) -> Obj:
    containers = pod_spec(deployment)["containers"]
    assert len(containers) == 1, f"{_id(deployment)}: one container expected"
    only: Obj = containers[0]
    return only


def env_value(deployment: Obj, name: str) -> str | None:
    for var in container(deployment).get("env", []):
        if var["name"] == name:
            value: str | None = var.get("value")
            return value
    return None


def triggers(scaled: Obj, kind: str) -> list[Obj]:
    return [t for t in scaled["spec"]["triggers"] if t["type"] == kind]


# --- the validators -------------------------------------------------------------------------------------
def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server does with field validation Strict (kubectl's
    default): every object with declared properties and no other rule for extra keys gets
    additionalProperties: false."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: (_strict(value) if key != "properties" else {k: _strict(v) for k, v in value.items()})
           for key, value in schema.items()}
    if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@cache
def keda_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = _strict(json.loads((FIXTURES / KEDA_SCHEMAS[kind]).read_text(encoding="utf-8")))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# a resource quantity as the API server parses it (the JSON schemas only say "string or number")
QUANTITY = re.compile(r"(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][-+]?\d+)?")


def validate(obj: Obj) -> None:
    """Raise if the object is not what its kind's schema allows."""
    if obj["apiVersion"].startswith("keda.sh/"):
        assert obj["apiVersion"] == "keda.sh/v1alpha1", f"{_id(obj)}: KEDA objects are keda.sh/v1alpha1"
        keda_validator(obj["kind"]).validate(obj)
        # the CRD leaves metadata open; the API server checks it as any object's ObjectMeta
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]},
                                     KUBERNETES_VERSION, strict=True)
        name = obj["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 253, f"bad name {name!r}"
        if obj["kind"] == "ScaledObject":
            # the CRD's one CEL rule (x-kubernetes-validations), which jsonschema cannot run
            spec = obj["spec"]
            if "minReplicaCount" in spec and spec["minReplicaCount"] > spec.get("maxReplicaCount", 100):
                raise jsonschema.ValidationError("minReplicaCount must be less than or equal to maxReplicaCount")
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        if obj["kind"] == "Deployment":
            for c in obj["spec"]["template"]["spec"]["containers"]:
                for amounts in c.get("resources", {}).values():
                    for what, amount in amounts.items():
                        if not QUANTITY.fullmatch(str(amount)):
                            raise jsonschema.ValidationError(f"{_id(obj)}: {what} {amount!r} is not a quantity")


# --- the base as a whole --------------------------------------------------------------------------------
def test_kustomization_lists_the_resources_and_not_the_example_secret() -> None:
    k = kustomization()
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    listed = k["resources"]
    assert len(listed) == len(set(listed))
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists {name}, which is not in infra/k8s"
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk - set(listed) == {SECRET_EXAMPLE.name}, "every manifest but the example secret is a resource"
    assert not of_kind("Secret"), "real credentials are never part of the base (secret.example.yaml is an example)"
    assert [i["name"] for i in k.get("images", [])] == ["pressroom"]  # the image is a parameter


def test_names_are_unique() -> None:
    ids = [_id(o) for o in objects()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("obj", [*objects(), *_documents(SECRET_EXAMPLE)], ids=_id)
def test_object_matches_its_schema(obj: Obj) -> None:
    validate(obj)


def test_validators_reject_a_broken_object() -> None:
    """The validators are not vacuous: a misspelt field, a wrong type or a broken rule is refused."""
    deployment = copy.deepcopy(find("Deployment", "pressroom-worker-translate"))
    validate(deployment)
    pod_spec(deployment)["terminationGracePeriod"] = 3660  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    deployment = copy.deepcopy(find("Deployment", "pressroom-worker-translate"))
    container(deployment)["args"] = "worker --queues translate"  # a string, not a list
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    deployment = copy.deepcopy(find("Deployment", "pressroom-worker-translate"))
    container(deployment)["resources"]["limits"]["memory"] = "2GB"  # 2G or 2Gi
    with pytest.raises(jsonschema.ValidationError, match="not a quantity"):
        validate(deployment)

    scaled = copy.deepcopy(find("ScaledObject", "pressroom-worker-translate"))
    validate(scaled)
    scaled["spec"]["pollingInterva"] = 15  # misspelt
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    scaled = copy.deepcopy(find("ScaledObject", "pressroom-worker-translate"))
    triggers(scaled, "redis")[0]["metadata"]["databaseIndex"] = 0  # trigger metadata values are strings
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    scaled = copy.deepcopy(find("ScaledObject", "pressroom-worker-translate"))
    scaled["spec"]["minReplicaCount"] = scaled["spec"]["maxReplicaCount"] + 1
    with pytest.raises(jsonschema.ValidationError, match="minReplicaCount"):
        validate(scaled)


# --- one worker and one scaler per step -----------------------------------------------------------------
def _compose_concurrency() -> dict[str, str]:
    """Each step worker's PRESSROOM_WORKER_CONCURRENCY in docker-compose.yml (its ${X:-default})."""
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    out = {}
    for step in PIPELINE:
        raw = str(services[f"worker-{step.value}"]["environment"]["PRESSROOM_WORKER_CONCURRENCY"])
        match = re.fullmatch(r"\$\{\w+:-(\d+)\}|(\d+)", raw)
        assert match, raw
        out[step.value] = match.group(1) or match.group(2)
    return out


@pytest.mark.parametrize("step", PIPELINE, ids=str)
def test_every_step_has_a_worker_and_a_scaler(step: Any) -> None:
    name = f"pressroom-worker-{step.value}"
    deployment = find("Deployment", name)
    args = container(deployment)["args"]
    assert args == ["worker", "--queues", step.value]
    assert container(deployment)["image"] == "pressroom:latest"
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count: a manifest value resets it on apply"
    assert env_value(deployment, "PRESSROOM_WORKER_CONCURRENCY") == _compose_concurrency()[step.value]
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > POLICIES[step].time_limit, "a warm shutdown must be able to outlast the step's longest task"

    scaled = find("ScaledObject", name)
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == name
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] == MAX_REPLICAS[step.value]
    assert spec["pollingInterval"] == 15 and spec["cooldownPeriod"] == 300
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert "fallback" not in spec, "without a fallback an erroring trigger keeps KEDA from scaling to zero"

    (redis,) = triggers(scaled, "redis")
    assert redis["metadata"]["listName"] == keys.QUEUES[step]
    assert redis["metadata"]["databaseIndex"] == "0"
    (backlog,) = triggers(scaled, "metrics-api")
    assert f'"{step.value}"' in backlog["metadata"]["valueLocation"]
    assert len(spec["triggers"]) == 2

    # desired = ceil(backlog / target): one piece of work per pool process
    concurrency = env_value(deployment, "PRESSROOM_WORKER_CONCURRENCY")
    assert redis["metadata"]["listLength"] == concurrency
    assert backlog["metadata"]["targetValue"] == concurrency


def test_no_worker_for_a_queue_that_does_not_exist() -> None:
    queues = {s.value for s in PIPELINE} | {"watch"}
    workers = [d for d in of_kind("Deployment") if container(d)["args"][0] == "worker"]
    for deployment in workers:
        args = container(deployment)["args"]
        assert args[1] == "--queues" and set(args[2].split(",")) <= queues, args
    assert {container(d)["args"][2] for d in workers} == queues
    scaled_targets = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind("ScaledObject")}
    assert scaled_targets == {f"pressroom-worker-{s.value}" for s in PIPELINE}  # watch is not scaled


# --- the backlog trigger reads the dashboard ------------------------------------------------------------
GJSON_QUERY = re.compile(r'(?P<array>\w+)\.#\((?P<key>\w+)=="(?P<value>[^"]*)"\)\.(?P<field>\w+)')


def gjson_get(body: Obj, path: str) -> Any:
    """The one GJSON form the triggers use, `array.#(key=="value").field`: the first match's field."""
    match = GJSON_QUERY.fullmatch(path)
    assert match, f"{path!r} is not of the form queues.#(step==\"…\").backlog"
    for item in body[match["array"]]:
        if item.get(match["key"]) == match["value"]:
            return item[match["field"]]
    return None


def test_backlog_trigger_reads_the_steps_backlog_from_the_dashboard() -> None:
    namespace = kustomization()["namespace"]
    service = find("Service", "pressroom-dashboard")
    (port,) = service["spec"]["ports"]
    # GET /api/queues as the dashboard answers it (workers/dashboard/queues.py), every step a different backlog
    body = {"status": "ok", "queues": [
        {"queue": keys.QUEUES[step], "step": step.value, "depth": i, "unacked": 1, "scheduled": 0,
         "backlog": i + 1} for i, step in enumerate(PIPELINE)
    ] + [{"queue": keys.WATCH_QUEUE, "step": None, "depth": 0, "unacked": 0, "scheduled": 0, "backlog": 0}]}
    for step in PIPELINE:
        (trigger,) = triggers(find("ScaledObject", f"pressroom-worker-{step.value}"), "metrics-api")
        meta = trigger["metadata"]
        url = urlparse(meta["url"])
        # KEDA's operator polls from its own namespace: the host must name the dashboard's Service and namespace
        assert url.scheme == "http" and url.hostname == f"pressroom-dashboard.{namespace}.svc"
        assert url.port == port["port"] and url.path == "/api/queues"
        assert meta.get("format", "json") == "json"
        assert gjson_get(body, meta["valueLocation"]) == PIPELINE.index(step) + 1
        assert "authenticationRef" not in trigger  # GET /api/queues needs no token
        assert float(meta["targetValue"]) > 0  # KEDA: desired = ceil(backlog / targetValue)


def test_redis_trigger_gets_its_address_from_keda_config() -> None:
    namespace = kustomization()["namespace"]
    auth_names = set()
    for scaled in of_kind("ScaledObject"):
        (redis,) = triggers(scaled, "redis")
        assert not {"address", "host", "addressFromEnv", "hostFromEnv"} & set(redis["metadata"])
        auth_names.add(redis["authenticationRef"]["name"])
    (auth_name,) = auth_names
    auth = find("TriggerAuthentication", auth_name)
    (ref,) = auth["spec"]["configMapTargetRef"]
    assert ref["parameter"] == "address"
    address = find("ConfigMap", ref["name"])["data"][ref["key"]]
    host, _, port = address.rpartition(":")
    assert host == f"redis.{namespace}.svc" and port.isdigit()
    # the broker the workers use is that Redis (database 0, the triggers' databaseIndex)
    broker = urlparse(find("ConfigMap", "pressroom-config")["data"]["PRESSROOM_BROKER_URL"])
    assert broker.hostname == host.split(".")[0] and str(broker.port) == port and broker.path in ("", "/0")


# --- settings -------------------------------------------------------------------------------------------
def _setting_names() -> set[str]:
    """Every environment name Settings reads: PRESSROOM_<field>, a field's aliases (OPENAI_API_KEY, …), and
    PRESSROOM_<model>__<field> for the nested models (front matter)."""
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    delimiter = str(Settings.model_config.get("env_nested_delimiter") or "__")
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c.upper() for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names |= {f"{prefix}{name}{delimiter}{sub}".upper() for sub in nested.model_fields}
    return names


def _settings_given() -> dict[str, set[str]]:
    """Every environment name the manifests give a Pressroom container, with where it comes from."""
    given: dict[str, set[str]] = {}
    config_maps = {c["metadata"]["name"]: c for c in of_kind("ConfigMap")}
    secret = _documents(SECRET_EXAMPLE)[0]
    for deployment in of_kind("Deployment"):
        for var in container(deployment).get("env", []):
            given.setdefault(var["name"], set()).add(_id(deployment))
        for source in container(deployment).get("envFrom", []):
            if "configMapRef" in source:
                for name in config_maps[source["configMapRef"]["name"]]["data"]:
                    given.setdefault(name, set()).add(f"ConfigMap/{source['configMapRef']['name']}")
            else:
                assert source["secretRef"]["name"] == secret["metadata"]["name"]
                for name in secret["stringData"]:
                    given.setdefault(name, set()).add(SECRET_EXAMPLE.name)
    return given


def test_every_variable_given_is_a_pressroom_setting() -> None:
    # KEDA's own configuration (the Redis address its redis triggers use) is not in any container's
    # environment: it is in the ConfigMap pressroom-keda, read only by the TriggerAuthentication, so no
    # name needs excluding here. A KEDA-only variable put in a container would fail this test.
    known = _setting_names()
    unknown = {name: sorted(where) for name, where in _settings_given().items() if name not in known}
    assert not unknown, f"not Pressroom settings (workers/settings.py): {unknown}"


def test_keda_config_is_read_by_no_pressroom_container() -> None:
    for deployment in of_kind("Deployment"):
        text = json.dumps(pod_spec(deployment))
        assert "pressroom-keda" not in text, f"{_id(deployment)} reads KEDA's ConfigMap"


def test_the_settings_given_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's values (and the example Secret's) load as Settings, as a container would load them."""
    import os

    for name in list(os.environ):
        if name.startswith(("PRESSROOM_", "OPENAI_")):
            monkeypatch.delenv(name)
    values = {**find("ConfigMap", "pressroom-config")["data"], **_documents(SECRET_EXAMPLE)[0]["stringData"]}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.broker_url and settings.storage_url and not settings.embedded


def test_dashboard_token_is_required_and_workers_read_the_secret() -> None:
    secret = _documents(SECRET_EXAMPLE)[0]
    assert "PRESSROOM_DASHBOARD_TOKEN" in secret["stringData"] and "PRESSROOM_WEBSUB_SECRET" in secret["stringData"]
    dashboard = find("Deployment", "pressroom-dashboard")
    (token,) = [v for v in container(dashboard)["env"] if v["name"] == "PRESSROOM_DASHBOARD_TOKEN"]
    ref = token["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "pressroom-secrets" and ref["key"] == "PRESSROOM_DASHBOARD_TOKEN"
    assert not ref.get("optional", False)
    for deployment in of_kind("Deployment"):
        sources = container(deployment)["envFrom"]
        assert [s.get("configMapRef", s.get("secretRef"))["name"] for s in sources] == \
            ["pressroom-config", "pressroom-secrets"], _id(deployment)


# --- the other roles ------------------------------------------------------------------------------------
def test_beat_is_a_singleton() -> None:
    beat = find("Deployment", "pressroom-beat")
    assert container(beat)["args"] == ["beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    assert not [s for s in of_kind("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == "pressroom-beat"]


def test_watch_worker_and_servers() -> None:
    watch = find("Deployment", "pressroom-worker-watch")
    assert container(watch)["args"] == ["worker", "--queues", "watch"]
    assert env_value(watch, "PRESSROOM_WORKER_CONCURRENCY") == "1"
    websub = find("Deployment", "pressroom-websub")
    assert container(websub)["args"] == ["websub", "--host", "0.0.0.0", "--port", "8080"]
    dashboard = find("Deployment", "pressroom-dashboard")
    assert container(dashboard)["args"] == ["dashboard", "--host", "0.0.0.0", "--port", "8090"]
    assert container(dashboard)["readinessProbe"]["httpGet"]["path"] == "/api/queues"
    service = find("Service", "pressroom-dashboard")
    assert [p["port"] for p in service["spec"]["ports"]] == [8090]
    for annotated in (service["metadata"], dashboard["spec"]["template"]["metadata"]):
        notes = annotated["annotations"]
        assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
        assert notes["prometheus.io/port"] == "8090"
    find("Service", "pressroom-websub")


def test_services_and_selectors_match_their_pods() -> None:
    deployments = of_kind("Deployment")
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), _id(deployment)
    for service in of_kind("Service"):
        selector = service["spec"]["selector"].items()
        chosen = [d for d in deployments if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(chosen) == 1, f"{_id(service)} selects {[_id(d) for d in chosen]}"
        ports = container(chosen[0]).get("ports", [])
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(target in (p.get("name"), p["containerPort"]) for p in ports), f"{_id(service)}: {target}"


def test_pods_run_unprivileged_with_a_writable_tmp() -> None:
    for deployment in of_kind("Deployment"):
        pod = pod_spec(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
        c = container(deployment)
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and any(v["name"] == tmp[0]["name"] and "emptyDir" in v for v in pod["volumes"]), _id(deployment)
        limits, requests = c["resources"]["limits"], c["resources"]["requests"]
        assert {"cpu", "memory"} <= limits.keys() and {"cpu", "memory"} <= requests.keys(), _id(deployment)


def test_media_steps_get_more_memory() -> None:
    def memory(step: str) -> float:
        quantity = container(find("Deployment", f"pressroom-worker-{step}"))["resources"]["limits"]["memory"]
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return int(number) * (1024 if unit == "Gi" else 1)

    for media in ("download", "transcribe"):
        for other in ("translate", "tag", "publish"):
            assert memory(media) > memory(other)
