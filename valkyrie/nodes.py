"""Next hops: an immutable, column-oriented node table that routes refer to by index."""

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["Node", "NodeTable"]

_COLUMNS = (("shard", np.int32), ("weight", np.int32), ("latency_hint_us", np.int32), ("reliability", np.uint16))


@dataclass(frozen=True)
class Node:
    """One next hop: ``Node("node-a", address="10.1.0.5:7000")``."""

    id: str
    address: str = ""
    shard: int = 0
    weight: int = 1
    latency_hint_us: int = 0
    reliability: int = 65535

    def as_dict(self):
        """JSON-ready form."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class NodeTable:
    """Nodes by index; append-only so indices held by published tables stay valid."""

    def __init__(self, nodes=()):
        self._nodes = tuple(nodes)
        self.ids = tuple(n.id for n in self._nodes)
        self.id_bytes = tuple(i.encode("utf-8") for i in self.ids)
        self.index = {node_id: i for i, node_id in enumerate(self.ids)}
        # Indexed by a kernel's node column in one numpy take: -1 (no route) lands on the trailing None.
        self.id_or_none = np.array([*self.ids, None], dtype=object)
        self.columns = {name: np.fromiter((getattr(n, name) for n in self._nodes), dtype=dt, count=len(self._nodes))
                        for name, dt in _COLUMNS}
        for col in self.columns.values():
            col.flags.writeable = False

    def __len__(self):
        return len(self._nodes)

    def __getitem__(self, i):
        return self._nodes[i]

    def __contains__(self, node_id):
        return node_id in self.index

    def __iter__(self):
        return iter(self._nodes)

    def with_nodes(self, nodes):
        """A new table with ``nodes`` added or replaced by id (indices of existing ids are kept)."""
        merged = list(self._nodes)
        index = dict(self.index)
        for node in nodes:
            if node.id in index:
                merged[index[node.id]] = node
            else:
                index[node.id] = len(merged)
                merged.append(node)
        return NodeTable(merged)

    def __repr__(self):
        return f"NodeTable({len(self)} nodes)"
