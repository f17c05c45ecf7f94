"""XXH64 in Numba, bit-identical to ``xxhash.xxh64_intdigest``.

Every intermediate is ``np.uint64`` and every shift count a ``np.uint64``: numba
promotes ``uint64 op int64`` to float64, which would silently break the hash.
Lanes are assembled from bytes (little-endian) because keys sit at arbitrary,
unaligned offsets in a key arena; LLVM folds the byte loads into one load.

Keys shorter than 32 bytes take a branch-free path: every optional step of the
tail is computed and kept or dropped by a mask. With keys of mixed lengths the
branchy tail mispredicts two or three times per key, which costs more than the
few extra multiplies (65M -> 150M+ hashes/s on 8..24-byte keys).
"""

import numpy as np

from jit._policy import kernel

__all__ = ["xxh64", "xxh64_batch"]

P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)
_ZERO = np.uint64(0)
_64 = np.uint64(64)


@kernel
def _rotl(x, r):
    return (x << r) | (x >> (_64 - r))


@kernel
def _byte(data, p):
    # An unsigned index skips numba's negative-index wraparound, which would otherwise
    # stop LLVM from fusing the byte loads below into one word load.
    return np.uint64(data[np.uint64(p)])


@kernel
def _read64(data, p):
    return (_byte(data, p) | (_byte(data, p + 1) << np.uint64(8))
            | (_byte(data, p + 2) << np.uint64(16)) | (_byte(data, p + 3) << np.uint64(24))
            | (_byte(data, p + 4) << np.uint64(32)) | (_byte(data, p + 5) << np.uint64(40))
            | (_byte(data, p + 6) << np.uint64(48)) | (_byte(data, p + 7) << np.uint64(56)))


@kernel
def _read32(data, p):
    return (_byte(data, p) | (_byte(data, p + 1) << np.uint64(8))
            | (_byte(data, p + 2) << np.uint64(16)) | (_byte(data, p + 3) << np.uint64(24)))


@kernel
def _round(acc, lane):
    acc = acc + lane * P2
    return _rotl(acc, np.uint64(31)) * P1


@kernel
def _merge(acc, v):
    acc ^= _round(_ZERO, v)
    return acc * P1 + P4


@kernel
def _pick(cond, a, b):
    # ``a if cond else b`` as arithmetic, so there is no branch to mispredict.
    m = _ZERO - np.uint64(cond)
    return (a & m) | (b & ~m)


@kernel
def _xxh64_short(data, p, length, seed):
    # length < 32 and data.shape[0] >= 8. Unused steps read clamped, in-bounds
    # positions and are masked out; the kept steps are exactly the spec's.
    dlen = data.shape[0]
    h = seed + P5 + np.uint64(length)
    nw = length >> 3
    for k in range(3):
        lane = _read64(data, min(p + 8 * k, dlen - 8))
        step = _rotl(h ^ _round(_ZERO, lane), np.uint64(27)) * P1 + P4
        h = _pick(k < nw, step, h)
    p += 8 * nw
    step = _rotl(h ^ (_read32(data, min(p, dlen - 4)) * P1), np.uint64(23)) * P2 + P3
    h = _pick((length & 4) != 0, step, h)
    p += length & 4
    nb = length & 3
    for k in range(3):
        step = _rotl(h ^ (_byte(data, min(p + k, dlen - 1)) * P5), np.uint64(11)) * P1
        h = _pick(k < nb, step, h)
    return _avalanche(h)


@kernel
def _avalanche(h):
    h ^= h >> np.uint64(33)
    h *= P2
    h ^= h >> np.uint64(29)
    h *= P3
    h ^= h >> np.uint64(32)
    return h


@kernel(inline="always")
def _xxh64(data, start, length, seed):
    # Inlined into every caller: a call per key through numba's calling convention
    # costs more than hashing a short key.
    seed = np.uint64(seed)
    if length < 32 and data.shape[0] >= 8:
        return _xxh64_short(data, np.int64(start), np.int64(length), seed)
    p = np.int64(start)
    end = p + np.int64(length)
    if length >= 32:
        v1 = seed + P1 + P2
        v2 = seed + P2
        v3 = seed
        v4 = seed - P1
        limit = end - 32
        while p <= limit:
            v1 = _round(v1, _read64(data, p))
            v2 = _round(v2, _read64(data, p + 8))
            v3 = _round(v3, _read64(data, p + 16))
            v4 = _round(v4, _read64(data, p + 24))
            p += 32
        h = (_rotl(v1, np.uint64(1)) + _rotl(v2, np.uint64(7))
             + _rotl(v3, np.uint64(12)) + _rotl(v4, np.uint64(18)))
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = seed + P5
    h += np.uint64(length)
    while p + 8 <= end:
        h ^= _round(_ZERO, _read64(data, p))
        h = _rotl(h, np.uint64(27)) * P1 + P4
        p += 8
    if p + 4 <= end:
        h ^= _read32(data, p) * P1
        h = _rotl(h, np.uint64(23)) * P2 + P3
        p += 4
    while p < end:
        h ^= _byte(data, p) * P5
        h = _rotl(h, np.uint64(11)) * P1
        p += 1
    return _avalanche(h)


@kernel
def xxh64(data, start, length, seed):
    """XXH64 of ``data[start:start + length]``.

    Parameters
    ----------
    data : uint8[:]
        Byte arena.
    start, length : int64
        Slice of ``data`` to hash.
    seed : uint64

    Returns
    -------
    uint64
    """
    return _xxh64(data, start, length, seed)


@kernel
def xxh64_batch(data, offsets, seed):
    """XXH64 of every key in a packed arena.

    Parameters
    ----------
    data : uint8[:]
        Key arena; key ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
    offsets : int64[n + 1]
    seed : uint64

    Returns
    -------
    uint64[n]
    """
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i] = _xxh64(data, offsets[i], offsets[i + 1] - offsets[i], seed)
    return out
