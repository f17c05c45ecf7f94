"""The single writer: canonical route state, batch validation, and building the next snapshot.

Batches are validated whole before any of them is staged (all-or-nothing);
several staged batches are then folded into one snapshot by computing, for
every touched route, its final state, so the order of puts and deletes
across coalesced batches never matters.
"""

from dataclasses import dataclass, field

import numpy as np

from jit.addr import parse_prefixes
from valkyrie.cra_table import CraTable
from valkyrie.fit_table import FitTable
from valkyrie.nodes import NodeTable
from valkyrie.keys import pack_texts
from valkyrie.routes import (FAMILIES, MAX_KEY_BYTES, ExactRoute, PrefixRoute, RouteError, parse_node, parse_route,
                             parse_route_ref)
from valkyrie.snapshot import Snapshot

__all__ = ["Batch", "RouteWriter", "parse_put", "parse_delete"]


@dataclass
class Batch:
    """One client request's worth of changes, already parsed."""

    nodes: list = field(default_factory=list)
    puts: list = field(default_factory=list)
    deletes: list = field(default_factory=list)
    default_route: str | None = None
    where: list | None = None  # where each put came from (route files); else "routes[i]"
    default_where: str = "default_route"

    @property
    def size(self):
        """Route changes it carries (nodes count too: they rebuild the node table)."""
        return len(self.nodes) + len(self.puts) + len(self.deletes)


def _entries(body, name, limit):
    items = body.get(name, [])
    if not isinstance(items, list):
        raise RouteError(f"'{name}' must be a list, got {type(items).__name__}", "invalid_body")
    if len(items) > limit:
        raise RouteError(f"'{name}' has {len(items)} entries; at most {limit} per batch", "batch_too_large")
    return items


def parse_put(body, limit):
    """Parse a ``PUT /v1/routes`` body into a ``Batch`` (raises ``RouteError``)."""
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
    """``parse_route`` of every entry, in order; plain IP prefix entries share one kernel parse.

    ``ipaddress`` was half the cost of a 5,000-route PUT. The kernel accepts only what the exact
    parser accepts, with the same result; every other entry (keys, names, errors) takes
    ``parse_route``, so the first bad entry is still the one named.
    """
    plain = [i for i, o in enumerate(items) if type(o) is dict and len(o) == 2 and type(o.get("prefix")) is str
             and type(o.get("next_hop")) is str and o["next_hop"]]
    packed = pack_texts([items[i]["prefix"] for i in plain], MAX_KEY_BYTES) if plain else None
    fast = {}
    if packed is not None:
        kinds, v4, v6hi, v6lo, plens = parse_prefixes(*packed)
        v4b, v6b = v4.astype(">u4").tobytes(), np.stack([v6hi, v6lo], axis=1).astype(">u8").tobytes()
        for j, (i, kind, plen) in enumerate(zip(plain, kinds.tolist(), plens.tolist())):
            if kind == 4:
                fast[i] = PrefixRoute("ipv4", v4b[4 * j:4 * j + 4], plen, items[i]["next_hop"])
            elif kind == 6:
                fast[i] = PrefixRoute("ipv6", v6b[16 * j:16 * j + 16], plen, items[i]["next_hop"])
    return [fast[i] if i in fast else parse_route(o, f"routes[{i}]") for i, o in enumerate(items)]


def parse_delete(body, limit):
    """Parse a ``DELETE /v1/routes`` body into a ``Batch``."""
    if not isinstance(body, dict) or set(body) != {"routes"}:
        raise RouteError("body must be a JSON object with only 'routes'", "invalid_body")
    refs = [parse_route_ref(o, f"routes[{i}]") for i, o in enumerate(_entries(body, "routes", limit))]
    if not refs:
        raise RouteError("'routes' is empty", "invalid_body")
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
        self._touched_exact = set()
        self._touched_prefix = set()
        self._nodes_changed = False
        self._undo = None

    # ---- groups: what the store persists, and undo when it cannot -----------------------------

    def begin(self):
        """Start a group of batches that ``records()`` describes and ``rollback()`` undoes."""
        self._undo = {"nodes": self.nodes, "default": self.default, "exact": {}, "prefix": {},
                      "touched_exact": set(self._touched_exact), "touched_prefix": set(self._touched_prefix),
                      "nodes_changed": self._nodes_changed, "new_nodes": {}, "default_route": None}

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
        self._touched_exact, self._touched_prefix = u["touched_exact"], u["touched_prefix"]
        self._nodes_changed = u["nodes_changed"]
        self._undo = None

    def end(self):
        """Close the group: its changes stay."""
        self._undo = None

    # ---- validation and staging ------------------------------------------------------------

    def _node_index(self, node_id, batch_nodes, where):
        if node_id in batch_nodes:
            return batch_nodes[node_id]
        idx = self.nodes.index.get(node_id)
        if idx is None:
            raise RouteError(f"{where}: unknown next hop {node_id!r}; declare it under 'nodes' first", "unknown_next_hop")
        return idx

    def stage(self, batch):
        """Validate ``batch`` against the current state and stage it whole, or raise ``RouteError``."""
        new_nodes = self.nodes.with_nodes(batch.nodes) if batch.nodes else self.nodes
        batch_nodes = {n.id: new_nodes.index[n.id] for n in batch.nodes}
        exact_ops, prefix_ops = {}, {}
        for i, route in enumerate(batch.puts):
            idx = self._node_index(route.next_hop, batch_nodes, batch.where[i] if batch.where else f"routes[{i}]")
            if isinstance(route, ExactRoute):
                exact_ops[route.key] = idx
            else:
                prefix_ops[route.ident] = idx
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
            default = self._node_index(batch.default_route, batch_nodes, batch.default_where)
        # Everything validated: now stage.
        if self._undo is not None:
            u = self._undo
            for key in exact_ops:
                u["exact"].setdefault(key, self.exact.get(key))
            for ident in prefix_ops:
                u["prefix"].setdefault(ident, self.prefixes.get(ident))
            u["new_nodes"].update((n.id, n) for n in batch.nodes)
            if batch.default_route is not None:
                u["default_route"] = batch.default_route
        self.nodes = new_nodes
        self._nodes_changed |= bool(batch.nodes)
        for key, idx in exact_ops.items():
            if idx is None:
                self.exact.pop(key, None)
            else:
                self.exact[key] = idx
        for ident, idx in prefix_ops.items():
            if idx is None:
                self.prefixes.pop(ident, None)
            else:
                self.prefixes[ident] = idx
        self.default = default
        self._touched_exact.update(exact_ops)
        self._touched_prefix.update(prefix_ops)

    def replay(self, stored):
        """Apply a store's contents (``StoredState``) on top of the file routes; deletions of absent routes are no-ops."""
        self.nodes = self.nodes.with_nodes(stored.nodes)
        for family, network, plen, next_hop in stored.routes:
            idx = self.nodes.index.get(next_hop) if next_hop is not None else None
            if next_hop is not None and idx is None:
                raise RouteError(f"route store names unknown next hop {next_hop!r}", "storage_corrupt")
            table, key = (self.exact, network) if family == "exact" else (self.prefixes, (family, network, plen))
            if idx is None:
                table.pop(key, None)
            else:
                table[key] = idx
            (self._touched_exact if family == "exact" else self._touched_prefix).add(key)
        if stored.default_route is not None:
            self.default = self._node_index(stored.default_route, {}, "route store default_route")

    def reset(self):
        """Forget every route and node (before re-reading route files); the epoch keeps counting."""
        self.nodes, self.exact, self.prefixes, self.default = NodeTable(), {}, {}, -1
        self._touched_exact.clear()
        self._touched_prefix.clear()

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
        self._touched_exact.clear()
        self._touched_prefix.clear()
        self._nodes_changed = False
        snap = Snapshot(epoch=self.epoch, nodes=self.nodes, exact=exact, default=self.default, **cra)
        return snap.freeze()

    def _build_full(self):
        keys = list(self.exact)
        exact = FitTable.build(keys, [self.exact[k] for k in keys], load_factor=self.fit_load_factor, capacity=self.fit_capacity)
        per_family = {f: [] for f in FAMILIES}
        for (family, network, plen), idx in self.prefixes.items():
            per_family[family].append((network, plen, idx))
        cra = {("names" if f == "name" else f): CraTable.build(f, per_family[f], initial_capacity=self.cra_initial_capacity)
               for f in FAMILIES}
        return exact, cra

    def _build_incremental(self, prev):
        upserts = [(k, self.exact[k]) for k in self._touched_exact if k in self.exact]
        deletes = [k for k in self._touched_exact if k not in self.exact]
        exact = prev.exact.updated(upserts, deletes) if (upserts or deletes) else prev.exact
        cra = {}
        for family in FAMILIES:
            attr = "names" if family == "name" else family
            touched = [t for t in self._touched_prefix if t[0] == family]
            table = getattr(prev, attr)
            if touched:
                ups = [(t[1], t[2], self.prefixes[t]) for t in touched if t in self.prefixes]
                dels = [(t[1], t[2]) for t in touched if t not in self.prefixes]
                table = table.updated(ups, dels)
                table = self._defragmented(family, table)
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
        tables = {("names" if f == "name" else f): self._defragmented(f, getattr(previous, "names" if f == "name" else f))
                  for f in FAMILIES}
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
