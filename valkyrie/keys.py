"""Packing byte-string keys into one arena, the form every batch kernel takes."""

import numpy as np

__all__ = ["pack_keys", "unpack_key"]


def pack_keys(keys):
    """Pack a sequence of ``bytes`` into ``(data uint8[], offsets int64[n+1])``.

    Key ``i`` is ``data[offsets[i]:offsets[i + 1]]``.

    >>> data, offsets = pack_keys([b"ab", b"", b"c"])
    >>> offsets.tolist()
    [0, 2, 2, 3]
    """
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    if keys:
        np.cumsum(np.fromiter(map(len, keys), dtype=np.int64, count=len(keys)), out=offsets[1:])
    data = np.frombuffer(b"".join(keys), dtype=np.uint8)
    if data.size == 0:
        # Kernels index data; give them one byte so an all-empty batch has a valid buffer.
        data = np.zeros(1, dtype=np.uint8)
    return data, offsets


def unpack_key(data, offsets, i):
    """Return key ``i`` of a packed arena as ``bytes``."""
    return data[offsets[i]:offsets[i + 1]].tobytes()
