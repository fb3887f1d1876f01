"""promtool on the real exposition, the alerting rules and their unit tests."""

from __future__ import annotations

from opstools import REPO, populated_metrics

PROM = REPO / "deploy" / "prometheus"


def test_exposition_passes_promtool_lint(run_tool):
    text = populated_metrics().exposition().decode()
    result = run_tool(["promtool", "check", "metrics"], stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_alert_rules_are_valid(run_tool):
    result = run_tool(["promtool", "check", "rules", str(PROM / "alerts.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass(run_tool):
    result = run_tool(["promtool", "test", "rules", "alerts_test.yml", "alerts_cost_test.yml"], cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_scrape_config_is_valid(run_tool, tmp_path):
    config = (PROM / "prometheus.yml").read_text()
    (tmp_path / "alerts.yml").write_text((PROM / "alerts.yml").read_text())
    local = config.replace("/etc/prometheus/burst-agent/alerts.yml", "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(local)
    result = run_tool(["promtool", "check", "config", "prometheus.yml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
