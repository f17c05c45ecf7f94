"""RCU epoch checks over a reader-slot array.

A slot holds 0 while its reader is outside any critical section, else the
epoch of the snapshot it is reading. The arrays are plain int64 so the same
kernels work when the slots live in shared memory and readers are processes.
"""

import numpy as np

from jit._policy import kernel

__all__ = ["OFFLINE", "min_active_epoch", "readers_at_or_before", "oldest_reader_since"]

OFFLINE = 0


@kernel
def min_active_epoch(slots):
    """Smallest epoch any reader is in, or ``-1`` when no reader is active.

    The reclaimer may free a snapshot retired at epoch ``e`` once this is
    ``-1`` or greater than ``e``.
    """
    best = -1
    for i in range(slots.shape[0]):
        e = slots[i]
        if e != OFFLINE and (best == -1 or e < best):
            best = e
    return best


@kernel
def readers_at_or_before(slots, epoch):
    """Count readers still inside a snapshot whose epoch is ``<= epoch``."""
    n = 0
    for i in range(slots.shape[0]):
        e = slots[i]
        if e != OFFLINE and e <= epoch:
            n += 1
    return n


@kernel
def oldest_reader_since(slots, entered_ns, now_ns):
    """Nanoseconds the longest-running active reader has been in its section (0 if none)."""
    worst = np.int64(0)
    for i in range(slots.shape[0]):
        if slots[i] != OFFLINE:
            age = now_ns - entered_ns[i]
            if age > worst:
                worst = age
    return worst
