"""The Grafana dashboard: well-formed, templated on its data source, valid PromQL, and only metrics the server exports."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.test_monitoring import find_promtool

DASHBOARD = Path(__file__).resolve().parent.parent / "config" / "monitoring" / "grafana-dashboard.json"
_METRIC = re.compile(r"\b((?:valkyrie|process)_[a-z0-9_]+)\b")

# The names the server exports (prometheus-client adds _total/_bucket/_sum/_count to families).
KNOWN = {
    "valkyrie_routing_request_duration_seconds_bucket", "valkyrie_routing_request_duration_seconds_sum",
    "valkyrie_routing_request_duration_seconds_count", "valkyrie_routing_request_duration_window_seconds",
    "valkyrie_routing_requests_total", "valkyrie_routing_errors_total", "valkyrie_http_requests_total",
    "valkyrie_fit_collisions_total", "valkyrie_fit_operations_total", "valkyrie_fit_load_factor",
    "valkyrie_fit_target_load_factor", "valkyrie_fit_capacity", "valkyrie_fit_entries",
    "valkyrie_fit_probe_length_mean", "valkyrie_fit_probe_length_max", "valkyrie_cra_fragmentation_ratio",
    "valkyrie_cra_nodes", "valkyrie_cra_bytes", "valkyrie_rcu_grace_period_seconds_bucket",
    "valkyrie_rcu_grace_period_seconds_sum", "valkyrie_rcu_grace_period_seconds_count", "valkyrie_rcu_epoch",
    "valkyrie_rcu_pending_snapshots", "valkyrie_rcu_oldest_reader_seconds", "valkyrie_rcu_reclaimed_bytes_total",
    "valkyrie_update_queue_depth", "valkyrie_connection_pool_size", "valkyrie_connection_pool_utilization",
    "valkyrie_connection_pool_exhausted_total", "valkyrie_connection_pool_active",
    "valkyrie_performance_budget_violations_total", "valkyrie_config_reloads_total", "valkyrie_table_bytes",
    "valkyrie_routes", "valkyrie_ready", "process_resident_memory_bytes",
}


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard):
    """Every non-row panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _exprs(dashboard):
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            yield panel, target["expr"]


def referenced_metrics(dashboard):
    """Every metric name the dashboard's queries use."""
    return {m for _, expr in _exprs(dashboard) for m in _METRIC.findall(expr)}


def test_every_panel_has_a_query_and_a_unique_id(dashboard):
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]] + [p["id"] for r in dashboard["panels"] for p in r.get("panels", [])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    panels = list(_panels(dashboard))
    assert len(panels) >= 20
    for panel in panels:
        assert panel["title"], panel["id"]
        targets = panel.get("targets")
        assert targets, f"panel {panel['title']!r} has no target"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for t in targets:
            assert t["expr"].strip(), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]


def test_datasource_is_templated_everywhere(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    templated = {"type": "prometheus", "uid": "${datasource}"}
    assert variables["instance"]["datasource"] == templated
    for panel in _panels(dashboard):
        assert panel["datasource"] == templated, panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == templated, panel["title"]
    # Every query follows the instance picker, so one dashboard serves a fleet.
    for panel, expr in _exprs(dashboard):
        for metric in _METRIC.findall(expr):
            assert re.search(re.escape(metric) + r'\{[^}]*instance=~"\$instance"', expr), (panel["title"], expr)


def test_dashboard_shows_the_guides_signals(dashboard):
    exprs = " ".join(e for _, e in _exprs(dashboard))
    assert 'valkyrie_routing_request_duration_window_seconds{instance=~"$instance", quantile=~"0.5|0.9|0.99|0.999"}' in exprs
    assert "histogram_quantile(0.99, sum by (instance, le) (rate(valkyrie_routing_request_duration_seconds_bucket" in exprs
    for needed in ("valkyrie_routing_requests_total", "valkyrie_routing_errors_total", "valkyrie_fit_collisions_total",
                   "valkyrie_fit_load_factor", "valkyrie_cra_fragmentation_ratio", "valkyrie_rcu_grace_period_seconds_bucket",
                   "valkyrie_rcu_pending_snapshots", "valkyrie_rcu_oldest_reader_seconds", "process_resident_memory_bytes"):
        assert needed in exprs, needed
    # The guide's thresholds are drawn where they apply.
    limits = {p["title"]: p["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]
              for p in _panels(dashboard) if p["type"] == "timeseries"}
    assert limits["Routing latency quantiles (last-minute window)"] == 0.000082
    assert limits["Routing decisions /s"] == 1e6
    assert limits["FIT collision rate"] == 0.10
    assert limits["CRA fragmentation by family"] == 0.30
    assert limits["RCU grace period"] == 0.05


def test_metric_names_are_all_known(dashboard):
    unknown = referenced_metrics(dashboard) - KNOWN
    assert not unknown, f"dashboard queries metrics the server does not export: {sorted(unknown)}"


async def test_metric_names_all_exist_in_a_live_metrics_endpoint(dashboard, metrics_client):
    resp = await metrics_client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    live = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    missing = referenced_metrics(dashboard) - live
    assert not missing, f"not in a live /metrics: {sorted(missing)}"


def test_queries_are_valid_promql(dashboard, tmp_path):
    promtool = find_promtool()
    if promtool is None:
        pytest.skip("promtool not found: run .ci/install-promtool.sh to parse the dashboard's PromQL")
    # Grafana's variables are not PromQL: substitute what Grafana would before parsing each query as a rule.
    subst = {"$__rate_interval": "1m", "$__range": "1h", "$instance": ".*"}
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (panel, expr) in enumerate(_exprs(dashboard)):
        for var, value in subst.items():
            expr = expr.replace(var, value)
        # A JSON string is a valid YAML double-quoted scalar.
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
