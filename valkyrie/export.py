"""``GET /v1/routes``: every route as one published epoch saw it, filtered, paged by cursor, streamed as JSON or CSV.

A ``RouteView`` is a copy of the writer's routes taken in the writer's own
thread, so it is exactly the state of one published snapshot. Routes are
listed in one fixed order: prefixes by (family, network, length) with IPv4
before IPv6 before names, then exact keys by their bytes. A cursor names the
last route of a page, so the next page starts right after it even when
routes were added or removed in between: a route present throughout a paged
walk is listed exactly once.

``?prefix=`` takes what a route takes. A CIDR (``10.0.0.0/8``,
``2001:db8::/32``) lists the routes *inside* it (the same or more specific),
plus exact keys that are addresses inside it; a name (``ci.``) lists name
prefixes and exact keys starting with it. To ask which route *covers* an
address, use ``GET /v1/route/{key}``.

Example: ``GET /v1/routes?prefix=198.51.100.0/24&limit=2`` ->
``{"epoch": 7, "next": "/v1/routes?prefix=...&limit=2&cursor=...", "default_route": "edge-default",
"nodes": [...], "routes": [{"prefix": "198.51.100.0/24", "next_hop": "node-a"}, ...]}``.
"""

import asyncio
import base64
import bisect
import csv
import io
import ipaddress
import time
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter

import numpy as np
import orjson
from aiohttp import web

from valkyrie.routes import FAMILIES, RouteError, format_prefix, parse_prefix

__all__ = ["ExportQuery", "RouteView", "ViewCache", "parse_query", "stream_routes", "MAX_PAGE", "CSV_HEADER"]

MAX_PAGE = 100_000
CSV_HEADER = ("kind", "route", "next_hop")
_PARAMS = {"prefix", "limit", "cursor", "format", "table"}
_CHUNK = 1000  # rows per write (~1ms to format): the unit lookups interleave with during a long dump
_COPY_SLICE = 20_000  # dict items copied per C call, so other threads get the GIL in between
_WIDTH = {"ipv4": 4, "ipv6": 16}


def _query_error(message):
    return RouteError(message, "invalid_query")


@dataclass(frozen=True)
class ExportQuery:
    """A parsed ``GET /v1/routes`` query: filter ``(family, network, plen)``, page size, cursor, format."""

    filter: tuple | None = None
    limit: int | None = None
    cursor: tuple | None = None
    format: str = "json"


def parse_query(query, accept=None):
    """Validate the query string (a mapping) and ``Accept`` header into an ``ExportQuery``; raises ``RouteError``."""
    unknown = set(query) - _PARAMS
    if unknown:
        raise _query_error(f"unknown query parameter(s) {', '.join(sorted(unknown))}; "
                           f"expected {', '.join(sorted(_PARAMS))}")
    getall = getattr(query, "getall", None)
    repeated = sorted(k for k in set(query) if getall is not None and len(getall(k)) > 1)
    if repeated:
        raise _query_error(f"query parameter(s) {', '.join(repeated)} given more than once")
    flt = None
    if "prefix" in query:
        try:
            flt = parse_prefix(query["prefix"], "prefix filter")
        except RouteError as exc:
            raise _query_error(f"{exc}; filter with a CIDR such as 10.0.0.0/8 or a name prefix such as ci.") from None
    limit = None
    if "limit" in query:
        text = query["limit"]
        if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
            raise _query_error(f"limit must be an integer from 1 to {MAX_PAGE}, got {text!r}")
        limit = int(text)
    cursor = decode_cursor(query["cursor"]) if "cursor" in query else None
    return ExportQuery(flt, limit, cursor, _format(query.get("format"), accept))


def _format(fmt, accept):
    if fmt is not None:
        if fmt not in ("json", "csv"):
            raise _query_error(f"format must be 'json' or 'csv', got {fmt!r}")
        return fmt
    # Only an Accept header that prefers CSV switches format; */* and anything else get JSON.
    wanted = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return "csv" if wanted and wanted[0] == "text/csv" else "json"


# ---- cursors: the last route of a page, in the listing order ---------------------------------


def encode_cursor(position):
    """Opaque text for a listing position ``("p", family, network, plen)`` or ``("k", key)``."""
    if position[0] == "p":
        raw = ["p", position[1], position[2].hex(), position[3]]
    else:
        raw = ["k", position[1].hex()]
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


def decode_cursor(text):
    """The position an ``encode_cursor`` text names; ``RouteError`` for anything this server did not give out."""
    bad = _query_error(f"cursor {text[:40]!r} is not one this server gave out; "
                       "take it from the 'next' link of the previous page")
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if raw[0] == "p" and len(raw) == 4 and raw[1] in FAMILIES and isinstance(raw[3], int):
            network = bytes.fromhex(raw[2])
            limit = 8 * _WIDTH.get(raw[1], len(network))
            if len(network) == _WIDTH.get(raw[1], len(network)) and 0 <= raw[3] <= limit and network:
                return ("p", raw[1], network, raw[3])
        elif raw[0] == "k" and len(raw) == 2:
            key = bytes.fromhex(raw[1])
            if key:
                return ("k", key)
    except (ValueError, TypeError, IndexError, KeyError):
        pass
    raise bad


# ---- the view ----------------------------------------------------------------------------------


def _copy_items(d):
    out, items = [], iter(d.items())
    while chunk := list(islice(items, _COPY_SLICE)):
        out.extend(chunk)
    return out


class RouteView:
    """The routes of one epoch: ``RouteView.of(writer)`` in the writer thread, then ``order()`` in any thread."""

    def __init__(self, epoch, nodes, default, exact_items, prefix_items):
        self.epoch, self.nodes, self.default = epoch, nodes, default
        self._exact, self._prefixes = exact_items, prefix_items
        self._ordered = False

    @classmethod
    def of(cls, writer):
        """Copy ``writer``'s routes; call only in the writer's turn (its executor thread)."""
        return cls(writer.epoch, writer.nodes, writer.default, _copy_items(writer.exact), _copy_items(writer.prefixes))

    def __len__(self):
        return len(self._exact) + len(self._prefixes)

    def order(self):
        """Sort into listing order (idempotent). IP families sort in numpy, so the GIL is not held for a long sort."""
        if self._ordered:
            return self
        by_family = {f: [] for f in FAMILIES}
        for item in self._prefixes:
            by_family[item[0][0]].append(item)
        self._prefixes = [item for f in FAMILIES for item in _sorted_family(f, by_family[f])]
        self._exact.sort(key=itemgetter(0))
        self._ordered = True
        return self

    def select(self, flt=None, after=None):
        """Iterate ``(position, node index)`` in listing order, inside ``flt``, strictly after position ``after``."""
        assert self._ordered, "call order() first"
        if after is None or after[0] == "p":
            yield from self._select_prefixes(flt, after)
        yield from self._select_exact(flt, after if after is not None and after[0] == "k" else None)

    def _select_prefixes(self, flt, after):
        items, ident = self._prefixes, itemgetter(0)
        start = 0
        if flt is not None:
            start = bisect.bisect_left(items, (flt[0], flt[1]), key=ident)
        if after is not None:
            start = max(start, bisect.bisect_right(items, after[1:], key=ident))
        inside = _prefix_test(flt)
        for i in range(start, len(items)):
            (family, network, plen), idx = items[i]
            verdict = inside(family, network, plen)
            if verdict is None:
                return
            if verdict:
                yield ("p", family, network, plen), idx

    def _select_exact(self, flt, after):
        items = self._exact
        start = 0
        if flt is not None and flt[0] == "name":
            start = bisect.bisect_left(items, flt[1], key=itemgetter(0))
        if after is not None:
            start = max(start, bisect.bisect_right(items, after[1], key=itemgetter(0)))
        inside = _key_test(flt)
        for i in range(start, len(items)):
            key, idx = items[i]
            verdict = inside(key)
            if verdict is None:
                return
            if verdict:
                yield ("k", key), idx

    def node_id(self, idx):
        """The id of node ``idx``."""
        return self.nodes.ids[idx]


def _sorted_family(family, items):
    if len(items) < 2:
        return items
    plens = np.fromiter((item[0][2] for item in items), dtype=np.int64, count=len(items))
    nets = b"".join(item[0][1] for item in items)
    if family == "ipv4":
        order = np.argsort((np.frombuffer(nets, dtype=">u4").astype(np.int64) << 8) | plens, kind="stable")
    elif family == "ipv6":
        words = np.frombuffer(nets, dtype=">u8").reshape(-1, 2)
        order = np.lexsort((plens, words[:, 1], words[:, 0]))
    else:
        return sorted(items, key=itemgetter(0))
    return [items[i] for i in order.tolist()]


def _prefix_test(flt):
    """``fn(family, network, plen)`` -> True (inside), False (skip), None (past the end of the filter's range)."""
    if flt is None:
        return lambda family, network, plen: True
    f_family, f_net, f_plen = flt
    if f_family == "name":
        def inside(family, network, plen):
            return network.startswith(f_net) if family == "name" else None
        return inside
    top = _broadcast(f_net, f_plen)

    def inside_ip(family, network, plen):
        if family != f_family or network > top:
            return None
        return plen >= f_plen
    return inside_ip


def _key_test(flt):
    """``fn(key)`` -> True, False or None (past the end), like ``_prefix_test`` for exact keys."""
    if flt is None:
        return lambda key: True
    f_family, f_net, f_plen = flt
    if f_family == "name":
        return lambda key: True if key.startswith(f_net) else None
    net = ipaddress.ip_network((f_net, f_plen))

    def inside(key):
        # Exact keys are not sorted by address, so an IP filter looks at every one that parses as an address.
        if len(key) > 45:
            return False
        try:
            return ipaddress.ip_address(key.decode("ascii")) in net
        except (ValueError, UnicodeDecodeError):
            return False
    return inside


def _broadcast(network, plen):
    bits = 8 * len(network)
    value = int.from_bytes(network, "big") | ((1 << (bits - plen)) - 1)
    return value.to_bytes(len(network), "big")


class ViewCache:
    """The last view built, reused while its epoch is the published one, dropped ``ttl`` seconds after last use."""

    def __init__(self, ttl=60.0):
        self.ttl = ttl
        self._view, self._used = None, 0.0
        self._lock = asyncio.Lock()

    async def current(self, state):
        """An ordered view of ``state``'s published routes: cached, or copied in the writer's turn."""
        async with self._lock:  # concurrent pages of one epoch share one copy
            view = self.get(state.rcu.current.epoch)
            if view is None:
                loop = asyncio.get_running_loop()
                view = await loop.run_in_executor(state.executor, RouteView.of, state.writer)
                await loop.run_in_executor(None, view.order)
                self.put(view)
                # A view of a big table is tens of MB: let it go once nobody has paged for a while.
                loop.call_later(self.ttl, self._expire, loop)
            return view

    def _expire(self, loop):
        idle = time.monotonic() - self._used
        if self._view is None:
            return
        if idle >= self.ttl:
            self._view = None
        else:
            loop.call_later(self.ttl - idle, self._expire, loop)

    def get(self, epoch):
        """The cached view for ``epoch``, or None."""
        view = self._view
        if view is not None and (view.epoch != epoch or time.monotonic() - self._used > self.ttl):
            self._view = view = None
        if view is not None:
            self._used = time.monotonic()
        return view

    def put(self, view):
        """Remember ``view`` (an ordered ``RouteView``)."""
        self._view, self._used = view, time.monotonic()


# ---- rendering ---------------------------------------------------------------------------------


def _row(view, position, idx):
    if position[0] == "p":
        if position[1] == "ipv4":
            # ipaddress costs ~4us per address; a dump formats hundreds of thousands.
            return "prefix", "%d.%d.%d.%d/%d" % (*position[2], position[3]), view.node_id(idx)
        return "prefix", format_prefix(position[1], position[2], position[3]), view.node_id(idx)
    return "key", position[1].decode("utf-8"), view.node_id(idx)


def _json_chunk(rows):
    return orjson.dumps([{kind: text, "next_hop": hop} for kind, text, hop in rows])[1:-1]


def _csv_chunk(rows):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


def _page(view, query):
    """(first rows iterator, next cursor or None): a bounded page is taken whole, so its next link is known up front."""
    selected = view.select(query.filter, query.cursor)
    if query.limit is None:
        return selected, None
    page = list(islice(selected, query.limit + 1))
    more = len(page) > query.limit
    page = page[:query.limit]
    return iter(page), (encode_cursor(page[-1][0]) if more else None)


async def stream_routes(request, view, query):
    """Write the routes of ``view`` selected by ``query`` to a ``StreamResponse`` and return it."""
    rows, cursor = _page(view, query)
    next_url = str(request.rel_url.update_query(cursor=cursor)) if cursor else None
    headers = {"X-Valkyrie-Epoch": str(view.epoch), "Cache-Control": "no-store"}
    if next_url:
        headers["Link"] = f'<{next_url}>; rel="next"'
    resp = web.StreamResponse(headers=headers)
    resp.content_type = "text/csv" if query.format == "csv" else "application/json"
    resp.charset = "utf-8"
    await resp.prepare(request)
    chunk = _csv_chunk if query.format == "csv" else _json_chunk
    try:
        if query.format == "csv":
            await resp.write(_csv_chunk([CSV_HEADER]))
        else:
            await resp.write(_json_head(view, query, next_url))
        first = True
        while batch := [_row(view, pos, idx) for pos, idx in islice(rows, _CHUNK)]:
            body = chunk(batch)
            if query.format == "json" and not first:
                body = b"," + body
            first = False
            await resp.write(body)
            # write() only waits when the socket buffer is full; a fast reader would otherwise
            # keep the event loop (and every lookup) waiting for the whole dump.
            await asyncio.sleep(0)
        if query.format == "json":
            await resp.write(b"]}\n")
        await resp.write_eof()
    except ConnectionError:
        # The client went away mid-stream; nothing to answer to.
        pass
    return resp


def _json_head(view, query, next_url):
    head = {"epoch": view.epoch, "next": next_url}
    # Nodes and the default route open a listing; later pages carry only routes.
    if query.cursor is None:
        head["default_route"] = view.node_id(view.default) if view.default >= 0 else None
        head["nodes"] = [n.as_dict() for n in view.nodes]
    return orjson.dumps(head)[:-1] + b',"routes":['
