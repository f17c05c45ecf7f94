"""Pure-Python twins of ``jit.latency``."""

import math


def bucket_of(value, base, sub, nbuckets):
    """Bucket index of ``value``, by searching edges one at a time."""
    if value < base:
        return 0
    b = 1
    while b < nbuckets - 1 and value >= base * 2.0 ** (b / sub):
        b += 1
    return b


def quantile(counts, q, base, sub):
    """Upper edge of the bucket holding rank ``q * total``."""
    total = sum(int(c) for c in counts)
    if total == 0:
        return math.nan
    seen = 0
    for b, c in enumerate(counts):
        seen += int(c)
        if seen >= q * total and seen > 0:
            return base * 2.0 ** (b / sub)
    return base * 2.0 ** ((len(counts) - 1) / sub)
