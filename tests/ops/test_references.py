"""The Grafana dashboard and the alert rules only use metrics that burst_agent.metrics really exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from opstools import REPO, populated_metrics
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = REPO / "deploy" / "grafana" / "burst-agent.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bburst_agent_[a-z0-9_]+")
RECORDED = re.compile(r"\bburst_agent:[a-z0-9_:]+")


def exported_names() -> set[str]:
    text = populated_metrics().exposition().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in panels(dashboard()["panels"]) for t in p.get("targets", [])]


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_dashboard_imports_cleanly():
    dash = dashboard()
    assert dash["uid"] == "burst-agent" and isinstance(dash["schemaVersion"], int)
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in panels(dash["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(dash["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["targets"], panel["title"]


@pytest.mark.parametrize(("source", "exprs"), [
    ("dashboard", dashboard_exprs()),
    ("alerts", [rule["expr"] for rule in rules()]),
])
def test_every_referenced_metric_is_exported(source, exprs):
    referenced = {name for expr in exprs for name in METRIC.findall(expr)}
    assert referenced, f"{source} references no burst_agent metric"
    assert referenced - exported_names() == set()


def test_recording_rules_used_by_the_dashboard_exist():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used = {name for expr in dashboard_exprs() for name in RECORDED.findall(expr)}
    assert used and used <= recorded


def test_alerts_carry_severity_and_summary():
    alerts = [rule for rule in rules() if "alert" in rule]
    assert len(alerts) >= 7
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
