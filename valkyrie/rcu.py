"""RCU over snapshots: lock-free readers, one writer that publishes, and deferred reclamation.

Protocol (after DPDK's QSBR): a reader marks its slot with the epoch of the
snapshot it is about to read, then re-checks that the snapshot is still the
current one; only then does it use it. A retired snapshot is released once no
slot holds an epoch at or below its own and ``grace_period`` has passed since
it was retired. Because a reader always re-checks after marking, a writer that
saw the slot empty can never have released what the reader goes on to use.
"""

import threading
import time
from collections import deque
from contextlib import contextmanager

import numpy as np

from jit.rcu import OFFLINE, min_active_epoch, oldest_reader_since

__all__ = ["RcuDomain", "Reclaimed"]


class Reclaimed:
    """What one reclamation pass released."""

    __slots__ = ("epochs", "nbytes", "waits")

    def __init__(self):
        self.epochs, self.nbytes, self.waits = [], 0, []

    def __repr__(self):
        return f"Reclaimed(epochs={self.epochs}, nbytes={self.nbytes})"


class RcuDomain:
    """Holds the current snapshot, the reader slots and the retired snapshots.

    ``read()`` is safe from any thread (one active read per thread at a time);
    ``publish()`` and ``reclaim()`` may be called from any thread and serialise
    on an internal lock.
    """

    def __init__(self, *, slots=256, grace_period=0.005):
        self.slots = np.zeros(slots, dtype=np.int64)
        self.entered_ns = np.zeros(slots, dtype=np.int64)
        self.grace_period = grace_period
        self._free = list(range(slots - 1, -1, -1))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._current = None
        self._retired = deque()
        self.reclaimed_total = 0
        self.reclaimed_bytes_total = 0

    @property
    def current(self):
        """The published snapshot (for writers and status pages; readers use ``read()``)."""
        if self._current is None:
            raise RuntimeError("no snapshot published yet: call publish() first")
        return self._current

    @property
    def ready(self):
        """True once a first snapshot is published."""
        return self._current is not None

    def _slot(self):
        slot = getattr(self._local, "slot", None)
        if slot is None:
            with self._lock:
                if not self._free:
                    raise RuntimeError(f"all {len(self.slots)} RCU reader slots are taken; raise the slot count")
                slot = self._free.pop()
            self._local.slot = slot
        return slot

    @contextmanager
    def read(self):
        """Enter a read-side critical section and yield the current snapshot."""
        slot = self._slot()
        slots = self.slots
        self.entered_ns[slot] = time.monotonic_ns()
        while True:
            snap = self._current
            if snap is None:
                raise RuntimeError("no snapshot published yet: call publish() first")
            slots[slot] = snap.epoch
            # Re-check after marking: the writer may have swapped and reclaimed in between.
            if self._current is snap:
                break
        try:
            yield snap
        finally:
            slots[slot] = OFFLINE

    def publish(self, snapshot):
        """Make ``snapshot`` current and retire the previous one; returns its epoch."""
        with self._lock:
            old = self._current
            if old is not None and snapshot.epoch <= old.epoch:
                raise RuntimeError(f"epoch must grow: publishing {snapshot.epoch} after {old.epoch}")
            self._current = snapshot
            if old is not None:
                self._retired.append((old, time.monotonic_ns()))
        return snapshot.epoch

    def reclaim(self, *, force_grace=False):
        """Release retired snapshots no reader can still see; returns a ``Reclaimed``."""
        out = Reclaimed()
        now = time.monotonic_ns()
        grace_ns = 0 if force_grace else int(self.grace_period * 1e9)
        with self._lock:
            floor = min_active_epoch(self.slots)
            while self._retired:
                snap, retired_at = self._retired[0]
                if floor != -1 and floor <= snap.epoch:
                    break
                if now - retired_at < grace_ns:
                    break
                self._retired.popleft()
                out.epochs.append(snap.epoch)
                out.nbytes += snap.release()
                out.waits.append((now - retired_at) / 1e9)
        self.reclaimed_total += len(out.epochs)
        self.reclaimed_bytes_total += out.nbytes
        return out

    def stats(self):
        """Pending retired snapshots, active readers and the oldest reader's age."""
        now = time.monotonic_ns()
        with self._lock:
            pending = len(self._retired)
            oldest_retired = (now - self._retired[0][1]) / 1e9 if self._retired else 0.0
        return {
            "epoch": self._current.epoch if self._current is not None else 0,
            "pending_snapshots": pending,
            "oldest_pending_seconds": oldest_retired,
            "active_readers": int(np.count_nonzero(self.slots)),
            "oldest_reader_seconds": oldest_reader_since(self.slots, self.entered_ns, now) / 1e9,
            "grace_period_seconds": self.grace_period,
            "reclaimed_total": self.reclaimed_total,
            "reclaimed_bytes_total": self.reclaimed_bytes_total,
        }
