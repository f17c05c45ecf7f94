"""Packing byte-string keys into one arena, the form every batch kernel takes."""

import itertools

import numpy as np

__all__ = ["pack_keys", "unpack_key"]

_SMALL = 32


def pack_keys(keys):
    """Pack a sequence of ``bytes`` into ``(data uint8[], offsets int64[n+1])``.

    Key ``i`` is ``data[offsets[i]:offsets[i + 1]]``.

    >>> data, offsets = pack_keys([b"ab", b"", b"c"])
    >>> offsets.tolist()
    [0, 2, 2, 3]
    """
    if len(keys) <= _SMALL:
        # A single lookup's batch: building a short list beats three numpy calls (~3us vs ~5us).
        offsets = np.array([0, *itertools.accumulate(map(len, keys))], dtype=np.int64)
    else:
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, keys), dtype=np.int64, count=len(keys)), out=offsets[1:])
    data = np.frombuffer(b"".join(keys), dtype=np.uint8)
    if data.size == 0:
        # Kernels index data; give them one byte so an all-empty batch has a valid buffer.
        data = np.zeros(1, dtype=np.uint8)
    return data, offsets


def unpack_key(data, offsets, i):
    """Return key ``i`` of a packed arena as ``bytes``."""
    return data[offsets[i]:offsets[i + 1]].tobytes()
