"""The plain ``PUT /v1/routes`` body as columns: the fast path of ``valkyrie.writer.parse_put``.

Bodies of only IP prefix and key routes (``jit.put_scan`` says which) are staged from arrays:
no JSON objects, no route tuples, next hops looked up once per distinct id. Every other body,
including every invalid one, takes ``parse_put``, which names the problem.
"""

from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from jit.put_scan import KIND_KEY, scan_put
from valkyrie.routes import MAX_KEY_BYTES, ip_idents

__all__ = ["PlainPuts", "parse_plain_put"]

_WORDS = tuple(np.frombuffer(w, np.uint8) for w in (b"routes", b"prefix", b"key", b"next_hop"))


@dataclass
class PlainPuts:
    """A plain body's routes, in body order: what ``RouteWriter.stage`` needs and no more."""

    hops: list            # distinct next-hop ids, by first appearance
    hop: np.ndarray       # per route: its next hop's ordinal in ``hops``
    exact_keys: list      # key bytes of the key routes, in order
    exact_at: np.ndarray  # their positions among the routes
    prefixes: list        # (family, network, plen) of the prefix routes, in order
    prefix_at: np.ndarray
    families: tuple       # the families among ``prefixes``

    def __len__(self):
        return self.hop.shape[0]


def parse_plain_put(raw, limit):
    """``PlainPuts`` for a plain body of at most ``limit`` routes, or None (then use ``parse_put``)."""
    body = np.frombuffer(raw, np.uint8)
    ok, n, kind, start, end, hop, hop_start, hop_end = scan_put(body, MAX_KEY_BYTES, *_WORDS)
    if not ok or n > limit:
        return None
    is_key = kind == KIND_KEY
    exact_at, prefix_at = np.flatnonzero(is_key), np.flatnonzero(~is_key)
    found = _ip_prefixes(body, start[prefix_at], end[prefix_at])
    if found is None:
        return None
    prefixes, families = found
    hops = [raw[s:e].decode("ascii") for s, e in zip(hop_start.tolist(), hop_end.tolist())]
    keys = [raw[s:e] for s, e in zip(start[exact_at].tolist(), end[exact_at].tolist())]
    return PlainPuts(hops=hops, hop=hop, exact_keys=keys, exact_at=exact_at, prefixes=prefixes, prefix_at=prefix_at,
                     families=families)


def _ip_prefixes(body, start, end):
    """``([(family, network, plen)], families present)`` of the texts ``body[start[i]:end[i]]``, or None unless all
    are plain IP prefixes."""
    if not start.size:
        return [], ()
    lengths = end - start
    offsets = np.zeros(start.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    idents = ip_idents((body[np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])], offsets))
    if None in idents:
        return None  # a name prefix, or not a prefix at all: parse_route decides
    present = set(map(itemgetter(0), idents))
    return idents, tuple(f for f in ("ipv4", "ipv6") if f in present)
