"""Longest-prefix-match tables (CRA) as immutable snapshots over the ``jit.cra`` kernels.

A table owns no Python objects on the lookup path: a per-snapshot root, per-snapshot route
values and liveness, and views into an append-only arena shared with the tables derived from it.
``updated()`` appends copied or new nodes behind the live ones (copy-on-write), so a small batch
costs a root copy plus the touched paths; the replaced nodes stay readable by older snapshots
and count as dead slots until ``defragmented()`` rebuilds compactly. A next-hop change of an
existing route touches no node at all: it is one store into this snapshot's own values.

>>> t = CraTable.build("ipv4", [(bytes([10, 0, 0, 0]), 8, 7)])
>>> t.lookup_ipv4(np.array([0x0A010203], dtype=np.uint32))
(array([7], dtype=int32), array([8], dtype=int16))
"""

import ipaddress
import itertools
import threading

import numpy as np

from jit import cra as K

__all__ = ["CraTable", "FAMILIES"]

# Prefix width in bytes per family; names are variable.
FAMILIES = {"ipv4": 4, "ipv6": 16, "name": 0}

_ROOT_SIZE = 65536
# rule_plen is int16 bits, which bounds a name prefix at 4095 bytes.
_MAX_NAME = 4095
_VALUE_MAX = 2**31 - 1
_generations = itertools.count(1)


def _children(entries):
    """Node indexes of the child entries among ``entries`` (even and not -1: see ``jit.cra``)."""
    return (entries[(entries & 1) == 0] >> 1).astype(np.int64)


def _renumber(entries, node_map, rule_map):
    """Map child node indexes (and leaf route ids, given ``rule_map``) of ``entries`` in place."""
    child = np.flatnonzero((entries & 1) == 0)
    entries[child] = node_map[entries[child] >> 1] << 1
    if rule_map is not None:
        leaf = np.flatnonzero(((entries & 1) == 1) & (entries != -1))
        entries[leaf] = (rule_map[entries[leaf] >> 1] << 1) | 1


def _pow2_at_least(n):
    size = 64
    while size < n:
        size *= 2
    return size


def _fmt(family, prefix, plen):
    """Human form of a prefix for error messages."""
    try:
        if family == "ipv4":
            return f"{ipaddress.IPv4Address(bytes(prefix))}/{plen}"
        if family == "ipv6":
            return f"{ipaddress.IPv6Address(bytes(prefix))}/{plen}"
    except (ValueError, TypeError):
        pass
    return f"{bytes(prefix)!r}/{plen}"


class _Arena:
    """Append-only arrays shared by a chain of snapshots; only the head snapshot may append.

    ``head`` is the generation of the snapshot whose state the index describes (0: none).
    """

    def __init__(self, family, nodes, rules, nbytes, skip, index_size):
        self.family = family
        self.slots = np.empty(nodes * 256, np.int32)
        if FAMILIES[family]:
            self.depth = np.empty(nodes * 256, np.uint8)
        else:
            self.nroute = np.empty(nodes, np.int32)
            self.skip_off = np.empty(nodes, np.int64)
            self.skip_len = np.empty(nodes, np.int32)
            self.skipb = np.empty(max(skip, 1), np.uint8)
        self.rule_plen = np.empty(rules, np.int16)
        self.rule_off = np.empty(rules, np.int64)
        self.rule_bytes = np.empty(max(nbytes, 1), np.uint8)
        self.rule_hash = np.empty(rules, np.uint64)
        self.index = np.full(index_size, -1, np.int32)
        self.head = 0
        self.lock = threading.Lock()

    @property
    def caps(self):
        skip = self.skipb.shape[0] if hasattr(self, "skipb") else 0
        return (self.slots.shape[0] // 256, self.rule_plen.shape[0],
                self.rule_bytes.shape[0], skip, self.index.shape[0])

    def fits(self, caps):
        return all(have >= need for have, need in zip(self.caps, caps))

    def copied(self, meta, rule_live, caps):
        """A new arena holding one snapshot's used prefix, with at least ``caps`` room."""
        # Grow by half when short, so a run of updates does not copy on every batch; keep what fits
        # (sizing a dimension to exactly this batch's need made the next batch copy again).
        caps = [have if need <= have else max(need, have + have // 2)
                for need, have in zip(caps, self.caps)]
        new = _Arena(self.family, *caps)
        nodes, rules, nbytes, skip = (int(meta[K.M_NODES]), int(meta[K.M_RULES]),
                                      int(meta[K.M_BYTES]), int(meta[K.M_SKIP]))
        new.slots[:nodes * 256] = self.slots[:nodes * 256]
        if FAMILIES[self.family]:
            new.depth[:nodes * 256] = self.depth[:nodes * 256]
        else:
            new.nroute[:nodes] = self.nroute[:nodes]
            new.skip_off[:nodes] = self.skip_off[:nodes]
            new.skip_len[:nodes] = self.skip_len[:nodes]
            new.skipb[:skip] = self.skipb[:skip]
        for name in ("rule_plen", "rule_off", "rule_hash"):
            getattr(new, name)[:rules] = getattr(self, name)[:rules]
        new.rule_bytes[:nbytes] = self.rule_bytes[:nbytes]
        K.rebuild_index(new.rule_hash, rule_live, rules, new.index)
        return new


class CraTable:
    """Immutable longest-prefix-match table over one family: "ipv4", "ipv6" or "name"."""

    def __init__(self, family, arena, meta, root, root_depth, rule_live, rule_value):
        # Tables are made by build(), updated() and defragmented(); this wires the views.
        self._family = family
        self._width = FAMILIES[family]
        self._arena = arena
        self._meta = meta
        self._root = root
        self._root_depth = root_depth
        self._rule_live = rule_live
        self._gen = next(_generations)
        nodes, rules = int(meta[K.M_NODES]), int(meta[K.M_RULES])
        self._slots = arena.slots[:nodes * 256]
        self._rule_value = rule_value[:rules]
        self._rule_plen = arena.rule_plen[:rules]
        self._rule_off = arena.rule_off[:rules]
        self._rule_bytes = arena.rule_bytes[:int(meta[K.M_BYTES])]
        if self._width:
            self._depth = arena.depth[:nodes * 256]
        else:
            self._nroute = arena.nroute[:nodes]
            self._skip_off = arena.skip_off[:nodes]
            self._skip_len = arena.skip_len[:nodes]
            self._skipb = arena.skipb[:int(meta[K.M_SKIP])]
        # A snapshot is immutable from birth; freeze() only restates it.
        self.freeze()

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def build(cls, family, routes, *, initial_capacity=None):
        """Build a table from ``(prefix bytes, plen bits, value)`` routes; duplicates: last wins.

        ``initial_capacity`` is the number of arena nodes to start with (grown as needed).
        """
        kinds, data, off, plens, values = _pack_ops(family, routes, ())
        return cls._build_packed(family, data, off, plens, values, initial_capacity)

    @classmethod
    def _build_packed(cls, family, data, off, plens, values, initial_capacity=None):
        width = _check_family(family)
        n = len(plens)
        if width:
            # Shorter prefixes first: each insert then only paints entries, never repaints them.
            order = np.argsort(plens, kind="stable")
            rows = data[:n * width].reshape(n, width)[order]
            data = np.ascontiguousarray(rows).reshape(-1)
            plens = plens[order]
            values = values[order]
            nodes = _ip_node_estimate(rows, plens, width)
            skip = 0
        else:
            nodes = n + 2
            skip = int(off[-1]) + 1
        # Headroom keeps the first updates from copying the arena (untouched pages cost no RAM).
        nodes, rules, nbytes = (x + x // 4 + 256 for x in (nodes, n, int(off[-1])))
        if initial_capacity is not None:
            # A name table always holds its root node.
            nodes = max(int(initial_capacity), 0 if width else 1)
        empty = cls._empty(family, (nodes, rules, nbytes, skip + skip // 4 + 64 if skip else 0,
                                    _pow2_at_least(2 * (n + 1))))
        kinds = np.full(n, K.OP_UPSERT, np.int8)
        return empty._apply(kinds, data, off, plens, values, fresh=True)

    @classmethod
    def _empty(cls, family, caps):
        width = _check_family(family)
        arena = _Arena(family, *caps)
        meta = np.zeros(K.META_SIZE, np.int64)
        rule_live = np.zeros(caps[1], np.uint8)
        rule_value = np.zeros(caps[1], np.int32)
        if width:
            root = np.full(_ROOT_SIZE, -1, np.int32)
            root_depth = np.zeros(_ROOT_SIZE, np.uint8)
        else:
            root = root_depth = None
            arena.slots[:256] = -1
            arena.nroute[0] = -1
            arena.skip_off[0] = 0
            arena.skip_len[0] = 0
            meta[K.M_NODES] = 1
        table = cls(family, arena, meta, root, root_depth, rule_live, rule_value)
        arena.head = table._gen
        return table

    def updated(self, upserts, deletes, *, missing_ok=True):
        """Return a new table with ``upserts`` (prefix, plen, value) then ``deletes`` (prefix, plen).

        ``self`` is unchanged. A delete naming no route is ignored, or raises ``KeyError`` when
        ``missing_ok`` is false.
        """
        kinds, data, off, plens, values = _pack_ops(self._family, upserts, deletes)
        if not missing_ok:
            self._check_deletes(kinds, data, off, plens)
        return self._apply(kinds, data, off, plens, values)

    def defragmented(self):
        """Return an equivalent table rebuilt compactly (no dead slots, no dead route ids)."""
        if self._width:
            # Copying the reachable nodes is ~10x cheaper than re-inserting every route.
            return self._compacted_ip()
        live = np.flatnonzero(self._rule_live[:int(self._meta[K.M_RULES])])
        plens = self._rule_plen[live].astype(np.int16)
        values = self._rule_value[live].astype(np.int32)
        starts = self._rule_off[live]
        lengths = np.full(len(live), self._width, np.int64) if self._width else plens.astype(np.int64) // 8
        off = np.zeros(len(live) + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        # Gather every live prefix's bytes in one fancy index.
        gather = np.repeat(starts - off[:-1], lengths) + np.arange(off[-1])
        data = self._rule_bytes[gather].copy() if len(gather) else np.zeros(0, np.uint8)
        return type(self)._build_packed(self._family, data, off, plens, values)

    def _compacted_ip(self):
        """IP families: reachable nodes copied in breadth-first order; route ids renumbered once half are dead."""
        nodes, rules = int(self._meta[K.M_NODES]), int(self._meta[K.M_RULES])
        slots, depth = self._slots.reshape(nodes, 256), self._depth.reshape(nodes, 256)
        order, level = [], _children(self._root)
        while level.size:
            order.append(level)
            level = _children(slots[level].reshape(-1))
        order = np.concatenate(order) if order else np.zeros(0, np.int64)
        node_map = np.full(max(nodes, 1), -1, np.int32)
        node_map[order] = np.arange(order.size, dtype=np.int32)
        live = np.flatnonzero(self._rule_live[:rules])
        # Deletes leave dead route ids; renumbering them costs a pass over every leaf, so only when
        # they are a fifth of the ids (one dead id per deleted route: bounded, so memory stays flat).
        renumber = rules - live.size >= live.size // 4
        ids = live if renumber else np.arange(rules)
        rule_map = None
        if renumber:
            rule_map = np.full(max(rules, 1), -1, np.int32)
            rule_map[live] = np.arange(live.size, dtype=np.int32)
        n, r, w = int(order.size), int(ids.size), self._width
        # Room for the next batches to append instead of copying (``_apply`` reserves up to 16 nodes
        # per change); pages never written cost no memory.
        arena = _Arena(self._family, 2 * n + 4096, r + r // 4 + 256, (r + r // 4 + 256) * w, 0,
                       _pow2_at_least(2 * (live.size + 1)))
        np.take(slots, order, axis=0, out=arena.slots[:n * 256].reshape(n, 256))
        _renumber(arena.slots[:n * 256], node_map, rule_map)
        np.take(depth, order, axis=0, out=arena.depth[:n * 256].reshape(n, 256))
        arena.rule_plen[:r] = self._rule_plen[ids]
        arena.rule_hash[:r] = self._arena.rule_hash[ids]
        arena.rule_off[:r] = np.arange(r, dtype=np.int64) * w
        gather = (self._rule_off[ids][:, None] + np.arange(w)).reshape(-1)
        arena.rule_bytes[:r * w] = self._rule_bytes[gather]
        rule_live = np.zeros(arena.rule_plen.shape[0], np.uint8)
        rule_live[:r] = self._rule_live[ids]
        rule_value = np.zeros(arena.rule_plen.shape[0], np.int32)
        rule_value[:r] = self._rule_value[ids]
        K.rebuild_index(arena.rule_hash, rule_live, r, arena.index)
        meta = self._meta.copy()
        meta[K.M_NODES], meta[K.M_RULES], meta[K.M_BYTES], meta[K.M_DEAD] = n, r, r * w, 0
        meta[K.M_NODE_MUT], meta[K.M_MISSING] = n, 0
        root = self._root.copy()
        _renumber(root, node_map, rule_map)
        table = type(self)(self._family, arena, meta, root, self._root_depth.copy(), rule_live, rule_value)
        arena.head = table._gen
        return table

    def _apply(self, kinds, data, off, plens, values, *, fresh=False):
        """Run the update kernel into a writable arena, growing and retrying when one is full."""
        m = self._meta
        n = len(kinds)
        nbytes = int(off[-1])
        n_up = int(np.count_nonzero(kinds == K.OP_UPSERT))
        per_op = {4: 4, 16: 16, 0: 8}[self._width]
        need = [int(m[K.M_NODES]) + per_op * n + 16,
                int(m[K.M_RULES]) + n + 1,
                int(m[K.M_BYTES]) + nbytes + 1,
                int(m[K.M_SKIP]) + (2 * nbytes + 64 if not self._width else 0),
                _pow2_at_least(2 * (int(m[K.M_LIVE]) + n_up + 1))]
        if fresh:
            need[0] = int(m[K.M_NODES])
        # Fresh writable op arrays keep the kernels to one compiled signature.
        data = np.array(data, np.uint8) if len(data) else np.zeros(1, np.uint8)
        kinds, off = np.array(kinds, np.int8), np.array(off, np.int64)
        plens, values = np.array(plens, np.int16), np.array(values, np.int32)
        while True:
            arena = self._claim(need)
            meta = m.copy()
            meta[K.M_MISSING] = 0
            meta[K.M_NODE_MUT] = 0 if fresh else m[K.M_NODES]
            rules = int(m[K.M_RULES])
            rule_live = np.zeros(arena.rule_plen.shape[0], np.uint8)
            rule_live[:rules] = self._rule_live[:rules]
            rule_value = np.zeros(arena.rule_plen.shape[0], np.int32)
            rule_value[:rules] = self._rule_value[:rules]
            if self._width:
                root = self._root.copy()
                root_depth = self._root_depth.copy()
                status = K.ip_apply(self._width, root, root_depth, arena.slots, arena.depth,
                                    rule_value, arena.rule_plen, arena.rule_off,
                                    arena.rule_bytes, arena.rule_hash, rule_live, arena.index,
                                    meta, kinds, data, off, plens, values)
            else:
                root = root_depth = None
                status = K.name_apply(arena.slots, arena.nroute, arena.skip_off, arena.skip_len,
                                      arena.skipb, rule_value, arena.rule_plen,
                                      arena.rule_off, arena.rule_bytes, arena.rule_hash,
                                      rule_live, arena.index, meta, kinds, data, off, values)
            if status == K.OK:
                table = type(self)(self._family, arena, meta, root, root_depth, rule_live, rule_value)
                arena.head = table._gen
                return table
            # The failed batch may have touched the shared index; _claim now copies instead.
            slot = {K.FULL_NODES: 0, K.FULL_RULES: 1, K.FULL_INDEX: 4, K.FULL_SKIP: 3}[status]
            need[slot] = max(need[slot], 2 * arena.caps[slot], 64)

    def _claim(self, need):
        """The arena this update may append to: ours if we are its head and it fits, else a copy."""
        arena = self._arena
        with arena.lock:
            if arena.head == self._gen and arena.fits(need):
                # Nobody may trust the index until this update publishes a new head.
                arena.head = 0
                return arena
        return arena.copied(self._meta, self._rule_live, need)

    def _check_deletes(self, kinds, data, off, plens):
        present = {(p, int(n)) for p, n, _v in self.routes()}
        for i in np.flatnonzero(kinds == K.OP_UPSERT):
            present.add((data[off[i]:off[i + 1]].tobytes(), int(plens[i])))
        for i in np.flatnonzero(kinds == K.OP_DELETE):
            key = (data[off[i]:off[i + 1]].tobytes(), int(plens[i]))
            if key not in present:
                raise KeyError(f"no route {_fmt(self._family, *key)} to delete")

    # -- lookups ---------------------------------------------------------------------------

    def lookup_ipv4(self, addrs):
        """Longest match of host-order uint32 addresses -> (values int32[], plens int16[])."""
        self._require("ipv4", "lookup_ipv4")
        a = _as_uint(addrs, np.uint32, "addrs")
        out_v = np.empty(a.shape[0], np.int32)
        out_p = np.empty(a.shape[0], np.int16)
        K.lookup_ipv4(self._root, self._slots, self._rule_value, self._rule_plen, a, out_v, out_p)
        return out_v, out_p

    def lookup_ipv6(self, hi, lo):
        """Longest match of IPv6 addresses given as host-order uint64 halves (hi, lo)."""
        self._require("ipv6", "lookup_ipv6")
        h = _as_uint(hi, np.uint64, "hi")
        low = _as_uint(lo, np.uint64, "lo")
        if h.shape != low.shape:
            raise ValueError(f"hi and lo differ in length: {h.shape[0]} != {low.shape[0]}")
        out_v = np.empty(h.shape[0], np.int32)
        out_p = np.empty(h.shape[0], np.int16)
        K.lookup_ipv6(self._root, self._slots, self._rule_value, self._rule_plen, h, low,
                      out_v, out_p)
        return out_v, out_p

    def lookup_keys(self, data, offsets):
        """Longest byte-prefix match of packed keys (see ``valkyrie.keys.pack_keys``)."""
        self._require("name", "lookup_keys")
        data, offsets = _as_arena(data, offsets)
        n = offsets.shape[0] - 1
        out_v = np.empty(n, np.int32)
        out_p = np.empty(n, np.int16)
        K.lookup_names(int(self._meta[K.M_ROOT]), self._slots, self._nroute, self._skip_off,
                       self._skip_len, self._skipb, self._rule_value, self._rule_plen,
                       self._rule_off, self._rule_bytes, data, offsets, out_v, out_p)
        return out_v, out_p

    def kernel_args(self):
        """This table's part of ``jit.resolve.resolve``'s arguments (the arrays its lookup kernel reads)."""
        if self._width:
            return self._root, self._slots, self._rule_value, self._rule_plen
        return (int(self._meta[K.M_ROOT]), self._slots, self._nroute, self._skip_off, self._skip_len,
                self._skipb, self._rule_value, self._rule_plen, self._rule_off, self._rule_bytes)

    def _require(self, family, what):
        if self._family != family:
            raise ValueError(f"{what} needs a {family!r} table, this one is {self._family!r}")

    # -- inspection ------------------------------------------------------------------------

    @property
    def family(self):
        return self._family

    def routes(self):
        """Iterate ``(prefix bytes, plen, value)`` over the live routes."""
        live = np.flatnonzero(self._rule_live[:int(self._meta[K.M_RULES])])
        for r in live.tolist():
            plen = int(self._rule_plen[r])
            nbytes = self._width or plen // 8
            start = int(self._rule_off[r])
            yield self._rule_bytes[start:start + nbytes].tobytes(), plen, int(self._rule_value[r])

    def __len__(self):
        return int(self._meta[K.M_LIVE])

    def __repr__(self):
        return f"CraTable(family={self._family!r}, routes={len(self)})"

    def arrays(self):
        """Every array a lookup of this table reads (views into the shared arena among them)."""
        arrays = [self._meta, self._rule_live, self._slots, self._rule_value, self._rule_plen,
                  self._rule_off, self._rule_bytes]
        if self._width:
            arrays += [self._root, self._root_depth, self._depth]
        else:
            arrays += [self._nroute, self._skip_off, self._skip_len, self._skipb]
        return arrays

    def freeze(self):
        """Make every array readers see read-only (``writeable=False``); returns self."""
        for arr in self.arrays():
            arr.flags.writeable = False
        return self

    def stats(self):
        """Sizes and fragmentation: dead arena slots (copied or freed nodes) / all slots."""
        allocated = int(self._meta[K.M_NODES])
        dead = int(self._meta[K.M_DEAD])
        root_slots = _ROOT_SIZE if self._width else 0
        slots = root_slots + allocated * 256
        return {
            "family": self._family,
            "routes": len(self),
            "nodes": allocated - dead + (1 if self._width else 0),
            "arena_slots": slots,
            "dead_slots": dead * 256,
            "fragmentation": (dead * 256 / slots) if slots else 0.0,
            "nbytes": int(sum(a.nbytes for a in self.arrays())),
            "route_ids": int(self._meta[K.M_RULES]),
            "skip_bytes": int(self._meta[K.M_SKIP]),
        }

    def _check_invariants(self):
        """Walk the whole trie and assert the layout invariants (tests; slow)."""
        if self._width:
            reached = _check_ip(self)
        else:
            reached = _check_names(self)
        live_nodes = int(self._meta[K.M_NODES]) - int(self._meta[K.M_DEAD])
        assert reached == live_nodes, f"{reached} reachable nodes, {live_nodes} counted live"
        assert int(self._rule_live[:int(self._meta[K.M_RULES])].sum()) == len(self)


# -- input packing ---------------------------------------------------------------------------

def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[family]


def _pack_ops(family, upserts, deletes):
    """Validate routes into op arrays (kinds int8, data uint8, off int64[n+1], plens, values)."""
    width = _check_family(family)
    prefixes, plens, values = _columns(list(upserts), 3, "route", "(prefix, plen, value)")
    n_up = len(prefixes)
    d_prefixes, d_plens, _none = _columns(list(deletes), 2, "delete", "(prefix, plen)")
    prefixes += d_prefixes
    plens += d_plens
    values += [0] * len(d_prefixes)
    n = len(prefixes)
    kinds = np.full(n, K.OP_UPSERT, np.int8)
    kinds[n_up:] = K.OP_DELETE
    if not set(map(type, prefixes)) <= {bytes, bytearray, memoryview}:
        for i, p in enumerate(prefixes):
            if not isinstance(p, (bytes, bytearray, memoryview)):
                raise TypeError(f"route {i}: prefix must be bytes, got {type(p).__name__}")
    plens_a = _int_array(plens, "plen")
    values_a = _int_array(values, "value")
    if n and (values_a.min() < 0 or values_a.max() > _VALUE_MAX):
        i = int(np.flatnonzero((values_a < 0) | (values_a > _VALUE_MAX))[0])
        raise ValueError(f"route {i}: value {values[i]} outside 0..{_VALUE_MAX}")
    lengths = np.fromiter(map(len, prefixes), np.int64, count=n)
    off = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    data = np.frombuffer(b"".join(prefixes), np.uint8)
    if width:
        bad = np.flatnonzero(lengths != width)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"route {i}: {family} prefix must be {width} bytes, "
                             f"got {int(lengths[i])}")
        bad = np.flatnonzero((plens_a < 0) | (plens_a > 8 * width))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"route {i}: plen {plens[i]} outside 0..{8 * width}")
        if n and width == 4:
            nets = data.view(">u4").astype(np.uint64)
            host = (np.uint64(1) << (32 - plens_a).astype(np.uint64)) - np.uint64(1)
            bad = np.flatnonzero(nets & host)
        elif n:
            bits = np.unpackbits(data.reshape(n, width), axis=1).astype(bool)
            host = np.arange(8 * width)[None, :] >= plens_a[:, None]
            bad = np.flatnonzero((bits & host).any(axis=1))
        else:
            bad = []
        if n:
            if len(bad):
                i = int(bad[0])
                raise ValueError(f"route {i}: {_fmt(family, prefixes[i], plens[i])} has bits "
                                 f"set beyond the prefix length")
    else:
        bad = np.flatnonzero(plens_a != 8 * lengths)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"route {i}: name prefix {bytes(prefixes[i])!r} needs plen "
                             f"{8 * int(lengths[i])}, got {plens[i]}")
        bad = np.flatnonzero(lengths > _MAX_NAME)
        if bad.size:
            raise ValueError(f"route {int(bad[0])}: name prefix longer than {_MAX_NAME} bytes")
    return kinds, data, off, plens_a.astype(np.int16), values_a.astype(np.int32)


def _columns(rows, arity, what, shape):
    """Split rows of ``arity`` items into lists, naming the first malformed row."""
    if not rows:
        return [], [], []
    try:
        if set(map(len, rows)) == {arity}:
            return ([r[0] for r in rows], [r[1] for r in rows],
                    [r[2] for r in rows] if arity == 3 else [])
    except (TypeError, KeyError, IndexError):
        pass
    for i, row in enumerate(rows):
        if not isinstance(row, (tuple, list)) or len(row) != arity:
            raise ValueError(f"{what} {i}: expected {shape}, got {row!r}")
    raise ValueError(f"{what}s must be {shape} tuples")


def _int_array(items, what):
    try:
        arr = np.array(items)
    except OverflowError:
        arr = np.array(items, dtype=object)
    if arr.dtype.kind in "iu" or not items:
        return arr.astype(np.int64)
    for i, x in enumerate(items):
        if not isinstance(x, (int, np.integer)) or isinstance(x, (bool, np.bool_)):
            raise TypeError(f"route {i}: {what} must be an int, got {x!r}")
    raise ValueError(f"a {what} does not fit in 64 bits")


def _ip_node_estimate(rows, plens, width):
    """Exact node count of a fresh build: distinct (boundary-bit prefix) per deeper level."""
    total = 0
    boundary = 2
    while boundary < width:
        deeper = plens > 8 * boundary
        if not deeper.any():
            break
        keys = np.ascontiguousarray(rows[deeper, :boundary])
        total += np.unique(keys.view(np.dtype((np.void, boundary)))).size
        boundary += 1
    return total


def _as_uint(values, dtype, what):
    arr = np.asarray(values)
    if arr.dtype == dtype:
        return np.ascontiguousarray(arr).reshape(-1)
    if arr.size and arr.dtype.kind not in "ui":
        raise TypeError(f"{what} must be an integer array, got dtype {arr.dtype}")
    arr = arr.reshape(-1)
    if arr.size and (arr.min() < 0 or int(arr.max()) > np.iinfo(dtype).max):
        raise ValueError(f"{what} holds values outside the {np.dtype(dtype).name} range")
    return np.ascontiguousarray(arr, dtype=dtype)


def _as_arena(data, offsets):
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = np.frombuffer(data, np.uint8)
    data = np.ascontiguousarray(data, np.uint8).reshape(-1)
    offsets = np.ascontiguousarray(offsets, np.int64).reshape(-1)
    if offsets.shape[0] == 0:
        raise ValueError("offsets needs n + 1 entries, got 0")
    if offsets[0] < 0 or offsets[-1] > data.shape[0] or (np.diff(offsets) < 0).any():
        raise ValueError("offsets must be non-decreasing and lie within data")
    if data.shape[0] == 0:
        data = np.zeros(1, np.uint8)
    return data, offsets


# -- invariant walks (tests) -------------------------------------------------------------------

def _check_ip(t):
    bits = 8 * t._width
    seen = set()
    stack = [(t._root, t._root_depth, 16, 0)]
    while stack:
        block, dblock, boundary, above = stack.pop()
        stride = 16 if boundary == 16 else 8
        leaf = (block & 1) == 1
        rids = block >> 1
        assert (dblock[leaf & (rids < 0)] == 0).all(), "empty entry with a depth"
        for j in np.flatnonzero(~leaf).tolist():
            c = int(rids[j])
            assert c not in seen and c < int(t._meta[K.M_NODES]), f"node {c} reached twice"
            seen.add(c)
            child, dchild = t._slots[c * 256:(c + 1) * 256], t._depth[c * 256:(c + 1) * 256]
            assert not ((child == child[0]).all() and (dchild == dchild[0]).all()
                        and child[0] & 1), f"node {c} is uniform"
            stack.append((child, dchild, boundary + 8, (above << stride) | j))
        for r in np.unique(rids[leaf & (rids >= 0)]).tolist():
            js = np.flatnonzero(leaf & (rids == r))
            d = int(t._rule_plen[r])
            assert t._rule_live[r], f"entry points at dead route {r}"
            assert (dblock[js] == d).all() and d <= boundary, f"depth != plen of route {r}"
            start = int(t._rule_off[r])
            rule = int.from_bytes(t._rule_bytes[start:start + t._width].tobytes(), "big")
            for j in (int(js[0]), int(js[-1])):
                addr = (above << stride) | j
                assert addr >> (boundary - d) == rule >> (bits - d), f"route {r} outside range"
    return len(seen)


def _check_names(t):
    seen = set()
    root = int(t._meta[K.M_ROOT])
    stack = [(root, 0, b"")]
    found = 0
    while stack:
        n, pos, path = stack.pop()
        assert n not in seen
        seen.add(n)
        so, sl = int(t._skip_off[n]), int(t._skip_len[n])
        path = path + t._skipb[so:so + sl].tobytes()
        block = t._slots[n * 256:(n + 1) * 256]
        kids = np.flatnonzero(block != -1)
        r = int(t._nroute[n])
        if n != root:
            assert r >= 0 or kids.size >= 2, f"node {n} should have been compressed"
        if r >= 0:
            found += 1
            assert t._rule_live[r] and int(t._rule_plen[r]) == 8 * len(path)
            assert t._rule_bytes[t._rule_off[r]:t._rule_off[r] + len(path)].tobytes() == path
        for b in kids.tolist():
            e = int(block[b])
            here = path + bytes([b])
            if e & 1:
                r = e >> 1
                found += 1
                rl = int(t._rule_plen[r]) // 8
                assert t._rule_live[r] and rl >= len(here)
                assert t._rule_bytes[t._rule_off[r]:t._rule_off[r] + len(here)].tobytes() == here
            else:
                stack.append((e >> 1, len(here), here))
    assert found == len(t), f"{found} routes reachable, {len(t)} live"
    return len(seen)
