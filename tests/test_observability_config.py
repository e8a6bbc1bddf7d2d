"""The alert rules (infra/prometheus) and the Grafana dashboard (infra/grafana) against the metrics Pressroom
exports (workers/metrics/families.py), offline: every PromQL expression parses (promql-parser), names only
exposed metrics and labels those metrics carry, and matches vectors whose labels can meet; the dashboard's
JSON, variables, datasources and layout hold together. Prometheus' own promtool (Debian's `prometheus`,
installed by the bootstrap) checks the config and runs the rules' unit tests (infra/prometheus/alerts_test.yml) too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser as pq
import pytest
import yaml

from workers.metrics.families import ALL, Family

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RUNBOOK = PROMETHEUS_DIR / "README.md"
DASHBOARD = ROOT / "infra" / "grafana" / "pressroom.json"

REQUIRED_ALERTS = {
    "PressroomStepFailureRate", "PressroomBacklogOld", "PressroomQueueWithoutWorkers", "PressroomRunsStalled",
    "PressroomRunsRedriven", "PressroomBrokerDown", "PressroomProviderRateLimited", "PressroomExporterDown",
}
SEVERITIES = {"warning", "critical"}
TARGET_LABELS = frozenset({"job", "instance"})  # added by Prometheus to every scraped series
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_RANGES = {"__rate_interval", "__interval", "__range"}  # Grafana's own variables that stand for a range
DURATION = re.compile(r"^(0|(\d+(ms|s|m|h|d|w|y))+)$")
Labels = frozenset[str]


# --- what is exposed ----------------------------------------------------------------------------------------

def exposed_series(families: tuple[Family, ...] = ALL) -> dict[str, Labels]:
    """Every series name Pressroom's exporter writes, with its labels, as the text format spells them."""
    out: dict[str, Labels] = {"up": frozenset()}
    for family in families:
        labels = frozenset(family.labels)
        if family.kind == "counter":
            out[family.name + "_total"] = labels
        elif family.kind == "histogram":
            out[family.name + "_bucket"] = labels | {"le"}
            out[family.name + "_sum"] = labels
            out[family.name + "_count"] = labels
        elif family.kind == "gauge":
            out[family.name] = labels
        else:  # pragma: no cover - a new kind needs a line here
            raise AssertionError(f"{family.name}: unknown kind {family.kind}")
    return out


EXPOSED = exposed_series()


# --- the checker: parse, then follow which labels each node of the expression can carry --------------------

class _Checker:
    def __init__(self, exposed: dict[str, Labels]) -> None:
        self.exposed = exposed
        self.problems: list[str] = []

    def labels(self, node: Any) -> Labels | None:
        """The label names the node's series can carry; None for a scalar or a string."""
        if isinstance(node, pq.NumberLiteral | pq.StringLiteral):
            return None
        if isinstance(node, pq.VectorSelector):
            return self.selector(node)
        if isinstance(node, pq.MatrixSelector):
            return self.selector(node.vector_selector)
        if isinstance(node, pq.ParenExpr | pq.UnaryExpr | pq.SubqueryExpr):
            return self.labels(node.expr)
        if isinstance(node, pq.Call):
            return self.call(node)
        if isinstance(node, pq.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, pq.BinaryExpr):
            return self.binary(node)
        self.problems.append(f"unexpected node {type(node).__name__}: {node}")  # pragma: no cover
        return frozenset()  # pragma: no cover

    def selector(self, node: Any) -> Labels:
        if not node.name:
            self.problems.append(f"{node}: name the metric (no bare {{__name__=...}} selectors)")
            return frozenset()
        if node.name not in self.exposed:
            self.problems.append(f"unknown metric {node.name!r}")
            return frozenset()
        have = self.exposed[node.name] | TARGET_LABELS
        groups = [node.matchers.matchers, *node.matchers.or_matchers]
        for matcher in (m for group in groups for m in group):
            if matcher.name != "__name__" and matcher.name not in have:
                self.problems.append(f"{node.name} has no label {matcher.name!r} (it has {sorted(have)})")
        return have

    def call(self, node: Any) -> Labels | None:
        args = [self.labels(arg) for arg in node.args]
        name = node.func.name
        if node.func.return_type == pq.ValueType.Scalar:
            return None
        vectors = [labels for labels in args if labels is not None]
        have = frozenset().union(*vectors) if vectors else frozenset()
        if name == "histogram_quantile":
            if "le" not in have:
                self.problems.append(f"histogram_quantile over series without 'le' (aggregated away?): {node}")
            return have - {"le"}
        if name in ("label_replace", "label_join"):
            sources = [node.args[3].val] if name == "label_replace" else [a.val for a in node.args[3:]]
            for source in (s for s in sources if s):
                if source not in have:
                    self.problems.append(f"{name} reads label {source!r}, which is not there: {node}")
            return have | {node.args[1].val}
        return have

    def aggregate(self, node: Any) -> Labels:
        inner = self.labels(node.expr) or frozenset()
        if node.param is not None:
            self.labels(node.param)
        op = str(node.op)
        modifier = node.modifier
        grouping = frozenset(modifier.labels) if modifier is not None else frozenset()
        missing = grouping - inner
        if missing:
            self.problems.append(f"{op} groups by {sorted(missing)}, not on its series ({sorted(inner)}): {node}")
        if op in ("topk", "bottomk", "limitk", "limit_ratio"):
            return inner
        without = modifier is not None and modifier.type == pq.AggModifierType.Without
        out = inner - grouping if without else grouping
        if op == "count_values" and isinstance(node.param, pq.StringLiteral):
            out |= {node.param.val}
        return out

    def binary(self, node: Any) -> Labels | None:
        lhs, rhs = self.labels(node.lhs), self.labels(node.rhs)
        if lhs is None or rhs is None:
            return lhs if rhs is None else rhs  # scalar with vector (or two scalars)
        op = str(node.op)
        modifier = node.modifier
        matching = modifier.matching if modifier is not None else None
        on = matching is not None and matching.type == pq.LabelModifierType.Include
        keys = frozenset(matching.labels) if matching is not None else frozenset()
        if on:
            for side, labels in (("left", lhs), ("right", rhs)):
                if keys - labels:
                    self.problems.append(f"on({', '.join(sorted(keys))}): the {side} side has no "
                                         f"{sorted(keys - labels)}: {node}")
        elif keys - (lhs | rhs):
            self.problems.append(f"ignoring {sorted(keys - (lhs | rhs))}, on neither side: {node}")
        if op == "or":
            return lhs | rhs
        card = modifier.card if modifier is not None else pq.VectorMatchCardinality.OneToOne
        group = frozenset(modifier.group_labels or ()) if modifier is not None else frozenset()
        if card == pq.VectorMatchCardinality.ManyToOne:
            if group - rhs:
                self.problems.append(f"group_left copies {sorted(group - rhs)}, not on the right side: {node}")
            return lhs | group
        if card == pq.VectorMatchCardinality.OneToMany:
            if group - lhs:
                self.problems.append(f"group_right copies {sorted(group - lhs)}, not on the left side: {node}")
            return rhs | group
        # one-to-one (and/unless too): series meet only where the matched labels are the same on both sides
        if on:
            return lhs if op in ("and", "unless") else keys
        if lhs - keys != rhs - keys:
            self.problems.append(f"'{op}' matches on all labels, but the sides differ ({sorted(lhs - keys)} vs "
                                 f"{sorted(rhs - keys)}): it would never match; aggregate both alike or use on(): "
                                 f"{node}")
        return lhs - keys


def check_promql(expr: str, exposed: dict[str, Labels] = EXPOSED) -> tuple[list[str], Labels]:
    """Problems with one PromQL expression (none when it parses and its names are Pressroom's), and the labels
    its result can carry."""
    try:
        tree = pq.parse(expr)
    except ValueError as exc:
        return [f"does not parse: {exc}"], frozenset()
    checker = _Checker(exposed)
    labels = checker.labels(tree)
    return checker.problems, labels or frozenset()


def template_labels(text: str) -> set[str]:
    """Labels a text refers to: {{ $labels.x }} in alert annotations, {{x}} in Grafana legends."""
    return set(re.findall(r"\$labels\.(\w+)", text)) | set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))


# --- alert rules -----------------------------------------------------------------------------------------

@cache
def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule_problems(rule: Any) -> list[str]:
    """What a rule lacks of what Pressroom's rules all have."""
    if not isinstance(rule, dict):
        return [f"not a mapping: {rule!r}"]
    problems = [f"no {key}" for key in ("alert", "expr") if not isinstance(rule.get(key), str) or not rule[key]]
    if not DURATION.match(str(rule.get("for", ""))):
        problems.append(f"for: {rule.get('for')!r} is not a duration")
    if (rule.get("labels") or {}).get("severity") not in SEVERITIES:
        problems.append(f"labels.severity must be one of {sorted(SEVERITIES)}")
    annotations = rule.get("annotations") or {}
    problems += [f"no annotations.{key}" for key in ("summary", "description") if not annotations.get(key)]
    return problems


def test_alerts_file_has_groups_of_well_formed_rules() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert isinstance(document["groups"], list) and document["groups"]
    for group in document["groups"]:
        assert group["name"] and group["rules"], group
    names = [rule.get("alert") for rule in alert_rules()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert set(names) >= REQUIRED_ALERTS, f"missing: {REQUIRED_ALERTS - set(names)}"
    assert {rule["alert"]: rule_problems(rule) for rule in alert_rules() if rule_problems(rule)} == {}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule.get("alert", "?"))
def test_alert_expression_uses_exported_metrics_and_labels(rule: dict[str, Any]) -> None:
    problems, labels = check_promql(rule["expr"])
    assert problems == []
    templated = "\n".join(str(text) for text in (rule.get("annotations") or {}).values())
    unknown = template_labels(templated) - labels - set(rule.get("labels") or {}) - {"alertname"}
    assert not unknown, f"annotations use labels the alert does not carry: {sorted(unknown)} (it has {sorted(labels)})"


def test_every_alert_has_a_runbook_entry() -> None:
    runbook = RUNBOOK.read_text()
    missing = [rule["alert"] for rule in alert_rules() if f"### {rule['alert']}" not in runbook]
    assert missing == [], f"infra/prometheus/README.md has no section for {missing}"


def test_prometheus_config_scrapes_the_dashboard_and_loads_the_alerts() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert [(PROMETHEUS_DIR / path).resolve() for path in config["rule_files"]] == [ALERTS.resolve()]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {target: name for name, job in jobs.items()
               for static in job.get("static_configs", []) for target in static["targets"]}
    assert "pressroom-dashboard:8090" in targets
    job = jobs[targets["pressroom-dashboard:8090"]]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # PressroomExporterDown watches up{job=~...}: that regex must cover the job, or the alert is blind
    exporter_down = next(rule for rule in alert_rules() if rule["alert"] == "PressroomExporterDown")
    tree = pq.parse(exporter_down["expr"])
    selectors: list[Any] = []
    pq.walk(tree, lambda node: selectors.append(node) if isinstance(node, pq.VectorSelector) else None)
    job_regexes = [m.value for s in selectors if s.name == "up" for m in s.matchers.matchers if m.name == "job"]
    assert job_regexes and all(re.fullmatch(rx, job["job_name"]) for rx in job_regexes), job_regexes


def test_promtool_checks_config_and_runs_the_rules_unit_tests() -> None:
    assert shutil.which("promtool"), "promtool is missing: ./run-tests installs it (Debian's prometheus package)"
    for args in (["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run(["promtool", *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


# --- the Grafana dashboard -------------------------------------------------------------------------------

@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{panel['title']}/{target['refId']}", target)
            for panel in all_panels(dashboard()["panels"]) for target in panel.get("targets", [])]


def grafana_promql(expr: str, variables: set[str]) -> tuple[str, list[str]]:
    """A panel's query as Prometheus gets it: Grafana's ranges become 5m, the dashboard's own variables a
    value. Also says which variables it uses that the dashboard does not define."""
    unknown: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in GRAFANA_RANGES:
            return "5m"
        if name in variables:
            return "x"
        unknown.append(name)
        return match.group(0)

    return re.sub(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))", value, expr), unknown


def query_variables() -> set[str]:
    return {v["name"] for v in dashboard()["templating"]["list"] if v["type"] != "datasource"}


def overlaps(panels: list[dict[str, Any]], width: int = 24) -> list[str]:
    """Panels that lie on each other or past the grid's 24 columns."""
    boxes = [(p["id"], p["gridPos"]) for p in panels]
    out = [f"panel {pid} goes past column {width}" for pid, g in boxes if g["x"] < 0 or g["x"] + g["w"] > width]
    for i, (a, ga) in enumerate(boxes):
        for b, gb in boxes[i + 1:]:
            if (ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]
                    and ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"]):
                out.append(f"panels {a} and {b} overlap")
    return out


def test_dashboard_loads_with_its_datasource_and_step_variables() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36 and board["title"] and board["uid"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    step = variables["step"]
    assert step["type"] == "query" and step["datasource"] == DATASOURCE
    query = step["query"]["query"] if isinstance(step["query"], dict) else step["query"]
    assert query == "label_values(pressroom_queue_waiting, step)"
    match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
    assert match is not None and match.group(2) in EXPOSED[match.group(1)]


def test_dashboard_panels_have_unique_ids_the_datasource_variable_and_queries() -> None:
    panels = list(all_panels(dashboard()["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in panels:
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        assert panel.get("targets"), f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_panels_do_not_overlap() -> None:
    top = dashboard()["panels"]
    assert overlaps(top) == []
    for row in top:
        if row.get("panels"):  # a collapsed row's panels are laid out as if it were open
            assert overlaps(row["panels"]) == []


@pytest.mark.parametrize(("name", "target"), dashboard_targets(), ids=[n for n, _ in dashboard_targets()])
def test_dashboard_query_uses_exported_metrics_and_labels(name: str, target: dict[str, Any]) -> None:
    expr, unknown = grafana_promql(target["expr"], query_variables())
    assert unknown == [], f"{name} uses variables the dashboard does not define: {unknown}"
    problems, labels = check_promql(expr)
    assert problems == []
    missing = template_labels(target.get("legendFormat", "")) - labels
    assert not missing, f"{name}: legend names {sorted(missing)}, not on the result ({sorted(labels)})"


# --- the checks can fail --------------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "says"), [
    ("sum(rate(pressroom_task_outcome_total[5m]))", "unknown metric 'pressroom_task_outcome_total'"),
    ("rate(pressroom_provider_requests[5m])", "unknown metric 'pressroom_provider_requests'"),  # no _total
    ("pressroom_queue_waiting_total", "unknown metric"),  # a gauge has no _total
    ('pressroom_queue_waiting{stage="tag"}', "has no label 'stage'"),
    ('rate(pressroom_provider_requests_total{step="tag"}[5m])', "has no label 'step'"),
    ("sum by (queue) (rate(pressroom_task_outcomes_total[5m]))", "groups by ['queue']"),
    ("histogram_quantile(0.9, sum by (step) (rate(pressroom_task_duration_seconds_bucket[5m])))", "without 'le'"),
    ("sum by (step) (rate(pressroom_task_outcomes_total[5m])) / sum(rate(pressroom_task_outcomes_total[5m]))",
     "would never match"),
    ("pressroom_queue_waiting > 0 and on (queue) pressroom_runs_stalled", "the right side has no ['queue']"),
    ("sum(rate(pressroom_task_outcomes_total[5m])", "does not parse"),
    ("rate(pressroom_runs_redriven_total)", "does not parse"),
])
def test_checker_catches(expr: str, says: str) -> None:
    problems, _ = check_promql(expr)
    assert any(says in problem for problem in problems), problems


def test_the_other_checks_can_fail() -> None:
    assert rule_problems({"alert": "X", "expr": "up == 0", "for": "5 minutes", "labels": {},
                          "annotations": {"summary": "s"}}) == [
        "for: '5 minutes' is not a duration", "labels.severity must be one of ['critical', 'warning']",
        "no annotations.description"]
    assert overlaps([{"id": 1, "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8}},
                     {"id": 2, "gridPos": {"x": 11, "y": 7, "w": 12, "h": 8}},
                     {"id": 3, "gridPos": {"x": 20, "y": 20, "w": 6, "h": 8}}]) == [
        "panel 3 goes past column 24", "panels 1 and 2 overlap"]
    assert grafana_promql('rate(x{step=~"$step"}[$__rate_interval]) / $datasource', {"step"}) == (
        'rate(x{step=~"x"}[5m]) / $datasource', ["datasource"])
    _, labels = check_promql("sum by (step) (pressroom_queue_waiting)")
    assert template_labels("{{queue}} waiting") - labels == {"queue"}
