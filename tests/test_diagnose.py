"""``valkyrie-routing diagnose`` against real server processes: healthy (0), degraded by FIT collisions (1), down (2).

Also home of ``RealServer``, the real-process server the other deployment tests reuse.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from valkyrie import diagnose
from valkyrie.diagnose import Scrape, histogram_quantile

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROUTES = REPO / "config" / "routes" / "example.toml"
# A cold Numba cache compiles every kernel before /health turns 200; later starts load the cache.
START_TIMEOUT = 240.0
_LISTENING = re.compile(r"listening http=http://(\S+):(\d+) metrics=http://(\S+):(\d+)(\S*)")


def server_command():
    """The ``valkyrie-routing`` console script of this venv (or ``python -m valkyrie.cli``)."""
    exe = Path(sys.executable).with_name("valkyrie-routing")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "valkyrie.cli"]


def write_config(directory, lockfree=None, extra=""):
    """A config file on ephemeral loopback ports with the example routes and a private route store."""
    directory = Path(directory)
    lines = [
        "[server]", 'host = "127.0.0.1"', "port = 0", "",
        "[routing]", f"route_files = [{json.dumps(str(EXAMPLE_ROUTES))}]",
        f"store_path = {json.dumps(str(directory / 'routes.db'))}", "",
        "[observability.metrics]", 'host = "127.0.0.1"', "port = 0", "",
    ]
    if lockfree:
        lines.append("[routing.lockfree]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in lockfree.items()]
        lines.append("")
    path = directory / "valkyrie.toml"
    path.write_text("\n".join(lines) + extra)
    return path


def http(method, url, body=None, timeout=10.0):
    """(status, parsed JSON or raw bytes) for one request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


class RealServer:
    """A ``valkyrie-routing`` process on ephemeral loopback ports; ports come from its "listening" log line."""

    def __init__(self, config=None, env=None, args=()):
        self.cmd = [*server_command(), "--port", "0", "--metrics-port", "0", *args]
        if config is not None:
            self.cmd += ["--config", str(config)]
        self.env = dict(os.environ, **(env or {}))
        self.lines = []
        self.url = self.metrics_url = None
        self._listening = threading.Event()
        self.proc = None

    def start(self):
        """Start the process and wait for its listening line."""
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=self.env, text=True, cwd=REPO)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 60
        while not self._listening.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server never listened (exit {self.proc.poll()}):\n{self.log_tail()}")
        return self

    def _pump(self):
        # Drain stderr continuously so a chatty server never blocks on a full pipe.
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = _LISTENING.search(line)
            if m and not self._listening.is_set():
                self.url = f"http://{m.group(1)}:{m.group(2)}"
                self.metrics_url = f"http://{m.group(3)}:{m.group(4)}{m.group(5)}"
                self._listening.set()

    def wait_ready(self, timeout=START_TIMEOUT):
        """Poll /health until 200; fail with the log tail if the server fails or dies."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, body = http("GET", self.url + "/health", timeout=2)
            except OSError:
                status, body = None, None
            if status == 200:
                return body
            if isinstance(body, dict) and body.get("status") == "failed":
                raise AssertionError(f"server failed to start: {body}\n{self.log_tail()}")
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, n=30):
        """The last ``n`` log lines."""
        return "\n".join(self.lines[-n:])

    def stop(self, timeout=20):
        """SIGTERM and wait; SIGKILL if it hangs. Returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


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
    bad = [f for f in report["findings"] if f["status"] != "ok"]
    assert code == 0 and report["verdict"] == "healthy", bad
    got = findings(report)
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
