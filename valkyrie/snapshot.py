"""Immutable route snapshots and the lookup pipeline over them.

A key is resolved in order: exact (FIT) -> longest prefix (CRA, by the key's
kind: IPv4 text, IPv6 text or a name) -> the default route -> no route.
"""

import numpy as np

from jit.resolve import PREFIX, resolve
from jit.text import format_prefixes
from valkyrie.keys import pack_keys

__all__ = ["Snapshot", "Resolution", "MATCH_NAMES", "prefix_texts"]

MATCH_NAMES = ("none", "exact", "prefix", "default")
_MATCH_OBJECTS = np.array(MATCH_NAMES, dtype=object)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class Resolution:
    """Column-wise answers for a batch of keys."""

    __slots__ = ("data", "offsets", "node", "match", "plen", "kind", "v4", "v6hi", "v6lo")

    def __init__(self, data, offsets, node, match, plen, kind, v4, v6hi, v6lo):
        self.data, self.offsets, self.node, self.match, self.plen = data, offsets, node, match, plen
        self.kind, self.v4, self.v6hi, self.v6lo = kind, v4, v6hi, v6lo

    def __len__(self):
        return self.offsets.shape[0] - 1


class Snapshot:
    """One published generation of every route structure, with its epoch.

    Readers must only touch a snapshot inside ``RcuDomain.read()``; after
    ``release()`` its tables are gone.
    """

    __slots__ = ("epoch", "nodes", "exact", "ipv4", "ipv6", "names", "default", "route_count", "released", "_kargs")

    def __init__(self, *, epoch, nodes, exact, ipv4, ipv6, names, default=-1):
        self.epoch = epoch
        self.nodes = nodes
        self.exact, self.ipv4, self.ipv6, self.names = exact, ipv4, ipv6, names
        self.default = default
        self.route_count = len(exact) + len(ipv4) + len(ipv6) + len(names)
        self.released = False
        self._kargs = None  # the tables' arrays as the resolve kernel takes them, gathered on first use

    def freeze(self):
        """Make every array readers see read-only; called once before publishing."""
        for table in (self.exact, self.ipv4, self.ipv6, self.names):
            table.freeze()
        return self

    def nbytes(self):
        """Bytes held by the route tables."""
        return sum(t.stats()["nbytes"] for t in (self.exact, self.ipv4, self.ipv6, self.names))

    def release(self):
        """Drop the tables (RCU reclamation); returns the bytes released."""
        if self.released:
            return 0
        freed = self.nbytes()
        self.exact = self.ipv4 = self.ipv6 = self.names = self._kargs = None
        self.released = True
        return freed

    def resolve(self, keys):
        """Resolve a list of key ``bytes``; returns a ``Resolution``."""
        return self.resolve_packed(*pack_keys(keys))

    def resolve_packed(self, data, offsets):
        """Resolve keys already packed in an arena (``valkyrie.keys.pack_keys`` form)."""
        if self._kargs is None:
            self._kargs = (*self.exact.kernel_args(), *self.ipv4.kernel_args(), *self.ipv6.kernel_args(),
                           *self.names.kernel_args(), int(self.default))
        return Resolution(data, offsets, *resolve(_readonly(data), _readonly(offsets), *self._kargs))

    def next_hops(self, res):
        """Next-hop ids of a ``Resolution`` as one newline-separated bytes (empty line: no route)."""
        ids = self.nodes.id_bytes
        return b"\n".join([ids[nh] if nh >= 0 else b"" for nh in res.node.tolist()])

    def answers(self, res, texts):
        """JSON-ready answers for a ``Resolution`` (``texts`` are the keys as the client sent them)."""
        hops = self.nodes.id_or_none[res.node].tolist()
        matches = _MATCH_OBJECTS[res.match].tolist()
        out = [{"key": k, "next_hop": h, "match": m} for k, h, m in zip(texts, hops, matches)]
        sel = np.flatnonzero(res.match == PREFIX)
        if sel.size:
            for i, text in zip(sel.tolist(), prefix_texts(res, sel)):
                out[i]["prefix"] = text
        return out

    def __repr__(self):
        return f"Snapshot(epoch={self.epoch}, routes={self.route_count}, nodes={len(self.nodes)})"


def _readonly(a):
    """A read-only view, so the kernel compiles for one array type whatever the caller passes."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def prefix_texts(res, sel):
    """The matched prefixes of answers ``sel`` as text (``"198.51.100.0/24"``, ``"ci.build."``)."""
    buf = format_prefixes(sel, res.kind, res.v4, res.v6hi, res.v6lo, res.plen, res.data, res.offsets, _HEX)
    return buf.tobytes().decode("utf-8", errors="replace").split("\0")[:-1]
