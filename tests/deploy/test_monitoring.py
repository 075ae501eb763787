"""deploy/prometheus and deploy/grafana: promtool accepts the config and the rules
(and their unit tests pass); every metric an alert or a dashboard queries exists
(services/common/metrics.py, prometheus_client's default collectors, node-exporter);
the dashboards are provisioned against the one datasource."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase

from services.common import metrics
from tests.deploy.conftest import COMPOSE_FILE, GRAFANA, PROMETHEUS, PROMTOOL_HINT

DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
REQUIRED_DASHBOARDS = {"System health", "Job performance", "Queue monitoring", "Resources"}
# From node-exporter (host CPU and memory), not from Slidelane.
NODE_EXPORTER = {
    "node_cpu_seconds_total": {"cpu", "mode"},
    "node_memory_MemAvailable_bytes": set(),
    "node_memory_MemTotal_bytes": set(),
}
# Labels Prometheus attaches to every scraped series (compose and kubernetes configs).
TARGET_LABELS = {"job", "instance", "namespace", "pod"}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@cache
def known_series() -> dict[str, set[str]]:
    """Every series name a Slidelane target exposes, with its labels."""
    series: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)
        suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created")}
        for suffix in suffixes[value._type]:
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    scratch = CollectorRegistry()  # collect once here; the process's own registry is left alone
    for collector in (ProcessCollector(registry=scratch), PlatformCollector(registry=scratch), GCCollector(registry=scratch)):
        for family in collector.collect():
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
    # ProcessCollector only reports what this platform offers; Linux targets offer these.
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"):
        series.setdefault(name, set())
    series["up"] = set()
    for name, labels in NODE_EXPORTER.items():
        series[name] = labels
    return series


def alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((f"{path.stem}: {panel['title']}", expr))
    return found


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every selector in a PromQL expression."""
    if importlib.util.find_spec("promql_parser") is not None:
        import promql_parser

        found: list[tuple[str, set[str]]] = []

        def visit(node: Any) -> bool:
            if isinstance(node, promql_parser.VectorSelector):
                found.append((node.name, {m.name for m in node.matchers.matchers}))
            return True

        promql_parser.walk(promql_parser.parse(expr), visit)
        return found
    # Without the parser: strip strings, durations, label lists, then take bare names.
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = []
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", text):
        name, matchers, call = match.groups()
        if call or name in {"and", "or", "unless", "bool", "offset"}:
            continue
        found.append((name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers or ""))))
    return found


EXPRESSIONS = alert_expressions() + dashboard_expressions()


def test_every_dashboard_and_alert_is_collected() -> None:
    assert len(alert_expressions()) >= 4 and len(dashboard_expressions()) >= 20


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_queried_metrics_and_labels_exist(where: str, expr: str) -> None:
    series = known_series()
    used = selectors(expr)
    assert used, f"{where}: no metric in {expr!r}"
    for name, labels in used:
        assert name in series, f"{where}: {name} is not exported (services/common/metrics.py defines the metrics)"
        unknown = labels - series[name] - TARGET_LABELS
        assert not unknown, f"{where}: {name} has no label(s) {sorted(unknown)}"


def test_readme_alerts_are_defined() -> None:
    exprs = dict(alert_expressions())
    assert "workflow_queue_depth" in exprs["SlidelaneQueueDepthHigh"] and "> 100" in exprs["SlidelaneQueueDepthHigh"]
    assert "workflow_jobs_total" in exprs["SlidelaneJobErrorRateHigh"] and "> 0.05" in exprs["SlidelaneJobErrorRateHigh"]
    assert "job_latency_seconds" in exprs["SlidelaneJobLatencyHigh"] and "> 300" in exprs["SlidelaneJobLatencyHigh"]
    assert "> 0.8" in exprs["SlidelaneHostCPUHigh"] and "> 0.8" in exprs["SlidelaneHostMemoryHigh"]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip(PROMTOOL_HINT)
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = _promtool("test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_compose_config() -> None:
    result = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_kubernetes_config(tmp_path: Path) -> None:
    # Debian's promtool is built without Kubernetes service discovery: swap it for a
    # static target so promtool still checks everything else (relabelling, rules).
    config = yaml.safe_load((PROMETHEUS / "prometheus-kubernetes.yml").read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs"), job["job_name"]
        job["static_configs"] = [{"targets": ["placeholder:9100"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    result = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    boards = [json.loads(p.read_text()) for p in DASHBOARDS]
    titles = {b["title"].split(" / ", 1)[-1] for b in boards}
    assert REQUIRED_DASHBOARDS <= titles
    uids = [b["uid"] for b in boards]
    assert len(uids) == len(set(uids))


def test_dashboards_use_the_provisioned_datasource_and_fit_the_grid() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    (uid,) = [d["uid"] for d in datasources if d["type"] == "prometheus"]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid, f"{path.name}: {panel['title']}"
            assert panel["targets"] and all(t["datasource"]["uid"] == uid for t in panel["targets"])
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{path.name}: {panel['title']}"


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    grafana = compose["services"]["grafana"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "slidelane.yml").read_text())["providers"][0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert (COMPOSE_FILE.parent / mounts[provider["options"]["path"]]).resolve() == (GRAFANA / "dashboards").resolve()
    assert (COMPOSE_FILE.parent / mounts["/etc/grafana/provisioning"]).resolve() == (GRAFANA / "provisioning").resolve()
    assert grafana["environment"]["SLIDELANE_PROMETHEUS_URL"] == "http://prometheus:9090"
