"""Pure-Python twins of ``jit.rcu``."""

OFFLINE = 0


def min_active_epoch(slots):
    """Smallest active epoch or -1."""
    active = [int(e) for e in slots if e != OFFLINE]
    return min(active) if active else -1


def readers_at_or_before(slots, epoch):
    """Count active readers at or before ``epoch``."""
    return sum(1 for e in slots if e != OFFLINE and e <= epoch)


def oldest_reader_since(slots, entered_ns, now_ns):
    """Age of the oldest active reader in ns."""
    ages = [now_ns - int(t) for e, t in zip(slots, entered_ns) if e != OFFLINE]
    return max(ages, default=0)
