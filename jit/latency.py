"""Log-linear latency histogram: recording and quantiles over int64 bucket counts.

Bucket ``b`` (1 <= b < nbuckets - 1) holds values in
``[base * 2**((b-1)/sub), base * 2**(b/sub))``; bucket 0 holds everything
below ``base`` and the last bucket everything above the top edge. With
``sub = 8`` a quantile is off by at most 2**(1/8) - 1 ~ 9 %.
"""

import math

import numpy as np

from jit._policy import kernel

__all__ = ["bucket_of", "record_in", "quantile", "upper_edges"]


@kernel
def bucket_of(value, base, sub, nbuckets):
    """Index of the bucket holding ``value`` (same units as ``base``)."""
    if value < base:
        return 0
    b = int(math.floor(math.log2(value / base) * sub)) + 1
    # log2 rounds; nudge so the answer agrees with the edges exactly.
    while b < nbuckets - 1 and value >= base * 2.0 ** (b / sub):
        b += 1
    while b > 1 and value < base * 2.0 ** ((b - 1) / sub):
        b -= 1
    if b > nbuckets - 1:
        b = nbuckets - 1
    return b


@kernel(nogil=False)  # on every request's path: see jit.resolve
def record_in(total, windows, sums, window, value, base, sub):
    """Add one observation to ``total``, to row ``window`` of ``windows`` and to ``sums[window]`` (one call on the hot path)."""
    b = bucket_of(value, base, sub, total.shape[0])
    total[b] += 1
    windows[window, b] += 1
    sums[window] += value


@kernel
def quantile(counts, q, base, sub):
    """Upper edge of the bucket where the cumulative count reaches ``q`` (nan if empty)."""
    total = 0
    for c in counts:
        total += c
    if total == 0:
        return np.nan
    rank = q * total
    seen = 0
    for b in range(counts.shape[0]):
        seen += counts[b]
        if seen >= rank and seen > 0:
            return base * 2.0 ** (b / sub)
    return base * 2.0 ** ((counts.shape[0] - 1) / sub)


def upper_edges(nbuckets, base, sub):
    """Upper edge of every bucket but the last (which is unbounded)."""
    return base * 2.0 ** (np.arange(nbuckets - 1) / sub)
