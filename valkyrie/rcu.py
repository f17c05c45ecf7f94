"""RCU over snapshots: lock-free readers, one writer that publishes, and deferred reclamation.

Protocol (after DPDK's QSBR): a reader marks its slot with the epoch of the
snapshot it is about to read, then re-checks that the snapshot is still the
current one; only then does it use it. A retired snapshot is released once no
slot holds its epoch and ``grace_period`` has passed since it was retired
(``aggressive`` skips the grace period: the epoch check alone is what makes
release safe, the grace period is slack for readers in other processes).
Because a reader always re-checks after marking, a writer that saw no slot
holding an epoch can never have released what the reader goes on to use.

A reader stuck in its critical section holds back only the one snapshot it
reads, never the newer retired ones; ``report_stalls()`` names it in a WARN
log line and counts it, instead of waiting on it silently.
"""

import logging
import threading
import time
from collections import deque

import numpy as np

from jit.rcu import OFFLINE, oldest_reader_since

__all__ = ["RcuDomain", "Reclaimed"]

log = logging.getLogger("valkyrie.rcu")


class Reclaimed:
    """What one reclamation pass released."""

    __slots__ = ("epochs", "nbytes", "waits")

    def __init__(self):
        self.epochs, self.nbytes, self.waits = [], 0, []

    def __repr__(self):
        return f"Reclaimed(epochs={self.epochs}, nbytes={self.nbytes})"


class _Reader:
    """A thread's reader slot as a context manager: a plain object, so entering costs no generator."""

    __slots__ = ("domain", "slot")

    def __init__(self, domain, slot):
        self.domain, self.slot = domain, slot

    def __enter__(self):
        domain, slot = self.domain, self.slot
        domain.entered_ns[slot] = time.monotonic_ns()
        while True:
            snap = domain._current
            if snap is None:
                raise RuntimeError("no snapshot published yet: call publish() first")
            domain.slots[slot] = snap.epoch
            # Re-check after marking: the writer may have swapped and reclaimed in between.
            if domain._current is snap:
                return snap

    def __exit__(self, *exc):
        self.domain.slots[self.slot] = OFFLINE
        return False


class RcuDomain:
    """Holds the current snapshot, the reader slots and the retired snapshots.

    ``read()`` is safe from any thread (one active read per thread at a time);
    ``publish()`` and ``reclaim()`` may be called from any thread and serialise
    on an internal lock. ``on_reclaimed(Reclaimed)``, when set, is called after
    every pass that released something, from the thread that ran it.
    """

    def __init__(self, *, slots=256, grace_period=0.005, aggressive=False, stall_after=1.0, on_reclaimed=None):
        self.slots = np.zeros(slots, dtype=np.int64)
        self.entered_ns = np.zeros(slots, dtype=np.int64)
        self.grace_period = grace_period
        self.aggressive = aggressive
        self.stall_after = stall_after
        self.on_reclaimed = on_reclaimed
        self._free = list(range(slots - 1, -1, -1))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._current = None
        self._retired = deque()
        self._stalled = {}  # slot -> entered_ns of the stall already reported
        self.reclaimed_total = 0
        self.reclaimed_bytes_total = 0
        self.stalls_total = 0

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

    def _reader(self):
        reader = getattr(self._local, "reader", None)
        if reader is None:
            with self._lock:
                if not self._free:
                    raise RuntimeError(f"all {len(self.slots)} RCU reader slots are taken; raise the slot count")
                slot = self._free.pop()
            reader = self._local.reader = _Reader(self, slot)
        return reader

    def read(self):
        """Enter a read-side critical section: ``with rcu.read() as snap: ...`` (one per thread at a time)."""
        return self._reader()

    def publish(self, snapshot):
        """Make ``snapshot`` current and retire the previous one; returns its epoch.

        With ``aggressive`` set, retired snapshots no reader holds are released
        right here instead of waiting for the next timed ``reclaim()``.
        """
        with self._lock:
            old = self._current
            if old is not None and snapshot.epoch <= old.epoch:
                raise RuntimeError(f"epoch must grow: publishing {snapshot.epoch} after {old.epoch}")
            self._current = snapshot
            if old is not None:
                self._retired.append((old, time.monotonic_ns()))
        if self.aggressive:
            self.reclaim(force_grace=True)
        return snapshot.epoch

    def reclaim(self, *, force_grace=False):
        """Release retired snapshots no reader can still see; returns a ``Reclaimed``."""
        out = Reclaimed()
        now = time.monotonic_ns()
        grace_ns = 0 if force_grace else int(self.grace_period * 1e9)
        with self._lock:
            # Epochs readers are inside now; a slot marked after this scan re-checks
            # the current snapshot, which is never among the retired ones.
            held = set(self.slots[self.slots != OFFLINE].tolist())
            keep, done = deque(), []
            while self._retired:
                snap, retired_at = self._retired[0]
                if now - retired_at < grace_ns:
                    break  # retired in order: every later one is younger still
                self._retired.popleft()
                if snap.epoch in held:
                    keep.append((snap, retired_at))
                    continue
                done.append(snap)
                out.epochs.append(snap.epoch)
                out.waits.append((now - retired_at) / 1e9)
            self._retired.extendleft(reversed(keep))
            # Each release is told what stays alive (including the rest of this pass), so memory
            # two snapshots share is counted once, by whichever goes last.
            live = [self._current, *(s for s, _ in self._retired)]
            for i, snap in enumerate(done):
                out.nbytes += snap.release(live + done[i + 1:])
            self.reclaimed_total += len(out.epochs)
            self.reclaimed_bytes_total += out.nbytes
        if out.epochs and self.on_reclaimed is not None:
            self.on_reclaimed(out)
        return out

    def stalled_readers(self, now_ns=None):
        """``[(slot, epoch, seconds)]`` for readers inside one snapshot longer than ``stall_after``."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        limit = int(self.stall_after * 1e9)
        active = np.flatnonzero(self.slots != OFFLINE)
        ages = now_ns - self.entered_ns[active]
        return [(int(s), int(self.slots[s]), a / 1e9) for s, a in zip(active.tolist(), ages.tolist()) if a > limit]

    def report_stalls(self):
        """WARN once per stuck reader (and note when it leaves); returns how many are stuck now."""
        stuck = self.stalled_readers()
        now = {slot: (epoch, age) for slot, epoch, age in stuck}
        for slot, (epoch, age) in now.items():
            entered = int(self.entered_ns[slot])
            if self._stalled.get(slot) != entered:
                self._stalled[slot] = entered
                self.stalls_total += 1
                log.warning("WARN RCU reader stalled: slot %d has been inside epoch %d for %.3fs; that snapshot "
                            "cannot be reclaimed until it leaves (%d retired pending)",
                            slot, epoch, age, len(self._retired))
        for slot in [s for s in self._stalled if s not in now]:
            del self._stalled[slot]
            log.info("RCU reader in slot %d left its stalled critical section", slot)
        return len(now)

    def stats(self):
        """Pending retired snapshots, active readers, the oldest reader's age and stalls."""
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
            "stalled_readers": len(self.stalled_readers(now)),
            "stalls_total": self.stalls_total,
            "grace_period_seconds": self.grace_period,
            "aggressive_reclaim": self.aggressive,
            "reclaimed_total": self.reclaimed_total,
            "reclaimed_bytes_total": self.reclaimed_bytes_total,
        }
