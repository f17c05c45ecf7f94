"""Text-address kernels: classify packed keys as IPv4, IPv6 or a name, and parse the value.

Acceptance follows Python's ``ipaddress.ip_address(str)`` exactly (same rules, same order of
preference: IPv4 first), except that a scoped IPv6 address (``fe80::1%eth0``) is a name.
"""

import numpy as np

from jit._policy import kernel

__all__ = ["KIND_NAME", "KIND_IPV4", "KIND_IPV6", "parse_address", "parse_addresses", "parse_prefixes"]

KIND_NAME = 0
KIND_IPV4 = 4
KIND_IPV6 = 6

_DOT = 46
_COLON = 58


@kernel
def _parse_ipv4(data, s, e):
    """Return (ok, value) for a dotted quad in data[s:e]: four 0..255 decimals, no leading zeros."""
    if e <= s:
        return False, np.int64(0)
    value = np.int64(0)
    octets = 0
    i = s
    while True:
        j = i
        while j < e and data[j] != _DOT:
            c = data[j]
            if c < 48 or c > 57:
                return False, np.int64(0)
            j += 1
        n = j - i
        if n == 0 or n > 3 or (n > 1 and data[i] == 48):
            return False, np.int64(0)
        octet = 0
        for k in range(i, j):
            octet = octet * 10 + (data[k] - 48)
        if octet > 255:
            return False, np.int64(0)
        value = value * 256 + octet
        octets += 1
        if j == e:
            break
        if octets == 4:
            return False, np.int64(0)
        i = j + 1
    return octets == 4, value


@kernel
def _hextet(data, s, e):
    """Value of 1..4 hex digits in data[s:e], or -1."""
    n = e - s
    if n < 1 or n > 4:
        return -1
    v = 0
    for k in range(s, e):
        c = data[k]
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            return -1
        v = v * 16 + d
    return v


@kernel
def _parse_ipv6(data, s, e, pstart, pend, pval, pempty):
    """Return (ok, hi, lo) for IPv6 text in data[s:e]; the arrays are caller scratch (10 each)."""
    zero = np.uint64(0)
    if e <= s:
        return False, zero, zero
    for k in range(s, e):
        # '/' is rejected by ipaddress; '%' (a zone) is a name here.
        if data[k] == 37 or data[k] == 47:
            return False, zero, zero
    nparts = 0
    ps = s
    for j in range(s, e + 1):
        if j == e or data[j] == _COLON:
            # More than 9 parts can never become a valid address.
            if nparts == 9:
                return False, zero, zero
            pstart[nparts] = ps
            pend[nparts] = j
            nparts += 1
            ps = j + 1
    if nparts < 3:
        return False, zero, zero
    for k in range(nparts):
        pempty[k] = pend[k] == pstart[k]
        pval[k] = _hextet(data, pstart[k], pend[k])
    last = nparts - 1
    has_dot = False
    for k in range(pstart[last], pend[last]):
        if data[k] == _DOT:
            has_dot = True
    total = nparts
    if has_dot:
        ok4, v4 = _parse_ipv4(data, pstart[last], pend[last])
        if not ok4:
            return False, zero, zero
        pval[last] = (v4 >> 16) & 0xFFFF
        pempty[last] = False
        pval[last + 1] = v4 & 0xFFFF
        pempty[last + 1] = False
        total = nparts + 1
    if total > 9:
        return False, zero, zero
    skip = -1
    for k in range(1, total - 1):
        if pempty[k]:
            if skip >= 0:
                return False, zero, zero
            skip = k
    if skip >= 0:
        nhi = skip
        nlo = total - skip - 1
        if pempty[0]:
            nhi -= 1
            if nhi != 0:
                return False, zero, zero
        if pempty[total - 1]:
            nlo -= 1
            if nlo != 0:
                return False, zero, zero
        if 8 - (nhi + nlo) < 1:
            return False, zero, zero
    else:
        if total != 8 or pempty[0] or pempty[total - 1]:
            return False, zero, zero
        nhi = 8
        nlo = 0
    hi = zero
    lo = zero
    for w in range(8):
        if w < nhi:
            v = pval[w]
        elif w >= 8 - nlo:
            v = pval[total - (8 - w)]
        else:
            v = 0
        if v < 0:
            return False, zero, zero
        if w < 4:
            hi = (hi << np.uint64(16)) | np.uint64(v)
        else:
            lo = (lo << np.uint64(16)) | np.uint64(v)
    return True, hi, lo


@kernel
def _ipv6_scratch():
    """The per-part arrays ``_parse_ipv6`` works in (an address has at most 9 colon parts)."""
    return np.empty(10, np.int64), np.empty(10, np.int64), np.empty(10, np.int64), np.empty(10, np.bool_)


@kernel
def parse_address(data, s, e):
    """Classify one key ``data[s:e]``: ``(kind, v4, v6hi, v6lo)`` as in ``parse_addresses``."""
    ok, v = _parse_ipv4(data, s, e)
    if ok:
        return KIND_IPV4, np.uint32(v), np.uint64(0), np.uint64(0)
    pstart, pend, pval, pempty = _ipv6_scratch()
    ok6, hi, lo = _parse_ipv6(data, s, e, pstart, pend, pval, pempty)
    if ok6:
        return KIND_IPV6, np.uint32(0), hi, lo
    return KIND_NAME, np.uint32(0), np.uint64(0), np.uint64(0)


@kernel
def parse_addresses(data, offsets):
    """Classify keys ``data[offsets[i]:offsets[i+1]]``: kind 4 (IPv4), 6 (IPv6) or 0 (a name).

    Returns ``(kind int8[n], v4 uint32[n], v6hi uint64[n], v6lo uint64[n])``; values are host
    order and zero where they do not apply.
    """
    n = offsets.shape[0] - 1
    kind = np.zeros(n, np.int8)
    v4 = np.zeros(n, np.uint32)
    v6hi = np.zeros(n, np.uint64)
    v6lo = np.zeros(n, np.uint64)
    pstart, pend, pval, pempty = _ipv6_scratch()
    for i in range(n):
        s = offsets[i]
        e = offsets[i + 1]
        ok, v = _parse_ipv4(data, s, e)
        if ok:
            kind[i] = KIND_IPV4
            v4[i] = np.uint32(v)
            continue
        ok6, hi, lo = _parse_ipv6(data, s, e, pstart, pend, pval, pempty)
        if ok6:
            kind[i] = KIND_IPV6
            v6hi[i] = hi
            v6lo[i] = lo
    return kind, v4, v6hi, v6lo


@kernel
def parse_prefixes(data, offsets):
    """Parse CIDR texts ``data[offsets[i]:offsets[i+1]]`` as ``address`` or ``address/len``.

    The fast path of route loading: a text is accepted (kind 4 or 6) only when Python's
    ``ipaddress.ip_network(text, strict=True)`` would accept it with the same result, and only
    in the plain forms (a decimal length of 1..3 digits, no netmask, no zone). Anything else is
    kind 0 and left to the caller's exact parser, which also words the error.

    Returns ``(kind int8[n], v4 uint32[n], v6hi uint64[n], v6lo uint64[n], plen int16[n])``.
    """
    n = offsets.shape[0] - 1
    kind = np.zeros(n, np.int8)
    v4 = np.zeros(n, np.uint32)
    v6hi = np.zeros(n, np.uint64)
    v6lo = np.zeros(n, np.uint64)
    plen = np.full(n, -1, np.int16)
    pstart, pend, pval, pempty = _ipv6_scratch()
    for i in range(n):
        s = offsets[i]
        e = offsets[i + 1]
        slash = e
        for k in range(s, e):
            if data[k] == 47:
                slash = k
                break
        length = -1
        if slash < e:
            digits = e - slash - 1
            if digits < 1 or digits > 3:
                continue
            length = 0
            for k in range(slash + 1, e):
                c = data[k]
                if c < 48 or c > 57:
                    length = -1
                    break
                length = length * 10 + (c - 48)
            if length < 0:
                continue
        ok, v = _parse_ipv4(data, s, slash)
        if ok:
            if length < 0:
                length = 32
            if length > 32 or (length < 32 and v & ((np.int64(1) << (32 - length)) - 1) != 0):
                continue
            kind[i] = KIND_IPV4
            v4[i] = np.uint32(v)
            plen[i] = length
            continue
        ok6, hi, lo = _parse_ipv6(data, s, slash, pstart, pend, pval, pempty)
        if not ok6:
            continue
        if length < 0:
            length = 128
        if length > 128:
            continue
        if length < 64:
            host_hi = (np.uint64(1) << np.uint64(64 - length)) - np.uint64(1) if length > 0 else ~np.uint64(0)
            if hi & host_hi != 0 or lo != 0:
                continue
        elif length < 128:
            if lo & ((np.uint64(1) << np.uint64(128 - length)) - np.uint64(1)) != 0:
                continue
        kind[i] = KIND_IPV6
        v6hi[i] = hi
        v6lo[i] = lo
        plen[i] = length
    return kind, v4, v6hi, v6lo, plen
