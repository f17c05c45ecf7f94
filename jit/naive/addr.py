"""Pure-Python twin of ``jit.addr``: the same classification done with ``ipaddress``."""

import ipaddress

import numpy as np

__all__ = ["classify", "parse_addresses"]


def classify(key):
    """Return ``(kind, value)`` for one ``bytes`` key: (4, int), (6, int) or (0, 0)."""
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return 0, 0
    # A zone-scoped IPv6 address is routed as a name.
    if "%" in text:
        return 0, 0
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return 0, 0
    return addr.version, int(addr)


def parse_addresses(data, offsets):
    """Same contract as ``jit.addr.parse_addresses``, one ``ipaddress`` call per key."""
    n = len(offsets) - 1
    kind = np.zeros(n, np.int8)
    v4 = np.zeros(n, np.uint32)
    v6hi = np.zeros(n, np.uint64)
    v6lo = np.zeros(n, np.uint64)
    for i in range(n):
        k, value = classify(bytes(data[offsets[i]:offsets[i + 1]]))
        kind[i] = k
        if k == 4:
            v4[i] = value
        elif k == 6:
            v6hi[i] = value >> 64
            v6lo[i] = value & (2**64 - 1)
    return kind, v4, v6hi, v6lo
