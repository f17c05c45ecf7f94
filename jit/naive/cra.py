"""Pure-Python twin of ``jit.cra``: a dict of prefixes and the obvious longest-match loop.

``rules`` maps ``(prefix bytes, plen bits) -> value``; IP prefixes are full-width network-order
bytes with host bits zero, name prefixes are the name bytes with ``plen == 8 * len(prefix)``.
"""

import numpy as np

__all__ = ["apply", "lookup_ipv4", "lookup_ipv6", "lookup_names", "mask_prefix"]


def mask_prefix(prefix, plen):
    """Return ``prefix`` (bytes) with every bit after the first ``plen`` cleared."""
    width = len(prefix) * 8
    value = int.from_bytes(prefix, "big")
    if plen < width:
        value &= ~((1 << (width - plen)) - 1)
    return value.to_bytes(len(prefix), "big")


def apply(rules, upserts=(), deletes=()):
    """Return a new dict with upserts ``(prefix, plen, value)`` then deletes ``(prefix, plen)``."""
    out = dict(rules)
    for prefix, plen, value in upserts:
        out[(bytes(prefix), int(plen))] = int(value)
    for prefix, plen in deletes:
        out.pop((bytes(prefix), int(plen)), None)
    return out


def _lookup_int(rules, value, width_bits):
    nbytes = width_bits // 8
    for plen in range(width_bits, -1, -1):
        masked = value & ~((1 << (width_bits - plen)) - 1) if plen < width_bits else value
        hit = rules.get((masked.to_bytes(nbytes, "big"), plen))
        if hit is not None:
            return hit, plen
    return -1, -1


def lookup_ipv4(rules, addrs):
    """Longest match of host-order uint32 addresses -> (values int32[], plens int16[])."""
    out = [_lookup_int(rules, int(a), 32) for a in addrs]
    return _arrays(out)


def lookup_ipv6(rules, hi, lo):
    """Longest match of IPv6 addresses given as uint64 halves."""
    out = [_lookup_int(rules, (int(h) << 64) | int(low), 128) for h, low in zip(hi, lo)]
    return _arrays(out)


def lookup_names(rules, data, offsets):
    """Longest byte-prefix match of keys ``data[offsets[i]:offsets[i+1]]``."""
    out = []
    for i in range(len(offsets) - 1):
        key = bytes(data[offsets[i]:offsets[i + 1]])
        hit = (-1, -1)
        for n in range(len(key), -1, -1):
            value = rules.get((key[:n], 8 * n))
            if value is not None:
                hit = (value, 8 * n)
                break
        out.append(hit)
    return _arrays(out)


def _arrays(pairs):
    values = np.array([p[0] for p in pairs], dtype=np.int32)
    plens = np.array([p[1] for p in pairs], dtype=np.int16)
    return values, plens
