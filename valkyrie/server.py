"""The aiohttp front end: lookups, route updates, health and config status; metrics on their own app.

``create_app(config)`` builds the API app. Start-up work (kernel warm-up,
route files, the first snapshot) runs in the background so ``/health`` can
answer 503 until the router is ready. Every error is
``{"error": {"code", "message"}}`` with a 4xx status, or a logged 500 for bugs.
"""

import asyncio
import gc
import logging
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from urllib.parse import unquote_to_bytes

import numpy as np
import orjson
from aiohttp import web

from valkyrie.admin import add_admin_routes, check_token, load_admin_token, requires_token
from valkyrie.cache import RouteCache, encoded
from valkyrie.config import Config, display_value
from valkyrie.http_errors import ApiError, parse_json, read_body
from valkyrie.export import ViewCache, parse_query, stream_routes
from valkyrie.logs import configure_logging
from valkyrie.maintenance import set_memory_profiling, watch_memory
from valkyrie.metrics import Metrics
from valkyrie.process import background_thread
from valkyrie.publisher import Publisher
from valkyrie.reload import watch_config_file
from valkyrie.store import RouteStore, StoreError
from valkyrie.rcu import RcuDomain
from valkyrie.keys import pack_texts
from valkyrie.routes import MAX_KEY_BYTES, RouteError, load_route_file, parse_key
from valkyrie.warmup import warm_kernels
from valkyrie.writer import RouteWriter, parse_delete, parse_put_body

__all__ = ["create_app", "create_metrics_app", "ServerState", "STATE", "BOOT_FAILED", "BOOTED", "ApiError"]

log = logging.getLogger("valkyrie.server")
perf = logging.getLogger("valkyrie.performance")

# RouteError / StoreError codes -> HTTP status.
# Keys of recent single lookups kept for POST /admin/cache/warmup without a body.
RECENT_KEYS = 4096

_STATUS = {"batch_too_large": 413, "unknown_next_hop": 422, "route_not_found": 404, "unknown_table": 404,
           "storage_full": 507, "storage_readonly": 503, "storage_corrupt": 503, "storage_error": 503}


class ServerState:
    """Everything the handlers and background tasks share."""

    def __init__(self, config):
        self.config = config
        self.rcu = RcuDomain(grace_period=config["routing.lockfree.rcu_grace_period"],
                             aggressive=config["routing.lockfree.rcu_aggressive_reclaim"],
                             on_reclaimed=self._on_reclaimed)
        self.writer = RouteWriter(
            fit_load_factor=config["routing.lockfree.fit_load_factor"],
            fit_capacity=config["routing.lockfree.fit_capacity"],
            cra_initial_capacity=config["routing.lockfree.cra_initial_capacity"],
            cra_defrag_threshold=config["routing.lockfree.cra_defrag_threshold"],
        )
        self.cache = RouteCache(config["routing.route_cache_size"], config["routing.route_cache_ttl"],
                                max_bytes=config["caching.policies.max_cache_memory"])
        self.recent = deque(maxlen=RECENT_KEYS)  # recent GET keys: what POST /admin/cache/warmup replays
        self._live_lock = asyncio.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="valkyrie-writer",
                                           initializer=background_thread)
        # One thread for parsing big PUT bodies: each thread that allocates gets its own malloc arena.
        # Not at the writer's lower priority: parsing holds the GIL throughout, so lookups never run
        # beside it, and a parser preempted by another process kept every thread waiting for the GIL
        # (paced bench_updates: reader P99 86us idle and 86us busy with it at the process's priority,
        # one histogram bucket above idle with it lowered).
        self.parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="valkyrie-parse")
        self.store_path = config["routing.store_path"]
        self.store = None  # opened in the writer thread at boot
        self.publisher = Publisher(self.writer, self.rcu, self.executor,
                                   max_pending=config["routing.lockfree.rcu_max_pending_updates"])
        self.metrics = Metrics(self.metrics_state)
        self.file_config = config
        self.overrides = {}  # "section.key" -> value set live (PATCH /admin/tuning)
        self.last_reload = None
        self.reload_lock = asyncio.Lock()  # one config reload at a time (SIGHUP, file watch, POST)
        self.config_fingerprint = None  # stat of the config file as last read (valkyrie.reload)
        if config["performance.memory.enable_memory_profiling"]:
            set_memory_profiling(True)
        self.admin_token = load_admin_token(config)
        self.ready = False
        self.boot_error = None
        self.started_at = time.time()
        self.loaded_at = None
        self.in_flight = 0
        self.exhausted = 0
        self.budget = config["performance.performance_budget"]
        self.max_keys = config["server.max_batch_keys"]
        self.default_table = config["routing.default_table"]
        self._fit_base = {"collisions": 0, "operations": 0}
        self._fit_last = None

    def _on_reclaimed(self, done):
        # Every path that reclaims (timer, aggressive publish, SIGUSR2/GC) lands in the histogram.
        for wait in done.waits:
            self.metrics.grace.observe(wait)

    async def apply_live(self, values, *, source):
        """Apply already-validated ``{"section.key": value}`` to the running server."""
        if not values:
            return
        # One change at a time: each starts from the config the previous one left.
        async with self._live_lock:
            await self._apply_live(values, source)

    async def _apply_live(self, values, source):
        cfg = self.config.with_overrides(**values)
        if any(k.startswith("logging.") for k in values):
            # First: opening a new log file is the step that can fail, and then nothing else has changed.
            configure_logging(cfg)
        lf, cap = "routing.lockfree.fit_load_factor", "routing.lockfree.fit_capacity"
        defrag = "routing.lockfree.cra_defrag_threshold"
        if (lf in values or cap in values) and self.ready:
            # A new FIT geometry is a rebuilt table in a new snapshot, built beside the live one.
            await self.publisher.submit_job(
                lambda writer, current: writer.rebuild_fit(current, load_factor=cfg[lf], capacity=cfg[cap]))
        else:
            self.writer.fit_load_factor, self.writer.fit_capacity = cfg[lf], cfg[cap]
        self.writer.cra_defrag_threshold = cfg[defrag]
        if defrag in values and self.ready and _fragmented(self.rcu.current, cfg[defrag]):
            await self.publisher.submit_job(lambda writer, current: writer.defragment(current))
        self.rcu.grace_period = cfg["routing.lockfree.rcu_grace_period"]
        self.rcu.aggressive = cfg["routing.lockfree.rcu_aggressive_reclaim"]
        self.cache.configure(cfg["routing.route_cache_size"], cfg["routing.route_cache_ttl"],
                             max_bytes=cfg["caching.policies.max_cache_memory"])
        self.publisher.max_pending = cfg["routing.lockfree.rcu_max_pending_updates"]
        self.budget = cfg["performance.performance_budget"]
        self.max_keys = cfg["server.max_batch_keys"]
        set_memory_profiling(cfg["performance.memory.enable_memory_profiling"])
        self.config = cfg
        log.info("applied live (%s): %s", source, ", ".join(f"{k}={display_value(k, v)}" for k, v in sorted(values.items())))

    def on_publish(self, snap):
        """Carry FIT counters across snapshots so the exported counters never go backwards."""
        if self._fit_last is not None and self._fit_last is not snap.exact:
            stats = self._fit_last.stats()
            self._fit_base["collisions"] += stats["collisions"]
            self._fit_base["operations"] += stats["operations"]
        self._fit_last = snap.exact

    def metrics_state(self):
        """Live figures for the metrics collector (None before the first snapshot)."""
        if not self.ready:
            return None
        snap = self.rcu.current
        fit = snap.exact.stats()
        fit_view = {
            "collisions": self._fit_base["collisions"] + fit["collisions"],
            "operations": self._fit_base["operations"] + fit["operations"],
            "load": fit["entries"] / fit["capacity"] if fit["capacity"] else 0.0,
            "load_factor": snap.exact.load_factor,
            "capacity": fit["capacity"], "entries": fit["entries"],
            "mean_probe": fit["mean_probe"], "max_probe": fit["max_probe"],
        }
        cra = {"ipv4": snap.ipv4.stats(), "ipv6": snap.ipv6.stats(), "name": snap.names.stats()}
        for family, stats in cra.items():
            stats["defragmentations"] = self.writer.defrags[family]
        pool_size = self.config["routing.connection_pool_size"]
        return {
            "fit": fit_view,
            "cra": cra,
            "rcu": self.rcu.stats(),
            "routes": {"exact": len(snap.exact), "ipv4": len(snap.ipv4), "ipv6": len(snap.ipv6), "name": len(snap.names)},
            "nodes": len(snap.nodes),
            "table_bytes": snap.nbytes(),
            "queue_depth": self.publisher.queue_depth,
            "cache": self.cache.stats(),
            "pool": {"size": pool_size, "active": self.in_flight, "utilization": self.in_flight / pool_size,
                     "exhausted": self.exhausted},
            "ready": 1.0,
        }


def _fragmented(snap, threshold):
    return any(t.stats()["fragmentation"] > threshold for t in (snap.ipv4, snap.ipv6, snap.names))


STATE = web.AppKey("state", ServerState)
BOOT_FAILED = web.AppKey("boot_failed", asyncio.Event)
BOOTED = web.AppKey("booted", asyncio.Event)
ROUTE_VIEWS = web.AppKey("route_views", ViewCache)


# ---- helpers ---------------------------------------------------------------------------------


def _json(data, status=200):
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error_body(code, message):
    return {"error": {"code": code, "message": message}}


async def _json_body(request):
    return parse_json(await read_body(request, request.app[STATE].config))


def _route_error(exc):
    return ApiError(_STATUS.get(exc.code, 400), exc.code, str(exc))


async def reload_routes(request):
    """Re-read the route files, keep every stored API change on top, publish the result."""
    st = request.app[STATE]
    _require_ready(st)
    loop = asyncio.get_running_loop()
    try:
        route_sets = await loop.run_in_executor(None, _read_route_files, st.config)
        epoch = await st.publisher.submit_job(lambda writer, current: _rebuild_from(st, writer, route_sets))
    except (RouteError, StoreError) as exc:
        raise _route_error(exc) from None
    snap = st.rcu.current
    log.info("route files reloaded: epoch %d, %d routes", epoch, snap.route_count)
    return _json({"epoch": epoch, "routes": snap.route_count, "files": st.config["routing.route_files"]})


def _require_ready(st):
    if not st.ready:
        detail = f": {st.boot_error}" if st.boot_error else ""
        raise ApiError(503, "not_ready", f"route tables are not loaded yet{detail}")


def _check_query_text(request):
    # aiohttp replaces undecodable bytes with U+FFFD; a query that is not UTF-8 is refused instead.
    try:
        unquote_to_bytes(request.rel_url.raw_query_string).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_query", f"query string is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None


def _lookup_query(st, request):
    """A lookup's query string: only ``table`` (checked), anything else is a 400 naming it."""
    if not request.query_string:
        return
    _check_query_text(request)
    unknown = sorted(set(request.query) - {"table"})
    if unknown:
        raise ApiError(400, "invalid_query", f"unknown query parameter(s) {', '.join(unknown)}; lookups take only 'table'")
    tables = request.query.getall("table", [None])
    if len(tables) > 1:
        raise ApiError(400, "invalid_query", f"'table' is given {len(tables)} times; give it once")
    _check_table(st, tables[0])


def _check_table(st, table):
    if table is not None and not isinstance(table, str):
        raise ApiError(400, "invalid_body", f"'table' must be a string, got {type(table).__name__}")
    if table is not None and table != st.default_table:
        raise ApiError(404, "unknown_table", f"no route table named {table!r}; this server has {st.default_table!r}")


def _path_key(path):
    """The ``{key}`` of the path ``/v1/route/{key}`` (no query), percent-decoded strictly (aiohttp would replace bad UTF-8)."""
    at = path.find(_ROUTE_PATH)
    if at < 0:
        # The route's own letters were percent-encoded (/v1/%72oute/x): aiohttp matched the decoded path.
        path = _strict_unquote(path)
        at = path.find(_ROUTE_PATH)
        if at < 0:
            raise RouteError(f"no key in path {path!r}")
        return path[at + len(_ROUTE_PATH):]
    raw = path[at + len(_ROUTE_PATH):]
    if "%" not in raw and raw.isascii():
        return raw  # nothing to decode
    return _strict_unquote(raw)


def _strict_unquote(text):
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RouteError(f"key is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at {exc.start})") from None


_ROUTE_PATH = "/v1/route/"


def _pack_keys(keys, limit):
    """The batch's keys packed for the kernels, or an ``ApiError`` naming the first bad one."""
    if not isinstance(keys, list):
        raise ApiError(400, "invalid_body", f"'keys' must be a list of strings, got {type(keys).__name__}")
    if not keys:
        raise ApiError(400, "invalid_body", "'keys' is empty")
    if len(keys) > limit:
        raise ApiError(413, "batch_too_large", f"'keys' has {len(keys)} entries; at most {limit} per request")
    packed = pack_texts(keys, MAX_KEY_BYTES)
    if packed is None:
        # Slow path only on bad input: find and name the first offending key.
        for i, k in enumerate(keys):
            try:
                parse_key(k, f"keys[{i}]")
            except RouteError as exc:
                raise ApiError(400, "invalid_key", str(exc)) from None
        raise AssertionError("pack_texts refused a batch that parse_key accepts")
    return packed


# ---- handlers --------------------------------------------------------------------------------


async def health(request):
    """200 with route count and epoch once ready; 503 while starting or after a failed start."""
    st = request.app[STATE]
    if not st.ready:
        status = "failed" if st.boot_error else "starting"
        return _json({"status": status, "detail": st.boot_error}, status=503)
    snap = st.rcu.current
    return _json({"status": "ok", "routes": snap.route_count, "nodes": len(snap.nodes), "epoch": snap.epoch,
                  "uptime_seconds": round(time.time() - st.started_at, 3)})


async def get_route(request):
    """Resolve one key from the path: ``GET /v1/route/198.51.100.7``."""
    started = time.perf_counter()
    st = request.app[STATE]
    _require_ready(st)
    path = request.raw_path
    if "?" in path:
        _lookup_query(st, request)
        path = path.split("?", 1)[0]
    try:
        key = _path_key(path)
        # A hit is a reply of the live snapshot; only valid keys were ever cached.
        reply = st.cache.get(key, st.rcu.current.epoch) if st.cache.size else None
        if reply is None:
            raw = parse_key(key)
    except RouteError as exc:
        raise ApiError(400, "invalid_key", str(exc)) from None
    if reply is None:
        with st.rcu.read() as snap:
            answer = snap.answer(raw, key)
            answer["epoch"] = snap.epoch
        reply = encoded(key, answer)
        if answer["match"] != "exact":
            st.cache.put(key, snap.epoch, reply)
    st.recent.append(key)
    st.metrics.observe_request(time.perf_counter() - started, 1, st.budget)
    status, body = reply
    if status == 404:
        st.metrics.no_route_total += 1
        st.metrics.count_error("no_route")
    return web.Response(body=body, status=status, content_type="application/json")


async def post_route(request):
    """Resolve a batch: ``{"keys": [...], "table": "default"}``."""
    st = request.app[STATE]
    _require_ready(st)
    _lookup_query(st, request)
    body = await _json_body(request)
    started = time.perf_counter()
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object with 'keys'")
    unknown = set(body) - {"keys", "table"}
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown field(s) {', '.join(sorted(unknown))}; expected keys, table")
    _check_table(st, body.get("table"))
    keys = body.get("keys")
    data, offsets = _pack_keys(keys, st.max_keys)
    with st.rcu.read() as snap:
        res = snap.resolve_packed(data, offsets)
        results = snap.answers(res, keys)
        epoch = snap.epoch
    st.metrics.observe_request(time.perf_counter() - started, len(keys), st.budget)
    return _json({"epoch": epoch, "results": results})


def _split_packed(body, limit):
    """Newline-separated keys -> (data, offsets) without the separators; 400 naming the first bad key."""
    if not body:
        raise ApiError(400, "invalid_body", "request body is empty; send keys separated by newlines")
    if body.endswith(b"\n"):
        body = body[:-1]
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n")
        raise ApiError(400, "invalid_key", f"keys[{line}] is not valid UTF-8") from None
    arr = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    n = newlines.size + 1
    if n > limit:
        raise ApiError(413, "batch_too_large", f"{n} keys; at most {limit} per request")
    ends = np.empty(n, dtype=np.int64)
    ends[:-1] = newlines
    ends[-1] = arr.size
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = newlines + 1
    lengths = ends - starts
    bad = np.flatnonzero((lengths == 0) | (lengths > MAX_KEY_BYTES))
    if bad.size:
        i = int(bad[0])
        raise ApiError(400, "invalid_key", f"keys[{i}] is {'empty' if lengths[i] == 0 else f'longer than {MAX_KEY_BYTES} bytes'}")
    if 0 in arr:
        i = int(np.searchsorted(newlines, np.flatnonzero(arr == 0)[0]))
        raise ApiError(400, "invalid_key", f"keys[{i}] contains a NUL byte")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.delete(arr, newlines) if newlines.size else arr
    return data, offsets


async def post_route_packed(request):
    """Bulk form: keys one per line in, next-hop ids one per line out (empty line: no route)."""
    st = request.app[STATE]
    _require_ready(st)
    _lookup_query(st, request)
    body = await read_body(request, st.config)
    started = time.perf_counter()
    data, offsets = _split_packed(body, st.max_keys)
    with st.rcu.read() as snap:
        res = snap.resolve_packed(data, offsets, with_text=False)
        out = snap.next_hops(res)
        epoch = snap.epoch
    st.metrics.observe_request(time.perf_counter() - started, len(res), st.budget)
    return web.Response(body=out, content_type="text/plain", headers={"X-Valkyrie-Epoch": str(epoch)})


# PUT bodies at least this big are parsed in a thread: 5,000 routes take ~15ms to parse, which on the
# event loop would hold every lookup that arrives meanwhile.
PARSE_IN_THREAD_BYTES = 64 * 1024


def _parse_put_body(raw, limit):
    return parse_put_body(raw, limit, parse_json)


async def put_routes(request):
    """Add or replace nodes and routes in one all-or-nothing batch; answers after publish."""
    st = request.app[STATE]
    _require_ready(st)
    raw = await read_body(request, st.config)
    try:
        if len(raw) >= PARSE_IN_THREAD_BYTES:
            batch = await asyncio.get_running_loop().run_in_executor(st.parser, _parse_put_body, raw, st.max_keys)
        else:
            batch = _parse_put_body(raw, st.max_keys)
        epoch = await st.publisher.submit(batch)
    except (RouteError, StoreError) as exc:
        raise _route_error(exc) from None
    st.metrics.updates.labels("put").inc(batch.put_count)
    return _json({"epoch": epoch, "applied": batch.put_count, "nodes": len(batch.nodes)})


async def list_routes(request):
    """Export routes (see ``valkyrie.export``): ``?prefix=`` filter, ``?limit=`` and ``?cursor=`` pages, JSON or CSV."""
    st = request.app[STATE]
    _require_ready(st)
    _check_query_text(request)
    _check_table(st, request.query.get("table"))
    try:
        query = parse_query(request.query, request.headers.get("Accept"))
    except RouteError as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    view = await request.app[ROUTE_VIEWS].current(st)
    return await stream_routes(request, view, query)


async def delete_routes(request):
    """Remove routes in one all-or-nothing batch: ``{"routes": [{"prefix": ...}, {"key": ...}]}``."""
    st = request.app[STATE]
    _require_ready(st)
    body = await _json_body(request)
    try:
        batch = parse_delete(body, st.max_keys)
        epoch = await st.publisher.submit(batch)
    except (RouteError, StoreError) as exc:
        raise _route_error(exc) from None
    st.metrics.updates.labels("delete").inc(len(batch.deletes))
    return _json({"epoch": epoch, "deleted": len(batch.deletes)})


async def config_status(request):
    """The running configuration and where it came from."""
    st = request.app[STATE]
    cfg = st.config
    return _json({
        "source": str(cfg.source) if cfg.source else None,
        "loaded_at": st.loaded_at,
        "ready": st.ready,
        "epoch": st.rcu.current.epoch if st.rcu.ready else 0,
        "values": dict(cfg.items()),
        "last_reload": st.last_reload,
        "live_overrides": st.overrides,
        "admin_token_required": st.admin_token is not None,
    })


# ---- middleware and lifecycle ----------------------------------------------------------------

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}


@web.middleware
async def errors_and_limits(request, handler):
    """JSON errors for everything, the in-flight limit, and per-endpoint request counts."""
    st = request.app[STATE]
    endpoint = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    # /health stays answerable when the pool is full, so an orchestrator never restarts a busy server.
    if st.in_flight >= st.config["routing.max_concurrent_requests"] and request.path != "/health":
        st.exhausted += 1
        st.metrics.count_error("overloaded")
        return _json(_error_body("overloaded", "Connection pool exhausted: too many requests in flight"), status=503)
    st.in_flight += 1
    try:
        if requires_token(request) and (denied := check_token(request, st.admin_token)):
            raise ApiError(*denied)
        response = await handler(request)
    except ApiError as exc:
        st.metrics.count_error(exc.code)
        response = _json(_error_body(exc.code, exc.message), status=exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="valkyrie admin"'
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.text if exc.status != 404 else f"no endpoint {request.method} {request.path}"
        if exc.status == 413:
            message = f"request body too large; the limit is {st.config['server.max_body_size']} bytes"
        st.metrics.count_error(code)
        response = _json(_error_body(code, message), status=exc.status)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
    except ConnectionResetError:
        # The client hung up mid-request: nothing to answer and not the server's fault (not a 5xx).
        log.debug("client closed the connection during %s %s", request.method, request.path)
        st.metrics.count_error("client_closed")
        response = _json(_error_body("client_closed", "the client closed the connection"), status=400)
    except Exception:
        log.exception("ERROR handling %s %s", request.method, request.path)
        st.metrics.count_error("internal_error")
        response = _json(_error_body("internal_error", "internal error; see the server log"), status=500)
    finally:
        st.in_flight -= 1
    st.metrics.count_http(endpoint, response.status)
    return response


def _read_route_files(config):
    return [load_route_file(path) for path in config["routing.route_files"]]


def _rebuild_from(state, writer, route_sets):
    """Files first, then the store on top (API changes win); all-or-nothing on the writer's state."""
    saved = (writer.nodes, dict(writer.exact), dict(writer.prefixes), writer.default)
    try:
        writer.reset()
        writer.load(route_sets)
        if state.store is not None:
            writer.replay(state.store.read())
    except Exception:
        writer.nodes, writer.exact, writer.prefixes, writer.default = saved
        raise
    return writer.build()


def _load_tables(state):
    if state.store_path:
        state.store = RouteStore(state.store_path)
        state.publisher.store = state.store
    return _rebuild_from(state, state.writer, _read_route_files(state.config))


async def _boot(app):
    st = app[STATE]
    loop = asyncio.get_running_loop()
    try:
        seconds = await loop.run_in_executor(st.executor, warm_kernels)
        st.metrics.compile_seconds.set(seconds)
        log.info("kernels ready in %.2fs", seconds)
        started = time.perf_counter()
        snap = await loop.run_in_executor(st.executor, _load_tables, st)
        st.rcu.publish(snap)
        st.on_publish(snap)
        st.loaded_at = time.time()
        # The route state built at boot (hundreds of thousands of objects) lives as long as the process; a
        # full GC walking it stopped every thread for ~100ms, several times a minute under updates.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        st.ready = True
        app[BOOTED].set()
        log.info("serving epoch %d: %d routes, %d nodes (tables loaded in %.2fs)",
                 snap.epoch, snap.route_count, len(snap.nodes), time.perf_counter() - started)
    except (RouteError, StoreError) as exc:
        st.boot_error = str(exc)
        log.error("ERROR loading route tables: %s", exc)
        app[BOOT_FAILED].set()
    except Exception as exc:
        st.boot_error = f"{type(exc).__name__}: {exc}"
        log.exception("ERROR during start-up")
        app[BOOT_FAILED].set()


async def _reclaim_loop(st):
    while True:
        await asyncio.sleep(max(0.001, min(st.rcu.grace_period, 0.05)))
        st.rcu.reclaim()  # the grace histogram is fed by ServerState._on_reclaimed
        st.rcu.report_stalls()


async def _rotate_loop(st, every=10.0):
    last, last_t = st.metrics.decisions_total, time.monotonic()
    while True:
        await asyncio.sleep(every)
        st.metrics.latency.rotate()
        now = time.monotonic()
        st.metrics.decision_rate = (st.metrics.decisions_total - last) / (now - last_t)
        last, last_t = st.metrics.decisions_total, now


# Requests the last minute must hold before its P99 is judged against the budget.
BUDGET_MIN_REQUESTS = 100


async def _performance_log_loop(st):
    last_requests, last_errors, last_t = 0.0, 0.0, time.monotonic()
    while True:
        await asyncio.sleep(st.config["logging.performance_interval"])
        now = time.monotonic()
        requests, errors = st.metrics.decisions_total, st.metrics.errors_total
        q = st.metrics.latency.quantiles((0.5, 0.99))
        perf.info("performance p50_us=%.1f p99_us=%.1f throughput_ops=%.0f errors=%d budget_us=%.0f",
                  _us(q[0.5]), _us(q[0.99]), (requests - last_requests) / (now - last_t), errors - last_errors,
                  st.budget * 1e6)
        # A P99 of a handful of requests is their slowest one: no verdict on it.
        if q[0.99] == q[0.99] and q[0.99] > st.budget and st.metrics.latency.window_count() >= BUDGET_MIN_REQUESTS:
            perf.warning("WARN Performance budget exceeded: P99 %.1fus > %.0fus", _us(q[0.99]), st.budget * 1e6)
        last_requests, last_errors, last_t = requests, errors, now


def _us(seconds):
    return seconds * 1e6 if seconds == seconds else 0.0


# The writer thread runs Python between its kernels (staging, building); with CPython's default
# 5ms GIL switch interval a lookup arriving meanwhile can wait that long for the interpreter.
GIL_SWITCH_SECONDS = 0.0002
# CPython collects the young generation after 700 net new container objects. A 5,000-route PUT
# holds that many tuples alive for a moment, so each batch set off a dozen collections that found
# no garbage (route tuples are acyclic) but stopped every thread: 2s of pauses in 15s of updates at
# 50k/s, reader P99 689us. At 50,000 a batch's tuples are freed before the count gets there; cyclic
# garbage (asyncio, aiohttp) is still collected, in rarer and longer passes.
GC_THRESHOLDS = (50_000, 20, 10)


async def _background(app):
    st = app[STATE]
    st.publisher.on_publish = st.on_publish
    switch, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    tasks = [asyncio.create_task(coro) for coro in
             (_boot(app), st.publisher.run(), _reclaim_loop(st), _rotate_loop(st), watch_config_file(st),
              _performance_log_loop(st), watch_memory(st))]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError):
            await task
    st.executor.shutdown(wait=True, cancel_futures=True)
    st.parser.shutdown(wait=True, cancel_futures=True)
    if st.store is not None:
        st.store.close()
    sys.setswitchinterval(switch)
    gc.set_threshold(*thresholds)


def create_app(config: Config, *, state=None) -> web.Application:
    """The HTTP API application for ``config``."""
    st = state or ServerState(config)
    app = web.Application(middlewares=[errors_and_limits], client_max_size=config["server.max_body_size"])
    app[STATE] = st
    app[BOOT_FAILED] = asyncio.Event()
    app[BOOTED] = asyncio.Event()
    app[ROUTE_VIEWS] = ViewCache()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/route/{key:.+}", get_route)
    app.router.add_post("/v1/route", post_route)
    app.router.add_post("/v1/route/packed", post_route_packed)
    app.router.add_put("/v1/routes", put_routes)
    app.router.add_get("/v1/routes", list_routes)
    app.router.add_delete("/v1/routes", delete_routes)
    app.router.add_get("/config/status", config_status)
    app.router.add_post("/admin/routes/reload", reload_routes)
    add_admin_routes(app, STATE, _json)
    app.cleanup_ctx.append(_background)
    return app


def create_metrics_app(state) -> web.Application:
    """Read-only app serving Prometheus text on ``[observability.metrics] path``."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(request):
        return web.Response(body=generate_latest(state.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get(state.config["observability.metrics.path"], metrics)
    return app
