"""XXH64 in Numba, bit-identical to ``xxhash.xxh64_intdigest``.

Every intermediate is ``np.uint64`` and every shift count a ``np.uint64``: numba
promotes ``uint64 op int64`` to float64, which would silently break the hash.
Lanes are assembled from bytes (little-endian) because keys sit at arbitrary,
unaligned offsets in a key arena; LLVM folds the byte loads into one load.
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


@kernel(inline="always")
def _rotl(x, r):
    return (x << r) | (x >> (_64 - r))


@kernel(inline="always")
def _read64(data, p):
    v = _ZERO
    for k in range(8):
        v |= np.uint64(data[p + k]) << np.uint64(8 * k)
    return v


@kernel(inline="always")
def _read32(data, p):
    v = _ZERO
    for k in range(4):
        v |= np.uint64(data[p + k]) << np.uint64(8 * k)
    return v


@kernel(inline="always")
def _round(acc, lane):
    acc = acc + lane * P2
    return _rotl(acc, np.uint64(31)) * P1


@kernel(inline="always")
def _merge(acc, v):
    acc ^= _round(_ZERO, v)
    return acc * P1 + P4


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
    seed = np.uint64(seed)
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
        h ^= np.uint64(data[p]) * P5
        h = _rotl(h, np.uint64(11)) * P1
        p += 1
    h ^= h >> np.uint64(33)
    h *= P2
    h ^= h >> np.uint64(29)
    h *= P3
    h ^= h >> np.uint64(32)
    return h


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
        out[i] = xxh64(data, offsets[i], offsets[i + 1] - offsets[i], seed)
    return out
