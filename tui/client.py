"""Talking to a Valkyrie server: HTTP admin calls, metrics scrapes, and the figures the console shows.

Everything here is free of Textual so it can be tested (and benchmarked) on its own:

- ``parse_metrics(text, at)`` turns Prometheus text into a ``Scrape``;
- ``derive(scrape, prev, ...)`` turns two consecutive scrapes into a ``Reading`` with rates;
- ``ValkyrieClient`` does the HTTP, with a timeout on every request, and keeps the previous
  scrape so ``poll()`` returns ready-to-show ``Reading`` objects.

A server that is down, slow or restarting raises ``Unreachable`` from ``poll()``; an admin
call the server refuses raises ``ServerError`` carrying the server's own code and message.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "BUDGET_US", "THROUGHPUT_FLOOR", "COLLISION_LIMIT", "FRAGMENTATION_LIMIT", "GRACE_LIMIT_S",
    "Scrape", "Reading", "ServerError", "Unreachable", "ValkyrieClient",
    "parse_metrics", "derive", "flags_for", "default_metrics_url", "TOKEN_ENV",
]

# The guide's thresholds (troubleshooting guide: "Performance Issues", "Lock-Free Data Structure Issues").
BUDGET_US = 82.0
THROUGHPUT_FLOOR = 1_000_000.0
COLLISION_LIMIT = 0.10
FRAGMENTATION_LIMIT = 0.30
GRACE_LIMIT_S = 0.050

TOKEN_ENV = "VALKYRIE_ADMIN_TOKEN"
QUANTILES = ("0.5", "0.9", "0.99", "0.999")
CRA_FAMILIES = ("ipv4", "ipv6", "name")

# Label sets are stored as sorted tuples so they can key a dict.
Labels = tuple[tuple[str, str], ...]


class ServerError(Exception):
    """The server answered an error: ``status``, and the ``code``/``message`` of its JSON body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status, self.code, self.message = status, code, message


class Unreachable(Exception):
    """The server did not answer in time (down, slow, restarting, or the wrong address)."""


# ---- metrics text -> Scrape --------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """One parsed ``/metrics`` page: every sample's value by name and labels, taken at ``at`` (monotonic s)."""

    at: float
    samples: dict[str, dict[Labels, float]]

    def get(self, name: str, default: float | None = None, **labels: str) -> float | None:
        """One sample's value: ``scrape.get("valkyrie_fit_capacity")``."""
        series = self.samples.get(name)
        if not series:
            return default
        return series.get(tuple(sorted(labels.items())), default)

    def total(self, name: str) -> float | None:
        """Sum of a sample over every label set (None when absent)."""
        series = self.samples.get(name)
        return math.fsum(series.values()) if series else None

    def by(self, name: str, label: str) -> dict[str, float]:
        """Values of ``name`` keyed by one label's value."""
        out = {}
        for labels, value in self.samples.get(name, {}).items():
            out[dict(labels).get(label, "")] = value
        return out

    def series(self, name: str) -> dict[Labels, float]:
        """Every label set of ``name``."""
        return self.samples.get(name, {})


def parse_metrics(text: str, at: float) -> Scrape:
    """Parse Prometheus text: ``parse_metrics("valkyrie_rcu_epoch 3.0\\n", 0).get("valkyrie_rcu_epoch") == 3.0``."""
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = float(s.value)
    return Scrape(at, samples)


# ---- Scrape pair -> Reading ---------------------------------------------------------------------


@dataclass(frozen=True)
class CraFamily:
    """One CRA arena (ipv4, ipv6 or name prefixes)."""

    nodes: float | None
    nbytes: float | None
    fragmentation: float | None


@dataclass(frozen=True)
class Reading:
    """What the panels show after one poll; None means "not known" (idle, not exported, or first poll)."""

    at: float
    wall: float
    # /health
    status: str = "unknown"
    detail: str | None = None
    routes: int | None = None
    nodes: int | None = None
    epoch: int | None = None
    uptime_s: float | None = None
    # latency (microseconds) over the server's last minute; None while idle
    latency_us: dict[str, float | None] = field(default_factory=dict)
    latency_count: int = 0
    # traffic over the last poll interval
    throughput: float | None = None
    errors_per_s: float | None = None
    error_ratio: float | None = None
    top_error: str | None = None
    requests_total: float | None = None
    # FIT
    fit_load: float | None = None
    fit_target: float | None = None
    fit_capacity: float | None = None
    fit_entries: float | None = None
    collision_rate: float | None = None
    collision_window: str = "total"
    probe_mean: float | None = None
    probe_max: float | None = None
    # CRA per family
    cra: dict[str, CraFamily] = field(default_factory=dict)
    # RCU
    rcu_epoch: float | None = None
    pending_snapshots: float | None = None
    last_grace_s: float | None = None
    oldest_reader_s: float | None = None
    # memory
    rss_bytes: float | None = None
    table_bytes: float | None = None
    # config and tuning
    config_source: str | None = None
    loaded_at: float | None = None
    last_reload: dict | None = None
    live_overrides: dict = field(default_factory=dict)
    tuning: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    budget_us: float | None = None
    token_required: bool | None = None
    tuning_error: str | None = None
    metrics_error: str | None = None
    flags: frozenset[str] = frozenset()

    @property
    def ready(self) -> bool:
        """Whether the server answered /health with 200."""
        return self.status == "ok"


def _rate(curr: float | None, prev: float | None, dt: float) -> float | None:
    if curr is None or prev is None or dt <= 0 or curr < prev:
        # A counter that went backwards means the server restarted: no rate this round.
        return None
    return (curr - prev) / dt


def _lookup_http(scrape: Scrape) -> tuple[float, float]:
    """(requests, errors) answered on the /v1 lookup endpoints, from ``valkyrie_http_requests_total``."""
    total = errors = 0.0
    for labels, value in scrape.series("valkyrie_http_requests_total").items():
        lab = dict(labels)
        if lab.get("endpoint", "").startswith("/v1/route"):
            total += value
            if lab.get("status", "200") >= "400":
                errors += value
    return total, errors


def _latency(scrape: Scrape) -> tuple[dict[str, float | None], int]:
    name = "valkyrie_routing_request_duration_window_seconds"
    count = int(scrape.get(name + "_count", 0.0) or 0)
    out: dict[str, float | None] = {}
    for q in QUANTILES:
        v = scrape.get(name, None, quantile=q)
        # The server exports 0 for an idle window; show that as unknown, not as "fast".
        out[q] = v * 1e6 if v is not None and count > 0 and v > 0 else None
    return out, count


def _grace(scrape: Scrape, prev: Scrape | None, last: float | None) -> float | None:
    s = scrape.get("valkyrie_rcu_grace_period_seconds_sum")
    c = scrape.get("valkyrie_rcu_grace_period_seconds_count")
    if s is None or not c:
        return last
    if prev is not None:
        ps = prev.get("valkyrie_rcu_grace_period_seconds_sum")
        pc = prev.get("valkyrie_rcu_grace_period_seconds_count")
        if ps is not None and pc is not None and c > pc and s >= ps:
            return (s - ps) / (c - pc)
        if pc is not None and c == pc:
            return last if last is not None else s / c
    return s / c


def derive(scrape: Scrape | None, prev: Scrape | None, *, health: dict | None = None, status: dict | None = None,
           tuning: dict | None = None, last_grace: float | None = None, wall: float | None = None,
           metrics_error: str | None = None, tuning_error: str | None = None) -> Reading:
    """Figures for the panels from this scrape and the previous one (rates need both)."""
    health = health or {}
    status = status or {}
    r = Reading(at=scrape.at if scrape else time.monotonic(), wall=wall if wall is not None else time.time(),
                status=health.get("status", "unknown"), detail=health.get("detail"),
                routes=health.get("routes"), nodes=health.get("nodes"), epoch=health.get("epoch"),
                uptime_s=health.get("uptime_seconds"), metrics_error=metrics_error, tuning_error=tuning_error)
    values = status.get("values") or {}
    budget = values.get("performance.performance_budget")
    r = replace(r, config_source=status.get("source"), loaded_at=status.get("loaded_at"),
                last_reload=status.get("last_reload"), live_overrides=status.get("live_overrides") or {},
                token_required=status.get("admin_token_required"), tuning=tuning or {}, values=values,
                budget_us=budget * 1e6 if isinstance(budget, (int, float)) else None)
    if scrape is None:
        return replace(r, flags=flags_for(r))
    if prev is not None and (scrape.get("valkyrie_routing_requests_total") or 0) < (prev.get("valkyrie_routing_requests_total") or 0):
        prev = None
    dt = scrape.at - prev.at if prev is not None else 0.0
    latency, count = _latency(scrape)
    requests = scrape.get("valkyrie_routing_requests_total")
    errors = scrape.total("valkyrie_routing_errors_total")
    throughput = _rate(requests, prev.get("valkyrie_routing_requests_total") if prev else None, dt)
    errors_per_s = _rate(errors or 0.0, (prev.total("valkyrie_routing_errors_total") or 0.0) if prev else None, dt)
    error_ratio = top_error = None
    if prev is not None:
        (t1, e1), (t0, e0) = _lookup_http(scrape), _lookup_http(prev)
        if t1 > t0:
            error_ratio = max(0.0, e1 - e0) / (t1 - t0)
        now, before = scrape.by("valkyrie_routing_errors_total", "code"), prev.by("valkyrie_routing_errors_total", "code")
        deltas = {code: v - before.get(code, 0.0) for code, v in now.items() if v - before.get(code, 0.0) > 0}
        if deltas:
            code = max(deltas, key=deltas.get)
            top_error = f"{code} ×{int(deltas[code])}"
    coll, ops = scrape.get("valkyrie_fit_collisions_total"), scrape.get("valkyrie_fit_operations_total")
    collision_rate, window = None, "total"
    if prev is not None and coll is not None and ops is not None:
        pcoll, pops = prev.get("valkyrie_fit_collisions_total"), prev.get("valkyrie_fit_operations_total")
        if pops is not None and pcoll is not None and ops > pops and coll >= pcoll:
            collision_rate, window = (coll - pcoll) / (ops - pops), "now"
    if collision_rate is None and coll is not None and ops:
        # The guide's formula: collisions over operations since start.
        collision_rate = coll / ops
    frag, nodes, nbytes = (scrape.by(f"valkyrie_cra_{m}", "family") for m in ("fragmentation_ratio", "nodes", "bytes"))
    cra = {f: CraFamily(nodes.get(f), nbytes.get(f), frag.get(f)) for f in sorted(set(frag) | set(nodes) | set(nbytes),
                                                                               key=_family_order)}
    r = replace(
        r, latency_us=latency, latency_count=count, throughput=throughput, errors_per_s=errors_per_s,
        error_ratio=error_ratio, top_error=top_error, requests_total=requests,
        fit_load=scrape.get("valkyrie_fit_load_factor"), fit_target=scrape.get("valkyrie_fit_target_load_factor"),
        fit_capacity=scrape.get("valkyrie_fit_capacity"), fit_entries=scrape.get("valkyrie_fit_entries"),
        collision_rate=collision_rate, collision_window=window,
        probe_mean=scrape.get("valkyrie_fit_probe_length_mean"), probe_max=scrape.get("valkyrie_fit_probe_length_max"),
        cra=cra, rcu_epoch=scrape.get("valkyrie_rcu_epoch"), pending_snapshots=scrape.get("valkyrie_rcu_pending_snapshots"),
        last_grace_s=_grace(scrape, prev, last_grace), oldest_reader_s=scrape.get("valkyrie_rcu_oldest_reader_seconds"),
        rss_bytes=scrape.get("process_resident_memory_bytes"), table_bytes=scrape.get("valkyrie_table_bytes"),
    )
    return replace(r, flags=flags_for(r))


def _family_order(name: str) -> tuple[int, str]:
    return (CRA_FAMILIES.index(name) if name in CRA_FAMILIES else len(CRA_FAMILIES), name)


def flags_for(r: Reading) -> frozenset[str]:
    """Names of the figures past the guide's thresholds: p99, throughput, collisions, fragmentation, grace."""
    out = set()
    p99 = r.latency_us.get("0.99")
    if p99 is not None and p99 > BUDGET_US:
        out.add("p99")
    # Low throughput only means something while there is traffic to serve.
    if r.throughput is not None and 0 < r.throughput < THROUGHPUT_FLOOR:
        out.add("throughput")
    if r.collision_rate is not None and r.collision_rate > COLLISION_LIMIT:
        out.add("collisions")
    for name, fam in r.cra.items():
        if fam.fragmentation is not None and fam.fragmentation > FRAGMENTATION_LIMIT:
            out.add("fragmentation")
            out.add(f"fragmentation:{name}")
    if r.last_grace_s is not None and r.last_grace_s > GRACE_LIMIT_S:
        out.add("grace")
    return frozenset(out)


# ---- HTTP ---------------------------------------------------------------------------------------


def default_metrics_url(url: str, port: int | None = None, path: str = "/metrics") -> str:
    """The metrics URL next to ``url``: same host, ``port`` (default 9090) and ``path``."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme or "http", f"{host}:{port or 9090}", path, "", ""))


class ValkyrieClient:
    """HTTP client for one server: ``await client.poll()`` for readings, admin calls for controls.

    Every request carries a timeout so a slow or hung server turns into ``Unreachable``
    instead of a stalled console. Create and use it inside one running event loop.
    """

    def __init__(self, url: str = "http://127.0.0.1:8080", metrics_url: str | None = None, *,
                 token: str | None = None, poll_timeout: float = 1.5, action_timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.metrics_url = metrics_url
        self._metrics_from_config = metrics_url is None
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        self.poll_timeout = poll_timeout
        self.action_timeout = action_timeout
        self._session: aiohttp.ClientSession | None = None
        self._prev: Scrape | None = None
        self._last_grace: float | None = None
        self._status: dict | None = None
        self._tuning: dict | None = None

    # session lifecycle

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One small pool: the console makes a handful of requests per second at most.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8))
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(self, method: str, path: str, *, json: object = None, timeout: float | None = None,
                      url: str | None = None) -> tuple[int, object]:
        """One request: ``(status, parsed JSON or text)``; ``Unreachable`` on connection errors and timeouts."""
        session = await self._http()
        target = url or f"{self.url}{path}"
        try:
            async with session.request(method, target, json=json, headers=self._headers(),
                                       timeout=aiohttp.ClientTimeout(total=timeout or self.poll_timeout)) as resp:
                if resp.content_type == "application/json":
                    return resp.status, await resp.json()
                return resp.status, await resp.text()
        except asyncio.TimeoutError:
            raise Unreachable(f"no answer from {target} within {timeout or self.poll_timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"cannot connect to {target}: {exc.os_error.strerror or exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Unreachable(f"{target}: {type(exc).__name__}: {exc}") from None

    async def _admin(self, method: str, path: str, body: object = None, timeout: float | None = None) -> dict:
        status, data = await self.request(method, path, json=body, timeout=timeout or self.action_timeout)
        if status >= 400:
            raise _server_error(status, data)
        return data if isinstance(data, dict) else {"text": data}

    # polling

    async def poll(self, *, with_config: bool = True) -> Reading:
        """Health, metrics, config status and tuning at once, as a ``Reading`` with rates from the last poll."""
        health_task = asyncio.ensure_future(self.request("GET", "/health"))
        config_tasks = []
        if with_config or self._status is None:
            config_tasks = [asyncio.ensure_future(self._optional("GET", "/config/status")),
                            asyncio.ensure_future(self._optional("GET", "/admin/tuning"))]
        metrics_task = asyncio.ensure_future(self._scrape()) if self.metrics_url else None
        try:
            code, health = await health_task
        except Unreachable:
            for t in [*config_tasks, *([metrics_task] if metrics_task else [])]:
                t.cancel()
            await asyncio.gather(*config_tasks, *([metrics_task] if metrics_task else []), return_exceptions=True)
            raise
        if code not in (200, 503) or not isinstance(health, dict):
            raise Unreachable(f"{self.url}/health answered HTTP {code}; is this a Valkyrie server?")
        tuning_error = None
        if config_tasks:
            (s_code, status), (t_code, tuning) = await asyncio.gather(*config_tasks)
            if s_code == 200 and isinstance(status, dict):
                self._status = status
            if t_code == 200 and isinstance(tuning, dict):
                self._tuning = tuning
            elif t_code in (401, 403):
                tuning_error = _server_error(t_code, tuning).message
        if self._metrics_from_config and self.metrics_url is None and self._status:
            values = self._status.get("values", {})
            if values.get("observability.metrics.enable", True):
                self.metrics_url = default_metrics_url(self.url, values.get("observability.metrics.port"),
                                                       values.get("observability.metrics.path", "/metrics"))
                metrics_task = asyncio.ensure_future(self._scrape())
        scrape, metrics_error = None, None
        if metrics_task is not None:
            try:
                scrape = await metrics_task
            except (Unreachable, ValueError) as exc:
                metrics_error = str(exc)
        else:
            metrics_error = "metrics are off on this server"
        reading = derive(scrape, self._prev, health=health, status=self._status, tuning=self._tuning,
                         last_grace=self._last_grace, metrics_error=metrics_error, tuning_error=tuning_error)
        if scrape is not None:
            self._prev, self._last_grace = scrape, reading.last_grace_s
        return reading

    async def _optional(self, method: str, path: str) -> tuple[int, object]:
        try:
            return await self.request(method, path)
        except Unreachable:
            return 0, None

    async def _scrape(self) -> Scrape:
        status, text = await self.request("GET", "", url=self.metrics_url)
        if status != 200 or not isinstance(text, str):
            raise Unreachable(f"{self.metrics_url} answered HTTP {status}")
        return parse_metrics(text, time.monotonic())

    # admin actions

    async def health(self) -> dict:
        """``GET /health`` (200 or 503 body)."""
        _, data = await self.request("GET", "/health")
        return data

    async def config_status(self) -> dict:
        """``GET /config/status``."""
        return await self._admin("GET", "/config/status")

    async def tuning(self) -> dict:
        """``GET /admin/tuning``: every tunable with value, source and file value."""
        return await self._admin("GET", "/admin/tuning")

    async def set_tuning(self, values: dict) -> dict:
        """``PATCH /admin/tuning``; a None value reverts that key to the file's value."""
        return await self._admin("PATCH", "/admin/tuning", values)

    async def reload(self) -> dict:
        """``POST /admin/reload``: re-read the config file; ``ServerError`` 422 when it is invalid."""
        return await self._admin("POST", "/admin/reload")

    async def gc(self) -> dict:
        """``POST /admin/gc``: GC, forced RCU reclamation, malloc trim."""
        return await self._admin("POST", "/admin/gc")

    async def heap_dump(self) -> dict:
        """``POST /admin/heap-dump``: ``{"path": ...}`` of the profile written on the server's machine."""
        return await self._admin("POST", "/admin/heap-dump")

    async def cache_warmup(self) -> dict:
        """``POST /admin/cache/warmup``; ``ServerError`` 404 when this server does not have it."""
        return await self._admin("POST", "/admin/cache/warmup")


def _server_error(status: int, data: object) -> ServerError:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        return ServerError(status, str(err.get("code", "error")), str(err.get("message", "")))
    text = data if isinstance(data, str) else ""
    return ServerError(status, "http_error", text.strip()[:200] or f"HTTP {status}")
