"""Matched prefixes as text, for a whole batch in one call (JSON answers name the prefix that matched).

Formatting one prefix in Python costs about a microsecond (integer masking and
``ipaddress`` for IPv6), which dominated large JSON batches. IPv6 follows
RFC 5952: lower-case hex, no leading zeros, the longest run of two or more zero
groups (the first, on a tie) shown as ``::``; IPv4-mapped addresses stay hex.
"""

import numpy as np

from jit._policy import kernel

__all__ = ["format_prefixes", "format_prefix", "SEPARATOR", "PREFIX_TEXT_MAX"]

SEPARATOR = 0  # keys never hold NUL, so it can end each text
PREFIX_TEXT_MAX = 44  # the longest address prefix text: eight 4-digit groups, 7 colons, "/128"

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@kernel(inline="always")
def _put_decimal(buf, at, v):
    if v >= 100:
        buf[at] = 48 + v // 100
        at += 1
    if v >= 10:
        buf[at] = 48 + (v // 10) % 10
        at += 1
    buf[at] = 48 + v % 10
    return at + 1


@kernel(inline="always")
def _put_hex_group(buf, at, g, hexdigits):
    started = False
    for shift in (12, 8, 4, 0):
        d = (g >> shift) & 15
        if d or started or shift == 0:
            buf[at] = hexdigits[d]
            at += 1
            started = True
    return at


@kernel(inline="always")
def format_prefix(buf, at, kind, a4, hi, lo, plen, data, start, groups, hexdigits):
    """Write one matched prefix's text at ``buf[at:]`` (no separator); returns the end.

    ``kind`` 4: ``a4`` masked to ``plen``; 6: ``(hi, lo)`` likewise; a name: the first
    ``plen / 8`` bytes of ``data[start:]``. ``groups`` is int64[8] scratch. ``buf`` needs
    ``PREFIX_TEXT_MAX`` bytes for an address, ``plen / 8`` for a name.
    """
    p = np.int64(plen)
    if kind == 4:
        a = np.int64(a4)
        if p < 32:
            a &= ~((np.int64(1) << (32 - p)) - 1) & 0xFFFFFFFF
        for k in range(4):
            at = _put_decimal(buf, at, (a >> (24 - 8 * k)) & 255)
            buf[at] = 46 if k < 3 else 47
            at += 1
        return _put_decimal(buf, at, p)
    if kind == 6:
        for k in range(8):
            half = hi if k < 4 else lo
            g = np.int64((half >> np.uint64(48 - 16 * (k % 4))) & np.uint64(0xFFFF))
            bit = 16 * k
            if p <= bit:
                g = 0
            elif p < bit + 16:
                g &= ~((np.int64(1) << (bit + 16 - p)) - 1) & 0xFFFF
            groups[k] = g
        best, best_len, run, run_len = -1, 1, -1, 0
        for k in range(8):
            if groups[k] == 0:
                if run_len == 0:
                    run = k
                run_len += 1
                if run_len > best_len:
                    best, best_len = run, run_len
            else:
                run_len = 0
        k = 0
        while k < 8:
            if k == best:
                buf[at] = 58
                buf[at + 1] = 58
                at += 2
                k += best_len
                continue
            if k > 0 and k != best + best_len:
                buf[at] = 58
                at += 1
            at = _put_hex_group(buf, at, groups[k], hexdigits)
            k += 1
        buf[at] = 47
        return _put_decimal(buf, at + 1, p)
    for k in range(p // 8):
        buf[at] = data[start + k]
        at += 1
    return at


@kernel
def format_prefixes(sel, kind, v4, v6hi, v6lo, plen, data, offsets, hexdigits):
    """Texts of the prefixes matched by keys ``sel``, each followed by a NUL byte.

    Parameters
    ----------
    sel : int64[m]
        Keys whose match is a prefix.
    kind, v4, v6hi, v6lo, plen : per-key arrays from ``jit.resolve.resolve``
    data, offsets : the packed keys (a name prefix is the key's first ``plen / 8`` bytes)
    hexdigits : uint8[16]
        ``b"0123456789abcdef"`` (passed in: cached code must not freeze module globals).

    Returns
    -------
    uint8[:]
        ``"198.51.100.0/24\\0ci.build.\\0..."``, in ``sel`` order.
    """
    size = 0
    for j in range(sel.shape[0]):
        i = sel[j]
        size += (PREFIX_TEXT_MAX if kind[i] else plen[i] // 8) + 1
    buf = np.empty(size, np.uint8)
    groups = np.empty(8, np.int64)
    at = 0
    for j in range(sel.shape[0]):
        i = sel[j]
        at = format_prefix(buf, at, kind[i], v4[i], v6hi[i], v6lo[i], plen[i], data, offsets[i], groups, hexdigits)
        buf[at] = SEPARATOR
        at += 1
    return buf[:at]
