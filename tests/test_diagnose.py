"""``valkyrie-routing diagnose`` against real server processes: healthy (0), degraded by FIT collisions (1), down (2)."""

import json
import re
import subprocess
import sys

import pytest

from tests.realserver import REPO, RealServer, http, write_config
from valkyrie import diagnose
from valkyrie.diagnose import Scrape, histogram_quantile


def run_diagnose(capsys, *argv):
    """Run the subcommand in-process through its own parser; (exit code, JSON report)."""
    code = diagnose.main([*argv, "--json", "--interval", "0.3"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def findings(report):
    return {f["check"]: f for f in report["findings"]}


# ---- real servers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A healthy server and one whose FIT is packed to 0.9, started together to share the start-up wait."""
    healthy_dir = tmp_path_factory.mktemp("healthy")
    packed_dir = tmp_path_factory.mktemp("packed")
    healthy = RealServer(write_config(healthy_dir))
    # 0.9 is the highest load factor the config accepts; a small table keeps the load test short.
    packed = RealServer(write_config(packed_dir, {"fit_load_factor": 0.9, "fit_capacity": 1024}))
    try:
        healthy.start()
        packed.start()
        healthy.wait_ready()
        packed.wait_ready()
        yield {"healthy": healthy, "packed": packed, "packed_config": packed_dir / "valkyrie.toml",
               "healthy_config": healthy_dir / "valkyrie.toml"}
    finally:
        healthy.stop()
        packed.stop()


def test_healthy_server_exits_0_with_every_check_ok(servers, capsys):
    srv = servers["healthy"]
    # Light real traffic, so latency, errors and FIT are judged on lookups rather than on silence.
    for _ in range(20):
        status, body = http("POST", srv.url + "/v1/route", {"keys": ["198.51.100.7", "job-42", "ci.build.linux"]})
        assert status == 200, body
    code, report = run_diagnose(capsys, "--url", srv.url, "--metrics-url", srv.metrics_url,
                                "--config", str(servers["healthy_config"]))
    got = findings(report)
    # Twenty requests are too few for a P99 verdict: reported, not judged.
    p99 = got["latency.p99"]
    assert p99["status"] == "ok" and "too few requests to judge" in p99["summary"], p99
    bad = [f for f in report["findings"] if f["status"] != "ok"]
    assert code == 0 and report["verdict"] == "healthy", bad
    for check in ("health", "metrics", "latency.p99", "throughput", "errors", "fit.collision_rate", "fit.load_factor",
                  "cra.fragmentation", "rcu.grace_period", "rcu.pending_snapshots", "rcu.oldest_reader", "memory.rss",
                  "config.valid", "config.conflicts"):
        assert check in got, f"missing check {check}"
    # Light load: never flagged for being under 1M ops/s.
    assert "idle" in got["throughput"]["summary"] or "demand met" in got["throughput"]["summary"]
    assert got["latency.p99"]["value"] is not None and got["latency.p99"]["value"] > 0
    assert got["fit.collision_rate"]["threshold"] == "<= 10.00%"


def test_packed_fit_exits_1_naming_the_collision_rate_and_its_remedy(servers, capsys):
    srv = servers["packed"]
    keys = [f"tenant-{i:05d}" for i in range(900)]
    status, body = http("PUT", srv.url + "/v1/routes", {
        "nodes": [{"id": "n"}], "routes": [{"key": k, "next_hop": "n"} for k in keys]})
    assert status == 200, body
    # Look every key up, plus keys that are absent (the longest probes in a packed open-addressing table).
    for start in range(0, len(keys), 300):
        batch = keys[start:start + 300] + [f"absent-{start + i}" for i in range(300)]
        status, body = http("POST", srv.url + "/v1/route", {"keys": batch})
        assert status == 200, body
        assert all(r["match"] == "exact" for r in body["results"][:300])

    code, report = run_diagnose(capsys, "--url", srv.url, "--metrics-url", srv.metrics_url)
    got = findings(report)
    assert code == 1 and report["verdict"] == "degraded", report
    collisions = got["fit.collision_rate"]
    assert collisions["status"] == "fail", collisions
    assert collisions["value"] > 0.10
    assert "fit_load_factor = 0.6" in collisions["config"] and "fit_capacity = " in collisions["config"]
    assert collisions["config"].startswith("[routing.lockfree]")
    assert "reduce the load factor" in collisions["remedy"]
    assert got["health"]["status"] == "ok"

    # The text form says the same, with the remedy and the key to change.
    code = diagnose.main(["--url", srv.url, "--metrics-url", srv.metrics_url, "--interval", "0.2"])
    text = capsys.readouterr().out
    assert code == 1
    assert re.search(r"\[FAIL\] fit\.collision_rate\s+\d+\.\d+%", text), text
    assert "change: [routing.lockfree] fit_load_factor = 0.6 / fit_capacity = " in text
    assert "verdict: DEGRADED" in text


def test_down_server_exits_2(tmp_path):
    # A port that was just free: nothing listens there.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "valkyrie.diagnose", "--url", f"http://127.0.0.1:{port}",
                           "--metrics-url", f"http://127.0.0.1:{port}/metrics", "--json", "--timeout", "2"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "down"
    health = findings(report)["health"]
    assert health["status"] == "fail" and health["value"] == "unreachable"
    assert "systemctl status valkyrie-routing" in health["remedy"]


def test_config_problems_are_findings(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = 9090\n[observability.metrics]\nport = 9090\n[performance]\nperformance_budget = "100us"\n')
    code, report = run_diagnose(capsys, "--url", "http://127.0.0.1:9", "--config", str(bad), "--timeout", "1")
    got = findings(report)
    assert code == 2
    assert got["config.valid"]["status"] == "fail"
    assert "exceeds requirement of 82µs" in got["config.valid"]["summary"]
    assert "Port conflict between HTTP and metrics endpoint" in got["config.valid"]["summary"]


# ---- pure parts ------------------------------------------------------------------------------


def test_histogram_quantile_matches_prometheus_interpolation():
    # Half the mass at <= 50us, all of it <= 100us: p99 interpolates to 99us (as promtool's test expects).
    buckets = [(5e-05, 50.0), (1e-04, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.99, buckets) == pytest.approx(9.9e-05)
    assert histogram_quantile(0.5, buckets) == pytest.approx(5e-05)
    assert histogram_quantile(0.99, [(1e-4, 0.0), (float("inf"), 0.0)]) != histogram_quantile(0.99, [(1e-4, 0.0)])
    # Mass in +Inf answers with the highest finite bound.
    assert histogram_quantile(0.99, [(1e-4, 1.0), (float("inf"), 10.0)]) == 1e-4


def test_throughput_is_not_judged_when_idle_or_lightly_loaded():
    def scrape(requests, util, refused, at):
        text = (f"valkyrie_routing_requests_total {requests}\n"
                f"valkyrie_connection_pool_utilization {util}\n"
                f"valkyrie_connection_pool_exhausted_total {refused}\n")
        return Scrape(text, at)

    idle = diagnose._check_throughput(scrape(100, 0, 0, 0.0), scrape(100, 0, 0, 1.0))
    light = diagnose._check_throughput(scrape(100, 0.001, 0, 0.0), scrape(5100, 0.001, 0, 1.0))
    saturated = diagnose._check_throughput(scrape(100, 0.9, 0, 0.0), scrape(5100, 0.95, 3, 1.0))
    fast = diagnose._check_throughput(scrape(0, 0.9, 0, 0.0), scrape(2_000_000, 0.9, 0, 1.0))
    assert (idle.status, light.status, saturated.status, fast.status) == ("ok", "ok", "fail", "ok")
    assert "idle" in idle.summary and "demand met" in light.summary
    assert "connection_pool_size = 2000" in saturated.config


@pytest.mark.parametrize("count, p99, status", [(20, 500e-6, "ok"), (5000, 500e-6, "fail"), (5000, 40e-6, "ok")])
def test_p99_is_judged_only_on_enough_requests(count, p99, status):
    text = ("# TYPE valkyrie_routing_request_duration_window_seconds summary\n"
            f'valkyrie_routing_request_duration_window_seconds{{quantile="0.99"}} {p99}\n'
            f"valkyrie_routing_request_duration_window_seconds_count {count}\n"
            f"valkyrie_routing_request_duration_window_seconds_sum {count * p99 / 2}\n")
    finding = diagnose._check_p99(diagnose.Scrape(text, 0.0), diagnose.Scrape(text, 1.0), None)
    assert finding.status == status, finding


def test_start_up_503s_of_health_are_not_counted_as_errors():
    """/health answers 503 until the tables load: readiness polls during a slow start are not a 5xx rate."""
    def scrape(health_503, route_500, at):
        text = (f'valkyrie_http_requests_total{{endpoint="/health",status="503"}} {health_503}\n'
                f'valkyrie_http_requests_total{{endpoint="/health",status="200"}} 1\n'
                f'valkyrie_http_requests_total{{endpoint="/v1/route",status="200"}} 20\n'
                f'valkyrie_http_requests_total{{endpoint="/v1/route",status="500"}} {route_500}\n')
        return Scrape(text, at)

    slow_start = diagnose._check_errors(scrape(40, 0, 0.0), scrape(40, 0, 1.0))
    failing = diagnose._check_errors(scrape(40, 5, 0.0), scrape(40, 5, 1.0))
    assert slow_start.status == "ok" and slow_start.value == 0.0, slow_start
    assert failing.status == "fail" and failing.value == pytest.approx(5 / 25), failing
