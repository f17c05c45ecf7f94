"""Pure-Python twin of ``jit.text``: the same texts, built group by group with the RFC 5952 rules."""

__all__ = ["format_prefixes", "ipv6_text"]


def ipv6_text(value):
    """RFC 5952 text of a 128-bit int (IPv4-mapped addresses stay hex, as in ``jit.text``)."""
    groups = [(value >> (112 - 16 * k)) & 0xFFFF for k in range(8)]
    best, best_len = -1, 1
    k = 0
    while k < 8:
        if groups[k] == 0:
            end = k
            while end < 8 and groups[end] == 0:
                end += 1
            if end - k > best_len:
                best, best_len = k, end - k
            k = end
        else:
            k += 1
    parts = [f"{g:x}" for g in groups]
    if best < 0:
        return ":".join(parts)
    return ":".join(parts[:best]) + "::" + ":".join(parts[best + best_len:])


def format_prefixes(sel, kind, v4, v6hi, v6lo, plen, data, offsets):
    """Same contract as ``jit.text.format_prefixes`` (returns ``bytes``)."""
    out = []
    for i in sel:
        p = int(plen[i])
        if kind[i] == 4:
            a = int(v4[i]) & (((1 << 32) - 1) ^ ((1 << (32 - p)) - 1))
            out.append(f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/{p}".encode())
        elif kind[i] == 6:
            a = (int(v6hi[i]) << 64) | int(v6lo[i])
            a &= ((1 << 128) - 1) ^ ((1 << (128 - p)) - 1)
            out.append(f"{ipv6_text(a)}/{p}".encode())
        else:
            start = int(offsets[i])
            out.append(bytes(data[start:start + p // 8]))
    return b"".join(t + b"\0" for t in out)
