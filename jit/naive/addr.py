"""Pure-Python twin of ``jit.addr``: the same classification done with ``ipaddress``."""

import ipaddress

import numpy as np

__all__ = ["classify", "parse_addresses", "parse_prefixes"]


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


def parse_prefixes(data, offsets):
    """Same contract as ``jit.addr.parse_prefixes``, from ``ipaddress.ip_network(strict=True)``."""
    n = len(offsets) - 1
    kind = np.zeros(n, np.int8)
    v4 = np.zeros(n, np.uint32)
    v6hi = np.zeros(n, np.uint64)
    v6lo = np.zeros(n, np.uint64)
    plen = np.full(n, -1, np.int16)
    for i in range(n):
        raw = bytes(data[offsets[i]:offsets[i + 1]])
        address, slash, length = raw.partition(b"/")
        # Only the plain forms: a 1..3 digit ASCII length, an address kind classify() accepts.
        if slash and not (1 <= len(length) <= 3 and all(48 <= c <= 57 for c in length)):
            continue
        k, _value = classify(address)
        if k == 0:
            continue
        try:
            net = ipaddress.ip_network(raw.decode("ascii"), strict=True)
        except ValueError:
            continue
        kind[i] = k
        plen[i] = net.prefixlen
        value = int(net.network_address)
        if k == 4:
            v4[i] = value
        else:
            v6hi[i] = value >> 64
            v6lo[i] = value & (2**64 - 1)
    return kind, v4, v6hi, v6lo, plen
