"""Prometheus metrics with the guide's names, fed from the server's own state on each scrape.

Request latency is recorded into log-linear histograms by a kernel
(``jit.latency``): one cumulative histogram exported as
``valkyrie_routing_request_duration_seconds`` and a ring of short windows whose
sum gives live quantiles, exported as the summary
``valkyrie_routing_request_duration_window_seconds{quantile="0.99"}``.
"""

import threading

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily

from jit.latency import quantile, record_in, upper_edges

__all__ = ["LatencyRecorder", "Metrics", "QUANTILES"]

# No *_created series: they repeat every counter's HELP text and trip the guide's greps.
disable_created_metrics()

QUANTILES = (0.5, 0.9, 0.99, 0.999)
BASE_SECONDS = 1e-7
SUB = 8
NBUCKETS = 8 * 27 + 2  # 100ns .. ~13s
# Export every other internal edge: 2^(1/4) steps keep histogram_quantile close around 82us.
EXPORT_STRIDE = 2


class LatencyRecorder:
    """Cumulative and windowed latency histograms (seconds)."""

    def __init__(self, *, windows=6):
        self.total = np.zeros(NBUCKETS, dtype=np.int64)
        self.ring = np.zeros((windows, NBUCKETS), dtype=np.int64)
        self.ring_sums = np.zeros(windows, dtype=np.float64)
        self.cur = 0
        self.sum_seconds = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds):
        """Record one duration."""
        record_in(self.total, self.ring, self.ring_sums, self.cur, seconds, BASE_SECONDS, SUB)
        self.sum_seconds += seconds

    def rotate(self):
        """Start a new window, dropping the oldest (call every window length)."""
        nxt = (self.cur + 1) % self.ring.shape[0]
        self.ring[nxt] = 0
        self.ring_sums[nxt] = 0.0
        self.cur = nxt

    def quantiles(self, qs=QUANTILES):
        """Live quantiles over the recent windows, ``{q: seconds}`` (nan when idle)."""
        window = self.ring.sum(axis=0)
        return {q: quantile(window, q, BASE_SECONDS, SUB) for q in qs}

    def window_count(self):
        """Observations in the recent windows."""
        return int(self.ring.sum())

    def buckets(self):
        """Cumulative ``(le, count)`` pairs for export, ending with +Inf."""
        edges = upper_edges(NBUCKETS, BASE_SECONDS, SUB)
        cum = np.cumsum(self.total)
        pairs = [(float(edges[b]), int(cum[b])) for b in range(0, NBUCKETS - 1, EXPORT_STRIDE)]
        pairs.append((float("inf"), int(cum[-1])))
        return pairs


class Metrics:
    """Every metric the server exports; ``state`` is called on each scrape for gauges."""

    def __init__(self, state):
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = LatencyRecorder()
        self._state = state
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        # Bumped on every request: plain dicts read by the collector, since prometheus-client's
        # labels().inc() takes two locks per call.
        self.http_requests = {}  # (endpoint, status) -> count
        self.errors = {}  # code -> count
        self.no_route_total = 0
        self.budget_violations = Counter("valkyrie_performance_budget_violations", "Requests slower than performance_budget", registry=r)
        self.updates = Counter("valkyrie_route_updates", "Route changes applied through RCU", ["op"], registry=r)
        self.reloads = Counter("valkyrie_config_reloads", "Config reloads by result", ["result"], registry=r)
        self.grace = Histogram("valkyrie_rcu_grace_period_seconds", "Time from retiring a snapshot to reclaiming it",
                               buckets=(1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 5), registry=r)
        self.compile_seconds = Gauge("valkyrie_kernel_compile_seconds", "Time to compile or load every kernel at start-up", registry=r)
        # Series exist from the first scrape (a counter nobody incremented yet is 0, not absent),
        # so rate() and the guide's greps work on a quiet server.
        for result in ("ok", "error"):
            self.reloads.labels(result)
        for code in ("invalid_body", "invalid_key", "no_route", "overloaded", "too_many_connections", "internal_error",
                     "storage_full", "storage_readonly", "storage_error"):
            self.errors[code] = 0
        r.register(_StateCollector(self))
        self.decisions_total = 0
        self.decision_rate = 0.0  # decisions/s over the last rotation window (set by the server's rotate loop)
        self.errors_total = 0

    def count_error(self, code):
        """Count one request answered with error ``code``."""
        self.errors[code] = self.errors.get(code, 0) + 1
        self.errors_total += 1

    def count_http(self, endpoint, status):
        """Count one HTTP answer."""
        key = (endpoint, status)
        self.http_requests[key] = self.http_requests.get(key, 0) + 1

    def observe_request(self, seconds, keys, budget):
        """Record one routing request of ``keys`` decisions taking ``seconds``."""
        self.latency.observe(seconds)
        self.decisions_total += keys
        if seconds > budget:
            self.budget_violations.inc()


class _StateCollector:
    """Gauges and derived series computed from live state at scrape time."""

    def __init__(self, metrics):
        self.m = metrics

    def describe(self):
        return []

    def collect(self):
        m = self.m
        lat = m.latency
        buckets = lat.buckets()
        yield HistogramMetricFamily("valkyrie_routing_request_duration_seconds",
                                    "Server-side time to route one request (cumulative)",
                                    buckets=[(_le(le), c) for le, c in buckets], sum_value=lat.sum_seconds)
        summary = SummaryMetricFamily("valkyrie_routing_request_duration_window_seconds",
                                      "Live quantiles of request routing time over the last minute",
                                      count_value=lat.window_count(), sum_value=float(lat.ring_sums.sum()))
        for q, v in lat.quantiles().items():
            summary.add_sample("valkyrie_routing_request_duration_window_seconds", {"quantile": str(q)},
                               0.0 if v != v else float(v))
        yield summary
        # A plain int bumped by the handlers: prometheus-client's Counter takes a lock per inc().
        yield CounterMetricFamily("valkyrie_routing_requests", "Routing decisions made (keys resolved)",
                                  value=m.decisions_total)
        yield GaugeMetricFamily("valkyrie_routing_requests_rate", "Routing decisions per second over the last 10s",
                                value=m.decision_rate)
        yield CounterMetricFamily("valkyrie_routing_no_route", "Keys that resolved to no route", value=m.no_route_total)
        errors = CounterMetricFamily("valkyrie_routing_errors", "Requests answered with an error, by code", labels=["code"])
        for code, n in sorted(m.errors.items()):
            errors.add_metric([code], n)
        yield errors
        http = CounterMetricFamily("valkyrie_http_requests", "HTTP requests by endpoint and status",
                                   labels=["endpoint", "status"])
        for (endpoint, status), n in sorted(m.http_requests.items()):
            http.add_metric([endpoint, str(status)], n)
        yield http
        state = m._state()
        if state is None:
            return
        for name, doc, value, kind in _flat_series(state):
            fam = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=list(value[0][0]) if value else [])
            for labels, v in value:
                fam.add_metric(list(labels.values()), v)
            yield fam


def _le(le):
    return "+Inf" if le == float("inf") else f"{le:.9g}"


def _flat_series(state):
    """(name, doc, [(labels, value)], kind) from the server's ``state()`` dict."""
    fit, rcu, cra = state["fit"], state["rcu"], state["cra"]
    one = lambda v: [({}, float(v))]  # noqa: E731
    yield "valkyrie_fit_collisions", "FIT lookups made dearer by other keys (probe left the home 64-tag line, or read a same-fingerprint key)", one(fit["collisions"]), "counter"
    yield "valkyrie_fit_operations", "FIT lookups performed", one(fit["operations"]), "counter"
    # What the guide's grep | awk | bc recipe computes, as one number (its greps also catch # HELP lines).
    yield "valkyrie_fit_collision_rate", "valkyrie_fit_collisions_total / valkyrie_fit_operations_total since start", \
        one(fit["collisions"] / fit["operations"] if fit["operations"] else 0.0), "gauge"
    yield "valkyrie_fit_load_factor", "FIT entries / capacity in the live snapshot", one(fit["load"]), "gauge"
    yield "valkyrie_fit_target_load_factor", "Configured fit_load_factor", one(fit["load_factor"]), "gauge"
    yield "valkyrie_fit_capacity", "FIT slots in the live snapshot", one(fit["capacity"]), "gauge"
    yield "valkyrie_fit_entries", "Exact routes in the live snapshot", one(fit["entries"]), "gauge"
    yield "valkyrie_fit_probe_length_mean", "Mean probes per FIT lookup", one(fit["mean_probe"]), "gauge"
    yield "valkyrie_fit_probe_length_max", "Longest FIT probe seen", one(fit["max_probe"]), "gauge"
    yield "valkyrie_cra_fragmentation_ratio", "Dead CRA arena slots / total", [({"family": f}, c["fragmentation"]) for f, c in cra.items()], "gauge"
    yield "valkyrie_cra_nodes", "CRA arena nodes", [({"family": f}, c["nodes"]) for f, c in cra.items()], "gauge"
    yield "valkyrie_cra_bytes", "CRA arena bytes", [({"family": f}, c["nbytes"]) for f, c in cra.items()], "gauge"
    yield "valkyrie_routes", "Routes in the live snapshot by kind", [({"kind": k}, v) for k, v in state["routes"].items()], "gauge"
    yield "valkyrie_nodes", "Next hops declared", one(state["nodes"]), "gauge"
    yield "valkyrie_table_bytes", "Bytes held by the live route tables", one(state["table_bytes"]), "gauge"
    yield "valkyrie_rcu_epoch", "Epoch of the live snapshot", one(rcu["epoch"]), "gauge"
    yield "valkyrie_rcu_pending_snapshots", "Retired snapshots not yet reclaimed", one(rcu["pending_snapshots"]), "gauge"
    yield "valkyrie_rcu_oldest_reader_seconds", "Age of the oldest reader in a critical section", one(rcu["oldest_reader_seconds"]), "gauge"
    yield "valkyrie_rcu_reclaimed_bytes", "Bytes released by RCU reclamation", one(rcu["reclaimed_bytes_total"]), "counter"
    yield "valkyrie_rcu_reclaimed_snapshots", "Snapshots released by RCU reclamation", one(rcu["reclaimed_total"]), "counter"
    yield "valkyrie_rcu_stalled_readers", "Readers inside one snapshot longer than the stall limit (1s)", one(rcu["stalled_readers"]), "gauge"
    yield "valkyrie_rcu_reader_stalls", "Reader stalls reported (WARN logged once each)", one(rcu["stalls_total"]), "counter"
    yield "valkyrie_rcu_grace_wait_seconds", "How long the oldest retired snapshot has waited for reclamation", one(rcu["oldest_pending_seconds"]), "gauge"
    yield "valkyrie_cra_defragmentations", "CRA tables rebuilt compactly past cra_defrag_threshold", [({"family": f}, c["defragmentations"]) for f, c in cra.items()], "counter"
    cache = state["cache"]
    yield "valkyrie_cache_hits", "Single lookups answered from the route cache", one(cache["hits"]), "counter"
    yield "valkyrie_cache_misses", "Single lookups the route cache could not answer", one(cache["misses"]), "counter"
    yield "valkyrie_cache_evictions", "Route cache entries evicted to stay within route_cache_size", one(cache["evictions"]), "counter"
    yield "valkyrie_cache_invalidations", "Times a new snapshot made the cached answers stale", one(cache["invalidations"]), "counter"
    yield "valkyrie_cache_entries", "Answers in the route cache", one(cache["entries"]), "gauge"
    yield "valkyrie_cache_capacity", "Route cache capacity in entries (route_cache_size, bounded by max_cache_memory)", one(cache["size"]), "gauge"
    yield "valkyrie_update_queue_depth", "Update batches waiting for the writer", one(state["queue_depth"]), "gauge"
    pool = state["pool"]
    yield "valkyrie_connection_pool_active", "Requests being handled now", one(pool["active"]), "gauge"
    yield "valkyrie_connection_pool_size", "Configured connection_pool_size", one(pool["size"]), "gauge"
    yield "valkyrie_connection_pool_utilization", "Active requests / connection_pool_size", one(pool["utilization"]), "gauge"
    yield "valkyrie_connection_pool_exhausted", "Requests refused because the pool was full", one(pool["exhausted"]), "counter"
    yield "valkyrie_ready", "1 once tables are loaded and kernels compiled", one(state["ready"]), "gauge"
