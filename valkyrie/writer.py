"""The single writer: canonical route state, batch validation, and building the next snapshot.

Batches are validated whole before any of them is staged (all-or-nothing);
several staged batches are then folded into one snapshot by computing, for
every touched route, its final state, so the order of puts and deletes
across coalesced batches never matters.
"""

from dataclasses import dataclass, field

import numpy as np

from valkyrie.cra_table import CraTable
from valkyrie.fit_table import FitTable
from valkyrie.nodes import NodeTable
from valkyrie.put_plain import PlainPuts, parse_plain_put
from valkyrie.routes import (FAMILIES, ExactRoute, PrefixRoute, RouteError, ip_idents, parse_key, parse_node,
                             parse_route, parse_route_ref)
from valkyrie.snapshot import Snapshot

__all__ = ["Batch", "RouteWriter", "parse_put", "parse_put_body", "parse_delete"]

# The snapshot attribute holding each family's CRA table.
_TABLE = {"ipv4": "ipv4", "ipv6": "ipv6", "name": "names"}


@dataclass
class Batch:
    """One client request's worth of changes, already parsed."""

    nodes: list = field(default_factory=list)
    puts: list = field(default_factory=list)
    deletes: list = field(default_factory=list)
    default_route: str | None = None
    where: list | None = None  # where each put came from (route files); else "routes[i]"
    default_where: str = "default_route"
    plain: PlainPuts | None = None  # a plain PUT's routes as columns, instead of ``puts``

    @property
    def put_count(self):
        """Routes it adds or replaces."""
        return len(self.puts) + (len(self.plain) if self.plain is not None else 0)

    @property
    def size(self):
        """Route changes it carries (nodes count too: they rebuild the node table)."""
        return len(self.nodes) + self.put_count + len(self.deletes)


def _entries(body, name, limit):
    items = body.get(name, [])
    if not isinstance(items, list):
        raise RouteError(f"'{name}' must be a list, got {type(items).__name__}", "invalid_body")
    if len(items) > limit:
        raise RouteError(f"'{name}' has {len(items)} entries; at most {limit} per batch", "batch_too_large")
    return items


def parse_put_body(raw, limit, decode):
    """A ``PUT /v1/routes`` body (bytes) as a ``Batch``: plain bodies as columns, the rest via ``decode`` and ``parse_put``."""
    plain = parse_plain_put(raw, limit)
    if plain is not None:
        return Batch(plain=plain)
    return parse_put(decode(raw), limit)


def parse_put(body, limit):
    """Parse a decoded ``PUT /v1/routes`` body into a ``Batch`` (raises ``RouteError``)."""
    if not isinstance(body, dict):
        raise RouteError("body must be a JSON object with 'nodes' and/or 'routes'", "invalid_body")
    unknown = set(body) - {"nodes", "routes", "default_route"}
    if unknown:
        raise RouteError(f"unknown field(s) {', '.join(sorted(unknown))}; expected nodes, routes, default_route", "invalid_body")
    nodes = [parse_node(o, f"nodes[{i}]") for i, o in enumerate(_entries(body, "nodes", limit))]
    first = {}
    for i, node in enumerate(nodes):
        if first.setdefault(node.id, i) != i:
            raise RouteError(f"nodes[{i}]: id {node.id!r} is declared twice in one batch (also nodes[{first[node.id]}])",
                             "invalid_body")
    puts = _parse_routes(_entries(body, "routes", limit))
    default = body.get("default_route")
    if default is not None and (not isinstance(default, str) or not default):
        raise RouteError("default_route must be a node id string", "invalid_body")
    if not nodes and not puts and default is None:
        raise RouteError("nothing to apply: give 'nodes', 'routes' or 'default_route'", "invalid_body")
    return Batch(nodes=nodes, puts=puts, default_route=default)


def _parse_routes(items):
    """``parse_route`` of every entry, in order; plain entries take a shorter path to the same result.

    ``ipaddress`` was half the cost of a 5,000-route PUT, so plain IP prefix entries share one
    kernel parse, which accepts only what the exact parser accepts, with the same result. Plain
    key entries are checked by ``parse_key`` alone. Every other entry (names, errors) takes
    ``parse_route``, so the first bad entry is still the one named, with the same message.
    """
    plain, keyed = [], []
    for i, o in enumerate(items):
        if type(o) is dict and len(o) == 2 and type(o.get("next_hop")) is str and o["next_hop"]:
            if type(o.get("prefix")) is str:
                plain.append(i)
            elif "key" in o:
                keyed.append(i)
    fast = {}
    for i in keyed:
        try:
            fast[i] = ExactRoute(parse_key(items[i]["key"]), items[i]["next_hop"])
        except RouteError:
            pass  # parse_route below raises it again, naming the entry
    for i, ident in zip(plain, ip_idents([items[i]["prefix"] for i in plain]) if plain else ()):
        if ident is not None:
            fast[i] = PrefixRoute(*ident, items[i]["next_hop"])
    return [fast[i] if i in fast else parse_route(o, f"routes[{i}]") for i, o in enumerate(items)]


def _unknown_hop(node_id, where):
    return RouteError(f"{where}: unknown next hop {node_id!r}; declare it under 'nodes' first", "unknown_next_hop")


def _hop(index, node_id, where):
    """The node index of ``node_id`` in ``index`` (a ``NodeTable.index``), or a ``RouteError`` naming ``where``."""
    idx = index.get(node_id)
    if idx is None:
        raise _unknown_hop(node_id, where)
    return idx


def _plain_ops(plain, index):
    """``(exact ops, prefix ops)`` of a ``PlainPuts`` against node ``index``; next hops looked up once each."""
    found = [index.get(h) for h in plain.hops]
    if None in found:
        unknown = np.array([f is None for f in found])
        first = int(np.flatnonzero(unknown[plain.hop])[0])
        raise _unknown_hop(plain.hops[plain.hop[first]], f"routes[{first}]")
    per_route = np.array(found, np.int64)[plain.hop]
    return (dict(zip(plain.exact_keys, per_route[plain.exact_at].tolist())),
            dict(zip(plain.prefixes, per_route[plain.prefix_at].tolist())))


# A dict.update is one C call: the GIL stays held to its end, and into the 640k-entry route dicts
# each entry is a cache miss (~1us here). Slices keep every hold near 0.25ms, the GIL switch interval.
_UPDATE_SLICE = 256


def _update_in_slices(table, ops):
    items = list(ops.items())
    for at in range(0, len(items), _UPDATE_SLICE):
        table.update(items[at:at + _UPDATE_SLICE])


def _apply(ops, table, undo, changed):
    """Set ``ops`` (key -> node index, None: delete) in ``table``; note old values in ``undo`` and,
    per family, the new ones in ``changed`` (either may be None)."""
    # One loop, so each key's second touch of the big dict finds its entry still in cache.
    for key, idx in ops.items():
        if undo is not None and key not in undo:
            undo[key] = table.get(key)
        if idx is None:
            table.pop(key, None)
        else:
            table[key] = idx
        if changed is not None:
            changed[key[0]][key] = idx


def parse_delete(body, limit):
    """Parse a ``DELETE /v1/routes`` body into a ``Batch``."""
    if not isinstance(body, dict) or set(body) != {"routes"}:
        raise RouteError("body must be a JSON object with only 'routes'", "invalid_body")
    refs = [parse_route_ref(o, f"routes[{i}]") for i, o in enumerate(_entries(body, "routes", limit))]
    if not refs:
        raise RouteError("'routes' is empty", "invalid_body")
    # Deletes apply in order, so a second mention would find the route gone and read as "no route".
    first = {}
    for i, ref in enumerate(refs):
        if (j := first.setdefault(ref, i)) != i:
            raise RouteError(f"routes[{i}]: {ref.text!r} is named twice in one batch (also routes[{j}])", "invalid_body")
    return Batch(deletes=refs)


class RouteWriter:
    """Owns what the routes are; only the publisher thread calls ``stage``/``build``."""

    def __init__(self, *, fit_load_factor=0.75, fit_capacity=None, cra_initial_capacity=None, cra_defrag_threshold=0.25):
        self.fit_load_factor = fit_load_factor
        self.fit_capacity = fit_capacity
        self.cra_initial_capacity = cra_initial_capacity
        self.cra_defrag_threshold = cra_defrag_threshold
        self.defrags = {f: 0 for f in FAMILIES}  # CRA defragmentations per family, for metrics
        self.nodes = NodeTable()
        self.exact = {}  # key bytes -> node index
        self.prefixes = {}  # (family, network, plen) -> node index
        self.default = -1
        self.epoch = 0
        # What changed since the last snapshot: key or prefix ident -> final node index (None: deleted),
        # so building the next snapshot never looks routes up again in the big dicts.
        self._changed_exact = {}
        self._changed_prefix = {f: {} for f in FAMILIES}
        self._undo = None

    # ---- groups: what the store persists, and undo when it cannot -----------------------------

    def begin(self):
        """Start a group of batches that ``records()`` describes and ``rollback()`` undoes."""
        self._undo = {"nodes": self.nodes, "default": self.default, "exact": {}, "prefix": {},
                      "changed_exact": dict(self._changed_exact),
                      "changed_prefix": {f: dict(d) for f, d in self._changed_prefix.items()},
                      "new_nodes": {}, "default_route": None}

    def records(self):
        """The group's final state for the store: ``(nodes, route rows, default_route)``."""
        u, ids = self._undo, self.nodes.ids
        rows = [("exact", k, 0, ids[self.exact[k]] if k in self.exact else None) for k in u["exact"]]
        rows += [(f, n, p, ids[self.prefixes[(f, n, p)]] if (f, n, p) in self.prefixes else None) for f, n, p in u["prefix"]]
        return list(u["new_nodes"].values()), rows, u["default_route"]

    def rollback(self):
        """Undo every batch staged since ``begin()``."""
        u = self._undo
        for key, old in u["exact"].items():
            if old is None:
                self.exact.pop(key, None)
            else:
                self.exact[key] = old
        for ident, old in u["prefix"].items():
            if old is None:
                self.prefixes.pop(ident, None)
            else:
                self.prefixes[ident] = old
        self.nodes, self.default = u["nodes"], u["default"]
        self._changed_exact, self._changed_prefix = u["changed_exact"], u["changed_prefix"]
        self._undo = None

    def end(self):
        """Close the group: its changes stay."""
        self._undo = None

    # ---- validation and staging ------------------------------------------------------------

    def stage(self, batch):
        """Validate ``batch`` against the current state and stage it whole, or raise ``RouteError``."""
        new_nodes = self.nodes.with_nodes(batch.nodes) if batch.nodes else self.nodes
        # The batch's own nodes and the known ones, in one dict (indices of known ids never change).
        hops = new_nodes.index
        hop_index = hops.get
        exact_ops, prefix_ops = _plain_ops(batch.plain, hops) if batch.plain is not None else ({}, {})
        for i, route in enumerate(batch.puts):
            idx = hop_index(route.next_hop)
            if idx is None:
                raise _unknown_hop(route.next_hop, batch.where[i] if batch.where else f"routes[{i}]")
            if isinstance(route, ExactRoute):
                exact_ops[route.key] = idx
            else:
                prefix_ops[route[:3]] = idx  # route.ident, without the property call
        for i, ref in enumerate(batch.deletes):
            if isinstance(ref, ExactRoute):
                if exact_ops.get(ref.key, self.exact.get(ref.key)) is None:
                    raise RouteError(f"routes[{i}]: no exact route for key {ref.text!r}", "route_not_found")
                exact_ops[ref.key] = None
            else:
                if prefix_ops.get(ref.ident, self.prefixes.get(ref.ident)) is None:
                    raise RouteError(f"routes[{i}]: no route for prefix {ref.text!r}", "route_not_found")
                prefix_ops[ref.ident] = None
        default = self.default
        if batch.default_route is not None:
            default = _hop(hops, batch.default_route, batch.default_where)
        # Everything validated: now stage.
        u = self._undo
        if u is not None:
            u["new_nodes"].update((n.id, n) for n in batch.nodes)
            if batch.default_route is not None:
                u["default_route"] = batch.default_route
        self.nodes = new_nodes
        self.default = default
        self._changed_exact.update(exact_ops)
        if batch.plain is not None and u is None and len(batch.plain.families) <= 1:
            # No deletes, nothing to undo, at most one family: dict updates instead of a loop per route.
            _update_in_slices(self.exact, exact_ops)
            _update_in_slices(self.prefixes, prefix_ops)
            for family in batch.plain.families:
                self._changed_prefix[family].update(prefix_ops)
            return
        _apply(exact_ops, self.exact, u["exact"] if u else None, None)
        _apply(prefix_ops, self.prefixes, u["prefix"] if u else None, self._changed_prefix)

    def replay(self, stored):
        """Apply a store's contents (``StoredState``) on top of the file routes; deletions of absent routes are no-ops."""
        self.nodes = self.nodes.with_nodes(stored.nodes)
        for family, network, plen, next_hop in stored.routes:
            idx = self.nodes.index.get(next_hop) if next_hop is not None else None
            if next_hop is not None and idx is None:
                raise RouteError(f"route store names unknown next hop {next_hop!r}", "storage_corrupt")
            if family == "exact":
                table, key, changed = self.exact, network, self._changed_exact
            else:
                table, key, changed = self.prefixes, (family, network, plen), self._changed_prefix[family]
            if idx is None:
                table.pop(key, None)
            else:
                table[key] = idx
            changed[key] = idx
        if stored.default_route is not None:
            self.default = _hop(self.nodes.index, stored.default_route, "route store default_route")

    def reset(self):
        """Forget every route and node (before re-reading route files); the epoch keeps counting."""
        self.nodes, self.exact, self.prefixes, self.default = NodeTable(), {}, {}, -1
        self._forget_changes()

    def load(self, route_sets):
        """Stage the contents of route files (``RouteSet``s) in order, as one batch each."""
        for rs in route_sets:
            self.stage(Batch(nodes=rs.nodes, puts=rs.routes, default_route=rs.default_route, where=rs.where,
                             default_where=rs.default_where))

    # ---- building snapshots ----------------------------------------------------------------

    def build(self, previous=None):
        """The next snapshot: incremental from ``previous`` when given, else from scratch."""
        self.epoch += 1
        if previous is None:
            exact, cra = self._build_full()
        else:
            exact, cra = self._build_incremental(previous)
        self._forget_changes()
        snap = Snapshot(epoch=self.epoch, nodes=self.nodes, exact=exact, default=self.default, **cra)
        return snap.freeze()

    def _build_full(self):
        keys = list(self.exact)
        exact = FitTable.build(keys, [self.exact[k] for k in keys], load_factor=self.fit_load_factor, capacity=self.fit_capacity)
        per_family = {f: [] for f in FAMILIES}
        for (family, network, plen), idx in self.prefixes.items():
            per_family[family].append((network, plen, idx))
        cra = {_TABLE[f]: CraTable.build(f, per_family[f], initial_capacity=self.cra_initial_capacity) for f in FAMILIES}
        return exact, cra

    def _forget_changes(self):
        self._changed_exact = {}
        self._changed_prefix = {f: {} for f in FAMILIES}

    def _build_incremental(self, prev):
        exact, changed = prev.exact, self._changed_exact
        if changed:
            exact = exact.updated([(k, idx) for k, idx in changed.items() if idx is not None],
                                  [k for k, idx in changed.items() if idx is None])
        cra = {}
        for family, attr in _TABLE.items():
            table, ops = getattr(prev, attr), self._changed_prefix[family]
            if ops:
                ups = [(network, plen, idx) for (_f, network, plen), idx in ops.items() if idx is not None]
                dels = [(network, plen) for (_f, network, plen), idx in ops.items() if idx is None]
                table = self._defragmented(family, table.updated(ups, dels))
            cra[attr] = table
        return exact, cra

    def _defragmented(self, family, table):
        """``table`` rebuilt compactly once its dead arena slots pass ``cra_defrag_threshold``."""
        # Copy-on-write leaves replaced nodes behind; without this the arena only grows.
        if table.stats()["fragmentation"] <= self.cra_defrag_threshold:
            return table
        self.defrags[family] += 1
        return table.defragmented()

    def defragment(self, previous):
        """A snapshot whose CRA tables past ``cra_defrag_threshold`` are rebuilt (after lowering it live)."""
        tables = {attr: self._defragmented(f, getattr(previous, attr)) for f, attr in _TABLE.items()}
        self.epoch += 1
        snap = Snapshot(epoch=self.epoch, nodes=previous.nodes, exact=previous.exact, default=previous.default, **tables)
        return snap.freeze()

    def rebuild_fit(self, previous, *, load_factor=None, capacity=None):
        """A snapshot whose FIT is rebuilt at a new geometry (live tuning)."""
        lf = self.fit_load_factor if load_factor is None else load_factor
        cap = self.fit_capacity if capacity is None else capacity
        # Build first: a rebuild that fails leaves the writer's geometry as it was.
        exact = previous.exact.rebuilt(load_factor=lf, capacity=cap)
        self.fit_load_factor, self.fit_capacity = lf, cap
        self.epoch += 1
        snap = Snapshot(epoch=self.epoch, nodes=previous.nodes, exact=exact, ipv4=previous.ipv4,
                        ipv6=previous.ipv6, names=previous.names, default=previous.default)
        return snap.freeze()
