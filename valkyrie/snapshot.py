"""Immutable route snapshots and the lookup pipeline over them.

A key is resolved in order: exact (FIT) -> longest prefix (CRA, by the key's
kind: IPv4 text, IPv6 text or a name) -> the default route -> no route.
"""

import numpy as np

from jit.resolve import PREFIX, resolve, resolve_key
from jit.tables import describe
from valkyrie.keys import pack_keys, readonly

__all__ = ["Snapshot", "Resolution", "MATCH_NAMES"]

MATCH_NAMES = ("none", "exact", "prefix", "default")
_MATCH_OBJECTS = np.array(MATCH_NAMES, dtype=object)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class Resolution:
    """Column-wise answers for a batch of keys: ``node``, ``match`` and ``plen`` per key."""

    __slots__ = ("node", "match", "plen", "_text")

    def __init__(self, cols, text):
        self.node, self.match, self.plen = cols
        self._text = text

    def prefixes(self):
        """Texts of the matched prefixes (``"198.51.100.0/24"``, ``"ci.build."``), in key order."""
        return self._text.tobytes().decode("utf-8", errors="replace").split("\0")[:-1]

    def __len__(self):
        return self.node.shape[0]


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
        self._kargs = None  # (descriptor, parts) for the resolve kernels, gathered on first use

    def freeze(self):
        """Make every array readers see read-only and describe them for the kernels; called once before publishing."""
        for table in (self.exact, self.ipv4, self.ipv6, self.names):
            table.freeze()
        self._tables()  # here, on the writer's thread: not in the first lookup after publish
        return self

    def nbytes(self):
        """Bytes held by the route tables."""
        return sum(t.stats()["nbytes"] for t in (self.exact, self.ipv4, self.ipv6, self.names))

    def buffers(self):
        """``{id: bytes}`` of the memory the tables hold, each view resolved to the array that owns it."""
        out = {}
        for table in (self.exact, self.ipv4, self.ipv6, self.names):
            for arr in table.arrays():
                while isinstance(arr.base, np.ndarray):
                    arr = arr.base
                out[id(arr)] = arr.nbytes
        return out

    def release(self, live=()):
        """Drop the tables (RCU reclamation); returns the bytes freed: those no snapshot in ``live`` shares."""
        if self.released:
            return 0
        # Consecutive snapshots share CRA arenas and untouched tables; only what is ours alone goes.
        shared = set().union(*(s.buffers() for s in live if not s.released))
        freed = sum(n for key, n in self.buffers().items() if key not in shared)
        self.exact = self.ipv4 = self.ipv6 = self.names = self._kargs = None
        self.released = True
        return freed

    def resolve(self, keys, *, with_text=True):
        """Resolve a list of key ``bytes``; returns a ``Resolution``."""
        return self.resolve_packed(*pack_keys(keys), with_text=with_text)

    def answer(self, raw, text):
        """The JSON-ready answer for one key (``raw`` its bytes, ``text`` as the client sent it)."""
        tables, _arrays = self._tables()  # _arrays: the descriptor's memory stays alive through the call
        node, match, plen, prefix = resolve_key(raw, tables, True, _HEX)
        entry = {"key": text, "next_hop": self.nodes.ids[node] if node >= 0 else None, "match": MATCH_NAMES[match]}
        if match == PREFIX:
            entry["prefix"] = prefix.tobytes().decode("utf-8", errors="replace")
        return entry

    def _tables(self):
        """``(descriptor, parts)``: the tables as the resolve kernels take them, and what the descriptor points into."""
        if self._kargs is None:
            parts = (*self.exact.kernel_args(), *self.ipv4.kernel_args(), *self.ipv6.kernel_args(),
                     *self.names.kernel_args(), int(self.default))
            self._kargs = (describe(parts), parts)
        return self._kargs

    def resolve_packed(self, data, offsets, *, with_text=True):
        """Resolve keys already packed in an arena (``valkyrie.keys.pack_keys`` form).

        ``with_text=False`` skips formatting matched prefixes (answers that only name next hops).
        """
        tables, _arrays = self._tables()
        return Resolution(*resolve(readonly(data), readonly(offsets), tables, with_text, _HEX))

    def next_hops(self, res):
        """Next-hop ids of a ``Resolution`` as one newline-separated bytes (empty line: no route)."""
        ids = self.nodes.id_bytes
        return b"\n".join([ids[nh] if nh >= 0 else b"" for nh in res.node.tolist()])

    def answers(self, res, texts):
        """JSON-ready answers for a ``Resolution`` (``texts`` are the keys as the client sent them)."""
        hops = self.nodes.id_or_none[res.node].tolist()
        matches = _MATCH_OBJECTS[res.match].tolist()
        out = [{"key": k, "next_hop": h, "match": m} for k, h, m in zip(texts, hops, matches)]
        prefixes = res.prefixes()
        if prefixes:
            at = iter(prefixes)
            for entry, m in zip(out, matches):
                if m == "prefix":
                    entry["prefix"] = next(at)
        return out

    def __repr__(self):
        return f"Snapshot(epoch={self.epoch}, routes={self.route_count}, nodes={len(self.nodes)})"
