"""Pure-Python XXH64, written from the xxHash specification; the twin of ``jit.xxh64``."""

__all__ = ["xxh64_ref"]

_MASK = (1 << 64) - 1
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
P4 = 0x85EBCA77C2B2AE63
P5 = 0x27D4EB2F165667C5


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc, lane):
    acc = (acc + lane * P2) & _MASK
    return (_rotl(acc, 31) * P1) & _MASK


def _merge(acc, v):
    acc ^= _round(0, v)
    return (acc * P1 + P4) & _MASK


def _u64(b, i):
    return int.from_bytes(b[i:i + 8], "little")


def _u32(b, i):
    return int.from_bytes(b[i:i + 4], "little")


def xxh64_ref(b: bytes, seed: int = 0) -> int:
    """Return the XXH64 digest of ``b`` as an unsigned int (equals ``xxhash.xxh64_intdigest``)."""
    b = bytes(b)
    n = len(b)
    seed &= _MASK
    i = 0
    if n >= 32:
        v = [(seed + P1 + P2) & _MASK, (seed + P2) & _MASK, seed, (seed - P1) & _MASK]
        while i + 32 <= n:
            for j in range(4):
                v[j] = _round(v[j], _u64(b, i + 8 * j))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _MASK
        for lane in v:
            h = _merge(h, lane)
    else:
        h = (seed + P5) & _MASK
    h = (h + n) & _MASK
    while i + 8 <= n:
        h ^= _round(0, _u64(b, i))
        h = (_rotl(h, 27) * P1 + P4) & _MASK
        i += 8
    if i + 4 <= n:
        h ^= (_u32(b, i) * P1) & _MASK
        h = (_rotl(h, 23) * P2 + P3) & _MASK
        i += 4
    while i < n:
        h ^= (b[i] * P5) & _MASK
        h = (_rotl(h, 11) * P1) & _MASK
        i += 1
    h ^= h >> 33
    h = (h * P2) & _MASK
    h ^= h >> 29
    h = (h * P3) & _MASK
    h ^= h >> 32
    return h
