"""``valkyrie-routing diagnose``: the troubleshooting guide's checks against a running server, in one go.

Reads ``/health``, ``/config/status`` and two scrapes of ``/metrics`` taken
``--interval`` seconds apart (rates need two points), then judges each signal
against the guide's threshold and names the guide's remedy and the config key
to change. Exit status: 0 healthy, 1 degraded, 2 down (unreachable, or
``/health`` not 200).
"""

import json
import math
import os
import socket
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass

from prometheus_client.parser import text_string_to_metric_families

from valkyrie.http_client import Http

__all__ = ["add_parser", "run", "diagnose", "Finding", "Scrape", "histogram_quantile",
           "EXIT_HEALTHY", "EXIT_DEGRADED", "EXIT_DOWN"]

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_DOWN = 0, 1, 2

# The guide's thresholds.
P99_BUDGET_SECONDS = 82e-6
THROUGHPUT_TARGET_OPS = 1_000_000
COLLISION_RATE_LIMIT = 0.10
FRAGMENTATION_LIMIT = 0.30
GRACE_PERIOD_LIMIT_SECONDS = 0.050
# Not in the guide as numbers; chosen so that only a real stall or leak trips them.
OLDEST_READER_LIMIT_SECONDS = 0.050  # a reader older than the grace budget holds reclamation back
PENDING_SNAPSHOTS_LIMIT = 16
ERROR_RATE_LIMIT = 0.01  # share of HTTP answers that are 5xx
MEMORY_GROWTH_LIMIT_BYTES = 32 * 2**20  # growth across the interval...
MEMORY_GROWTH_LIMIT_SHARE = 0.10  # ...and as a share of RSS: both must be exceeded
# Throughput is only judged when demand outruns the server: requests pile up in flight or are refused.
LOAD_UTILIZATION = 0.5
# Requests the last minute must hold before its P99 is judged (as the server's own budget warning).
MIN_P99_REQUESTS = 100
# Interval collision rates below this many lookups are noise; fall back to the cumulative ratio.
MIN_INTERVAL_OPERATIONS = 1000

OK, WARN, FAIL = "ok", "warn", "fail"
TOKEN_ENV = "VALKYRIE_ADMIN_TOKEN"


@dataclass
class Finding:
    """One judged signal: status (ok/warn/fail), measured value, threshold, remedy and config key."""

    check: str
    status: str
    value: object
    threshold: str
    summary: str
    remedy: str = ""
    config: str = ""
    live: str = ""


# ---- Prometheus text -------------------------------------------------------------------------


class Scrape:
    """One parsed ``/metrics`` response and the monotonic time it was taken."""

    def __init__(self, text, at):
        self.at = at
        self.samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples.setdefault(s.name, []).append((s.labels, s.value))

    def has(self, name):
        """Whether any sample of ``name`` was exported."""
        return name in self.samples

    def value(self, name, default=None, **labels):
        """The first sample of ``name`` whose labels include ``labels``, else ``default``."""
        for got, v in self.samples.get(name, ()):
            if all(got.get(k) == want for k, want in labels.items()):
                return v
        return default

    def total(self, name, default=None):
        """Sum of every sample of ``name`` (all label sets), else ``default``."""
        rows = self.samples.get(name)
        return sum(v for _, v in rows) if rows else default

    def series(self, name):
        """Every ``(labels, value)`` of ``name``."""
        return list(self.samples.get(name, ()))

    def buckets(self, name):
        """Cumulative ``[(le, count)]`` of histogram ``name`` (``_bucket`` samples), sorted by le."""
        acc = {}
        for labels, v in self.samples.get(name + "_bucket", ()):
            le = float(labels["le"])
            acc[le] = acc.get(le, 0.0) + v
        return sorted(acc.items())


def histogram_quantile(q, buckets):
    """Prometheus' ``histogram_quantile`` over cumulative ``[(le, count)]``: linear within the bucket; nan if empty."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for i, (le, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(le):
                # Like Prometheus: the +Inf bucket answers with the highest finite bound.
                return buckets[i - 1][0] if i > 0 else math.nan
            if i == 0 and le <= 0:
                return le
            width = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1.0)
        prev_le, prev_count = le, count
    return buckets[-1][0]


def _bucket_delta(after, before):
    """Per-bucket increase between two cumulative histograms (a restart in between gives ``after``)."""
    old = dict(before)
    delta = [(le, c - old.get(le, 0.0)) for le, c in after]
    return after if any(c < 0 for _, c in delta) else delta


# ---- HTTP ------------------------------------------------------------------------------------


def _json_or_none(body):
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return None


# ---- formatting helpers ----------------------------------------------------------------------


def _us(seconds):
    return f"{seconds * 1e6:.1f}us"


def _ms(seconds):
    return f"{seconds * 1e3:.2f}ms"


def _pct(x):
    return f"{x * 100:.2f}%"


def _mib(n):
    return f"{n / 2**20:.1f}MiB"


def _ops(x):
    return f"{x:,.0f} ops/s"


def _next_pow2(n):
    return 1 << max(3, math.ceil(math.log2(max(n, 1))))


# ---- the checks ------------------------------------------------------------------------------


def _check_health(status, body, url):
    if status == 200:
        b = body or {}
        return Finding("health", OK, b.get("status", "ok"), "HTTP 200",
                       f"serving: {b.get('routes', '?')} routes, {b.get('nodes', '?')} nodes, epoch {b.get('epoch', '?')}")
    b = body or {}
    state = b.get("status", f"HTTP {status}")
    detail = b.get("detail") or ""
    remedy = ("Still compiling kernels or loading route tables: wait and retry (a cold Numba cache takes minutes)."
              if state == "starting" else
              "Start-up failed: read the log (journalctl -u valkyrie-routing --since \"10 minutes ago\" | grep -i error), "
              "fix the config or route files (valkyrie-routing --validate-config FILE), then restart.")
    return Finding("health", FAIL, state, "HTTP 200", f"{url}/health answered {status} {state}"
                   + (f": {detail}" if detail else ""), remedy=remedy, config="")


def _check_p99(s1, s2, budget):
    p99 = s2.value("valkyrie_routing_request_duration_window_seconds", quantile="0.99")
    window_count = s2.value("valkyrie_routing_request_duration_window_seconds_count", 0.0)
    threshold = f"<= {_us(P99_BUDGET_SECONDS)}"
    if p99 is None:
        return Finding("latency.p99", WARN, None, threshold,
                       "no valkyrie_routing_request_duration_window_seconds{quantile=\"0.99\"} series in /metrics",
                       remedy="Check the metrics endpoint serves this server's registry.")
    # The histogram over the interval tells whether the window figure is still current.
    interval = _bucket_delta(s2.buckets("valkyrie_routing_request_duration_seconds"),
                             s1.buckets("valkyrie_routing_request_duration_seconds"))
    hq = histogram_quantile(0.99, interval)
    extra = f"; histogram_quantile over the interval {_us(hq)}" if hq == hq else ""
    if not window_count:
        return Finding("latency.p99", OK, None, threshold, "idle: no routing requests in the last minute")
    if window_count < MIN_P99_REQUESTS:
        # The P99 of a few requests is their slowest one (often the first after start-up).
        return Finding("latency.p99", OK, p99, threshold,
                       f"too few requests to judge: {window_count:.0f} in the last minute (needs {MIN_P99_REQUESTS}); "
                       f"P99 {_us(p99)}{extra}")
    remedy = ("Pin the process to dedicated cores, enable jemalloc, and check the lock-free structures "
              "(FIT collisions, CRA fragmentation, RCU grace period) below.")
    config = "cpu_cores = [0, 1] (top level) / enable_jemalloc = true; [performance] performance_budget = \"75us\""
    if p99 > P99_BUDGET_SECONDS:
        return Finding("latency.p99", FAIL, p99, threshold, f"P99 {_us(p99)} over the last minute{extra}",
                       remedy=remedy, config=config)
    if budget is not None and p99 > budget:
        return Finding("latency.p99", WARN, p99, f"<= {_us(budget)} (performance_budget)",
                       f"P99 {_us(p99)} is within 82us but over the configured performance_budget{extra}",
                       remedy=remedy, config=config)
    return Finding("latency.p99", OK, p99, threshold, f"P99 {_us(p99)} over the last minute{extra}")


def _check_throughput(s1, s2):
    threshold = f">= {_ops(THROUGHPUT_TARGET_OPS)} under load"
    a, b = s1.total("valkyrie_routing_requests_total"), s2.total("valkyrie_routing_requests_total")
    if a is None or b is None:
        return Finding("throughput", WARN, None, threshold, "valkyrie_routing_requests_total is not exported")
    dt = max(s2.at - s1.at, 1e-9)
    rate = max(0.0, b - a) / dt
    util = max(s1.value("valkyrie_connection_pool_utilization", 0.0), s2.value("valkyrie_connection_pool_utilization", 0.0))
    refused = (s2.total("valkyrie_connection_pool_exhausted_total", 0.0) - s1.total("valkyrie_connection_pool_exhausted_total", 0.0))
    under_load = util >= LOAD_UTILIZATION or refused > 0
    if rate == 0 and not under_load:
        return Finding("throughput", OK, 0.0, threshold, "idle: no routing decisions during the interval")
    load = f"pool utilization {_pct(util)}, {refused:.0f} refused"
    if not under_load:
        return Finding("throughput", OK, rate, threshold, f"{_ops(rate)} at light load, demand met ({load})")
    if rate >= THROUGHPUT_TARGET_OPS:
        return Finding("throughput", OK, rate, threshold, f"{_ops(rate)} under load ({load})")
    return Finding("throughput", FAIL, rate, threshold, f"{_ops(rate)} while requests queue ({load})",
                   remedy="Scale the connection pool and worker threads; send keys in batches "
                          "(POST /v1/route or /v1/route/packed) rather than one request per key.",
                   config="[routing] connection_pool_size = 2000 / max_concurrent_requests = 100000; "
                          "[server] worker_threads = 16 / blocking_threads = 32; "
                          "[performance] enable_simd = true / enable_zero_copy = true / enable_hot_path_optimization = true")


def _check_errors(s1, s2):
    threshold = f"<= {_pct(ERROR_RATE_LIMIT)} of HTTP answers (besides /health) are 5xx"

    def split(s):
        total = five = 0.0
        for labels, v in s.series("valkyrie_http_requests_total"):
            # /health answers 503 by design until the tables are loaded: a readiness signal, not an error.
            if labels.get("endpoint") == "/health":
                continue
            total += v
            if labels.get("status", "").startswith("5"):
                five += v
        return total, five

    (t1, f1), (t2, f2) = split(s1), split(s2)
    d_total, d_five = t2 - t1, f2 - f1
    if d_total <= 0:
        # No traffic in the interval: judge the whole run so far.
        d_total, d_five = t2, f2
    if d_total <= 0:
        return Finding("errors", OK, 0.0, threshold, "no HTTP requests yet")
    rate = d_five / d_total
    codes = sorted(((v, l.get("code", "?")) for l, v in s2.series("valkyrie_routing_errors_total") if v), reverse=True)
    top = ", ".join(f"{c}={v:.0f}" for v, c in codes[:4]) or "none"
    if rate > ERROR_RATE_LIMIT:
        return Finding("errors", FAIL, rate, threshold, f"{_pct(rate)} 5xx (error codes so far: {top})",
                       remedy="Overloaded: increase pool size or batch requests; not_ready: wait for start-up; "
                              "storage_*: check the route store's disk; internal_error: see the server log.",
                       config="[routing] max_concurrent_requests = 100000 / connection_pool_size = 2000")
    return Finding("errors", OK, rate, threshold, f"{_pct(rate)} 5xx (error codes so far: {top})")


def _check_collisions(s1, s2):
    threshold = f"<= {_pct(COLLISION_RATE_LIMIT)}"
    c2, o2 = s2.total("valkyrie_fit_collisions_total"), s2.total("valkyrie_fit_operations_total")
    if c2 is None or o2 is None:
        return Finding("fit.collision_rate", WARN, None, threshold, "FIT counters are not exported")
    c1, o1 = s1.total("valkyrie_fit_collisions_total", 0.0), s1.total("valkyrie_fit_operations_total", 0.0)
    if o2 - o1 >= MIN_INTERVAL_OPERATIONS:
        rate, over = (c2 - c1) / (o2 - o1), f"over the interval ({o2 - o1:.0f} lookups)"
    elif o2 > 0:
        rate, over = c2 / o2, f"since start ({o2:.0f} lookups)"
    else:
        return Finding("fit.collision_rate", OK, 0.0, threshold, "no FIT lookups yet")
    if rate <= COLLISION_RATE_LIMIT:
        return Finding("fit.collision_rate", OK, rate, threshold, f"{_pct(rate)} {over}")
    cap = s2.value("valkyrie_fit_capacity", 0.0) or 0.0
    entries = s2.value("valkyrie_fit_entries", 0.0) or 0.0
    # The guide doubles the capacity; never suggest less than what 0.6 needs for today's entries.
    new_cap = max(2 * int(cap), _next_pow2(entries / 0.6), 8)
    return Finding("fit.collision_rate", FAIL, rate, threshold, f"{_pct(rate)} {over}",
                   remedy="Increase FIT capacity or reduce the load factor (lower load factor = fewer collisions).",
                   config=f"[routing.lockfree] fit_load_factor = 0.6 / fit_capacity = {new_cap}",
                   live=f"PATCH /admin/tuning {{\"fit_load_factor\": 0.6, \"fit_capacity\": {new_cap}}}")


def _check_load_factor(s2):
    load, target = s2.value("valkyrie_fit_load_factor"), s2.value("valkyrie_fit_target_load_factor")
    if load is None or target is None:
        return Finding("fit.load_factor", WARN, None, "<= fit_load_factor", "FIT load gauges are not exported")
    threshold = f"<= {target:.2f} (fit_load_factor)"
    cap = s2.value("valkyrie_fit_capacity", 0.0) or 0.0
    entries = s2.value("valkyrie_fit_entries", 0.0) or 0.0
    summary = f"{load:.3f} ({entries:.0f} entries in {cap:.0f} slots)"
    # Small slack: the table grows on the insert that would cross the target.
    if load > target + 0.01:
        new_cap = max(2 * int(cap), _next_pow2(entries / 0.6))
        return Finding("fit.load_factor", FAIL, load, threshold, summary + ": the table has not grown to honour its target",
                       remedy="Rebuild the FIT larger (a live rebuild publishes a new snapshot without stalling readers).",
                       config=f"[routing.lockfree] fit_load_factor = 0.6 / fit_capacity = {new_cap}",
                       live=f"PATCH /admin/tuning {{\"fit_capacity\": {new_cap}}}")
    return Finding("fit.load_factor", OK, load, threshold, summary)


def _check_fragmentation(s2):
    threshold = f"<= {_pct(FRAGMENTATION_LIMIT)}"
    rows = s2.series("valkyrie_cra_fragmentation_ratio")
    if not rows:
        return Finding("cra.fragmentation", WARN, None, threshold, "valkyrie_cra_fragmentation_ratio is not exported")
    worst_labels, worst = max(rows, key=lambda r: r[1])
    per = ", ".join(f"{l.get('family', '?')}={_pct(v)}" for l, v in sorted(rows, key=lambda r: r[0].get("family", "")))
    if worst > FRAGMENTATION_LIMIT:
        return Finding("cra.fragmentation", FAIL, worst, threshold, f"{per} (worst: {worst_labels.get('family', '?')})",
                       remedy="Defragment earlier, keep compression on, and start with a larger arena.",
                       config="[routing.lockfree] cra_defrag_threshold = 0.25 / cra_enable_compression = true / "
                              "cra_initial_capacity = 65536",
                       live="PATCH /admin/tuning {\"cra_defrag_threshold\": 0.25}")
    return Finding("cra.fragmentation", OK, worst, threshold, per)


_RCU_CONFIG = ("[routing.lockfree] rcu_grace_period = \"5ms\" / rcu_max_pending_updates = 5000 / "
               "rcu_aggressive_reclaim = true")
_RCU_LIVE = "PATCH /admin/tuning {\"rcu_grace_period\": \"5ms\", \"rcu_aggressive_reclaim\": true}"


def _check_grace(s1, s2):
    threshold = f"p99 <= {_ms(GRACE_PERIOD_LIMIT_SECONDS)}"
    name = "valkyrie_rcu_grace_period_seconds"
    after = s2.buckets(name)
    if not after:
        return Finding("rcu.grace_period", WARN, None, threshold, f"{name} is not exported")
    n1, n2 = s1.total(name + "_count", 0.0), s2.total(name + "_count", 0.0)
    sum1, sum2 = s1.total(name + "_sum", 0.0), s2.total(name + "_sum", 0.0)
    if n2 - n1 > 0:
        buckets, count, total, over = _bucket_delta(after, s1.buckets(name)), n2 - n1, sum2 - sum1, "over the interval"
    else:
        buckets, count, total, over = after, n2, sum2, "since start"
    if count <= 0:
        return Finding("rcu.grace_period", OK, None, threshold, "no snapshot reclaimed yet (nothing retired)")
    p99, mean = histogram_quantile(0.99, buckets), total / count
    summary = f"p99 {_ms(p99)}, mean {_ms(mean)} {over} ({count:.0f} reclaimed)"
    if p99 > GRACE_PERIOD_LIMIT_SECONDS or mean > GRACE_PERIOD_LIMIT_SECONDS:
        return Finding("rcu.grace_period", FAIL, p99, threshold, summary,
                       remedy="Shorten the grace period, batch more updates per snapshot, reclaim aggressively; "
                              "look for long-running readers (oldest reader below).",
                       config=_RCU_CONFIG, live=_RCU_LIVE)
    return Finding("rcu.grace_period", OK, p99, threshold, summary)


def _check_pending(s1, s2):
    threshold = f"<= {PENDING_SNAPSHOTS_LIMIT} retired snapshots waiting"
    p1, p2 = s1.value("valkyrie_rcu_pending_snapshots"), s2.value("valkyrie_rcu_pending_snapshots")
    if p2 is None:
        return Finding("rcu.pending_snapshots", WARN, None, threshold, "valkyrie_rcu_pending_snapshots is not exported")
    summary = f"{p2:.0f} pending (was {p1:.0f} one interval earlier)" if p1 is not None else f"{p2:.0f} pending"
    # Only a backlog that also failed to shrink means reclamation is stuck, not merely busy.
    if p2 > PENDING_SNAPSHOTS_LIMIT and (p1 is None or p2 >= p1):
        return Finding("rcu.pending_snapshots", WARN, p2, threshold, summary,
                       remedy="Retired snapshots are not being reclaimed: a reader is stuck or updates outpace "
                              "reclamation. Force a pass with kill -USR2 $(pgrep valkyrie-routing) or POST /admin/gc.",
                       config=_RCU_CONFIG, live=_RCU_LIVE)
    return Finding("rcu.pending_snapshots", OK, p2, threshold, summary)


def _check_oldest_reader(s2):
    threshold = f"<= {_ms(OLDEST_READER_LIMIT_SECONDS)}"
    age = s2.value("valkyrie_rcu_oldest_reader_seconds")
    if age is None:
        return Finding("rcu.oldest_reader", WARN, None, threshold, "valkyrie_rcu_oldest_reader_seconds is not exported")
    if age > OLDEST_READER_LIMIT_SECONDS:
        return Finding("rcu.oldest_reader", WARN, age, threshold, f"a reader has been inside one snapshot for {_ms(age)}",
                       remedy="A long read-side section holds reclamation back: split huge lookup batches "
                              "([server] max_batch_keys) and check for a stalled worker (top -H -p $(pgrep valkyrie-routing)).",
                       config="[server] max_batch_keys = 100000")
    return Finding("rcu.oldest_reader", OK, age, threshold, "no reader stall" if age == 0 else f"oldest reader {_ms(age)}")


def _check_memory(s1, s2, gc_threshold):
    threshold = f"growth <= {_mib(MEMORY_GROWTH_LIMIT_BYTES)} and <= {_pct(MEMORY_GROWTH_LIMIT_SHARE)} per interval"
    r1, r2 = s1.value("process_resident_memory_bytes"), s2.value("process_resident_memory_bytes")
    if r1 is None or r2 is None:
        return Finding("memory.rss", WARN, None, threshold, "process_resident_memory_bytes is not exported (not Linux?)")
    growth = r2 - r1
    dt = max(s2.at - s1.at, 1e-9)
    summary = f"RSS {_mib(r2)}, {'+' if growth >= 0 else ''}{_mib(growth)} in {dt:.1f}s"
    remedy = ("Profile the heap (kill -USR1 $(pgrep valkyrie-routing)), force GC and RCU reclamation "
              "(kill -USR2 $(pgrep valkyrie-routing)), reduce cache sizes; restart if it keeps growing.")
    config = ("[performance.memory] enable_memory_profiling = true / gc_threshold = \"4GB\"; "
              "[routing] route_cache_size = 50000; [caching.policies] max_cache_memory = \"2GB\"")
    if growth > MEMORY_GROWTH_LIMIT_BYTES and growth > MEMORY_GROWTH_LIMIT_SHARE * r1:
        return Finding("memory.rss", WARN, growth, threshold, summary + ": growing fast", remedy=remedy, config=config)
    if gc_threshold and r2 > gc_threshold:
        return Finding("memory.rss", WARN, r2, f"RSS <= gc_threshold {_mib(gc_threshold)}",
                       summary + ": above gc_threshold", remedy=remedy, config=config)
    return Finding("memory.rss", OK, growth, threshold, summary)


def _check_config(path, http_port, metrics_port):
    """Config validity and conflicts for ``path``; the diagnosed server's own ports do not count as taken."""
    from valkyrie.config import ConfigError, load_config
    from valkyrie.conflicts import check_conflicts

    findings = []
    try:
        config = load_config(path)
    except ConfigError as exc:
        return [Finding("config.valid", FAIL, len(exc.problems), "0 problems", "; ".join(exc.problems),
                        remedy=f"Fix each problem, then check with: valkyrie-routing --validate-config {path}",
                        config=_config_hint(exc.problems))]
    findings.append(Finding("config.valid", OK, 0, "0 problems", f"{path} is valid"))
    problems = check_conflicts(config, probe_ports=False)
    for what, host_key, port_key, ours in (("HTTP", "server.host", "server.port", http_port),
                                          ("metrics", "observability.metrics.host", "observability.metrics.port", metrics_port)):
        port = config[port_key]
        if port and port != ours and _listening(config[host_key], port):
            problems.append(f"{what} port {config[host_key]}:{port} is already in use on this machine "
                            f"(by something other than the diagnosed server)")
    if problems:
        findings.append(Finding("config.conflicts", FAIL, len(problems), "0 conflicts", "; ".join(problems),
                                remedy=f"Resolve each conflict, then check with: valkyrie-routing --check-conflicts {path}",
                                config="[server] port = 8080; [observability.metrics] port = 9090  # use different ports"))
    else:
        findings.append(Finding("config.conflicts", OK, 0, "0 conflicts", "no port, memory, CPU or pool conflicts"))
    return findings


def _config_hint(problems):
    text = " ".join(problems)
    if "Performance budget" in text:
        return "[performance] performance_budget = \"75us\"  # must be <= 82us"
    if "memory allocation" in text:
        return "[performance.memory] max_heap_size = \"4GB\"; [caching.policies] max_cache_memory = \"2GB\""
    if "Port conflict" in text:
        return "[server] port = 8080; [observability.metrics] port = 9090"
    return ""


def _listening(host, port):
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- putting it together ---------------------------------------------------------------------


def _urls_from(args):
    url, metrics_url = args.url, args.metrics_url
    config_path = _config_path(args)
    if (url is None or metrics_url is None) and config_path:
        try:
            from valkyrie.config import load_config

            cfg = load_config(config_path)
        except ValueError:
            cfg = None
        if cfg is not None:
            def where(host, port):
                host = "127.0.0.1" if host in ("0.0.0.0", "") else host
                return f"[{host}]" if ":" in host else host, port
            if url is None:
                url = "http://%s:%d" % where(cfg["server.host"], cfg["server.port"])
            if metrics_url is None:
                h, p = where(cfg["observability.metrics.host"], cfg["observability.metrics.port"])
                metrics_url = f"http://{h}:{p}{cfg['observability.metrics.path']}"
    return (url or "http://localhost:8080").rstrip("/"), metrics_url or "http://localhost:9090/metrics"


def _config_path(args):
    return getattr(args, "diagnose_config", None) or getattr(args, "config", None)


def _port(url):
    try:
        return urllib.parse.urlsplit(url).port
    except ValueError:
        return None


def diagnose(url, metrics_url, *, config_path=None, token=None, interval=1.0, timeout=3.0):
    """Run every check; returns ``(exit_code, report dict)``."""
    http = Http(token, timeout)
    findings = []
    report = {"url": url, "metrics_url": metrics_url, "interval_seconds": interval}
    down = False
    try:
        status, body = http.get(url + "/health")
        health = _check_health(status, _json_or_none(body), url)
        down = status != 200
    except OSError as exc:
        health = Finding("health", FAIL, "unreachable", "HTTP 200", f"{url}/health: {exc}",
                         remedy="The server is not running or not listening there: systemctl status valkyrie-routing "
                                "(or docker-compose ps valkyrie-routing), then journalctl -u valkyrie-routing "
                                "--since \"10 minutes ago\" | grep -i error.",
                         config="[server] port = 8080 / host = \"127.0.0.1\"")
        down = True
    findings.append(health)

    if not down:
        values = {}
        try:
            st, body = http.get(url + "/config/status", admin=True)
            values = (_json_or_none(body) or {}).get("values", {}) if st == 200 else {}
        except OSError:
            pass
        report["live_overrides"] = _live_overrides(http, url)
        try:
            s1 = _scrape(http, metrics_url)
            time.sleep(interval)
            s2 = _scrape(http, metrics_url)
        except OSError as exc:
            findings.append(Finding("metrics", FAIL, "unreachable", "HTTP 200", f"{metrics_url}: {exc}",
                                    remedy="Prometheus cannot scrape either: check the metrics endpoint is enabled "
                                           "and on its own port (curl -f http://localhost:9090/metrics).",
                                    config="[observability.metrics] enable = true / port = 9090 / path = \"/metrics\""))
        else:
            findings.append(Finding("metrics", OK, len(s2.samples), "HTTP 200", f"{len(s2.samples)} series names scraped twice"))
            findings += [
                _check_p99(s1, s2, values.get("performance.performance_budget")),
                _check_throughput(s1, s2),
                _check_errors(s1, s2),
                _check_collisions(s1, s2),
                _check_load_factor(s2),
                _check_fragmentation(s2),
                _check_grace(s1, s2),
                _check_pending(s1, s2),
                _check_oldest_reader(s2),
                _check_memory(s1, s2, values.get("performance.memory.gc_threshold")),
            ]
    if config_path:
        findings += _check_config(config_path, _port(url), _port(metrics_url))

    bad = [f for f in findings if f.status != OK]
    code = EXIT_DOWN if down else (EXIT_DEGRADED if bad else EXIT_HEALTHY)
    report.update(verdict={EXIT_HEALTHY: "healthy", EXIT_DEGRADED: "degraded", EXIT_DOWN: "down"}[code],
                  exit_code=code, findings=[_jsonable(asdict(f)) for f in findings])
    return code, report


def _live_overrides(http, url):
    """Tunables set live rather than from the file (GET /admin/tuning; needs the token when one is configured)."""
    try:
        status, body = http.get(url + "/admin/tuning", admin=True)
    except OSError:
        return None
    view = _json_or_none(body) if status == 200 else None
    if not isinstance(view, dict):
        return None
    return {k: {"value": v.get("value"), "file_value": v.get("file_value")}
            for k, v in view.items() if isinstance(v, dict) and v.get("source") == "live"}


def _scrape(http, metrics_url):
    status, body = http.get(metrics_url)
    if status != 200:
        raise OSError(f"HTTP {status}")
    return Scrape(body.decode("utf-8", "replace"), time.monotonic())


def _jsonable(d):
    v = d.get("value")
    if isinstance(v, float) and not math.isfinite(v):
        d["value"] = None
    return d


def _print_text(report, out):
    out.write(f"Valkyrie diagnose: {report['url']} (metrics {report['metrics_url']})\n")
    tags = {OK: "[ OK ]", WARN: "[WARN]", FAIL: "[FAIL]"}
    for f in report["findings"]:
        out.write(f"{tags[f['status']]} {f['check']:<22} {f['summary']}  (threshold {f['threshold']})\n")
        if f["status"] != OK:
            if f["remedy"]:
                out.write(f"       remedy: {f['remedy']}\n")
            if f["config"]:
                out.write(f"       change: {f['config']}\n")
            if f["live"]:
                out.write(f"       live:   {f['live']}\n")
    if report.get("live_overrides"):
        out.write("live overrides (PATCH /admin/tuning; null reverts): " + ", ".join(
            f"{k}={v['value']} (file {v['file_value']})" for k, v in sorted(report["live_overrides"].items())) + "\n")
    fails = sum(f["status"] == FAIL for f in report["findings"])
    warns = sum(f["status"] == WARN for f in report["findings"])
    out.write(f"verdict: {report['verdict'].upper()} ({fails} fail, {warns} warn) -> exit {report['exit_code']}\n")


def add_parser(subparsers):
    """Register the ``diagnose`` subcommand on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "diagnose", help="run the troubleshooting guide's checks against a running server",
        description="Check a running Valkyrie server against the troubleshooting guide: health, P99 latency vs 82us, "
                    "throughput vs 1M ops/s (only judged under load), FIT collision rate vs 10%, FIT load factor vs "
                    "its target, CRA fragmentation vs 30%, RCU grace period vs 50ms, pending snapshots, oldest "
                    "reader, memory growth, and (with --config) config validity and conflicts. Each finding names "
                    "the guide's remedy and the config key to change.",
        epilog="Exit status: 0 healthy, 1 degraded (some check warns or fails), 2 down (unreachable or /health not 200).")
    p.add_argument("--url", help="API base URL (default: from --config, else http://localhost:8080)")
    p.add_argument("--metrics-url", help="metrics URL (default: from --config, else http://localhost:9090/metrics)")
    # Own dest: the top-level parser already has --config (the file the server runs with).
    p.add_argument("--config", dest="diagnose_config", metavar="FILE",
                   help="also validate FILE and check it for conflicts; its ports are used when --url is not given")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--token", default=None, help=f"admin bearer token (default: ${TOKEN_ENV})")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between the two metric scrapes (default 1)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each HTTP answer (default 3)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Run ``diagnose`` for parsed ``args``; prints the report and returns the exit status."""
    url, metrics_url = _urls_from(args)
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None
    code, report = diagnose(url, metrics_url, config_path=_config_path(args), token=token,
                            interval=max(0.05, getattr(args, "interval", 1.0)), timeout=getattr(args, "timeout", 3.0))
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_text(report, sys.stdout)
    return code


def main(argv=None):
    """Standalone entry point: ``python -m valkyrie.diagnose [options]`` until the CLI wires the subcommand."""
    import argparse

    parser = argparse.ArgumentParser(prog="valkyrie-routing")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["diagnose", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
