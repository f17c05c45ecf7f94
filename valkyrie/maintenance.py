"""Memory maintenance the guide triggers with signals: heap profiles (SIGUSR1) and forced reclamation (SIGUSR2)."""

import ctypes
import ctypes.util
import gc
import logging
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

from valkyrie.system import rss_bytes

__all__ = ["write_heap_profile", "force_reclaim"]

log = logging.getLogger("valkyrie.memory")


def _malloc_trim():
    """Return freed heap pages to the OS (glibc only); True when it released something."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def write_heap_profile(state, path=None):
    """Write RSS, table bytes, RCU state and the top allocations to ``path``; returns the path."""
    path = Path(path or state.config["performance.memory.heap_profile_path"]
                or Path(tempfile.gettempdir()) / f"valkyrie-heap-{os.getpid()}.txt")
    lines = [f"# valkyrie heap profile {time.strftime('%Y-%m-%dT%H:%M:%S')}",
             f"rss_bytes {rss_bytes()}"]
    if state.rcu.ready:
        snap = state.rcu.current
        lines.append(f"table_bytes {snap.nbytes()}")
        lines.append(f"epoch {snap.epoch}")
        for name, table in (("fit", snap.exact), ("cra_ipv4", snap.ipv4), ("cra_ipv6", snap.ipv6), ("cra_name", snap.names)):
            lines.append(f"{name}_bytes {table.stats()['nbytes']}")
    for key, value in state.rcu.stats().items():
        lines.append(f"rcu_{key} {value}")
    lines.append(f"gc_objects {len(gc.get_objects())}")
    if tracemalloc.is_tracing():
        lines.append("# top allocations (tracemalloc, by line)")
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:25]:
            lines.append(f"{stat.size} bytes in {stat.count} blocks at {stat.traceback}")
    else:
        lines.append("# allocation tracing is off: set [performance.memory] enable_memory_profiling = true")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    log.info("heap profile written to %s (rss %.1f MB)", path, rss_bytes() / 1e6)
    return path


def force_reclaim(state):
    """Run GC, reclaim every retired snapshot readers have left, trim malloc; returns what was freed."""
    before = rss_bytes()
    collected = gc.collect()
    done = state.rcu.reclaim(force_grace=True)
    trimmed = _malloc_trim()
    after = rss_bytes()
    result = {
        "gc_collected_objects": collected,
        "reclaimed_snapshots": len(done.epochs),
        "reclaimed_bytes": done.nbytes,
        "malloc_trimmed": trimmed,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_freed_bytes": max(0, before - after),
    }
    log.info("forced reclamation freed: %d gc objects, %d snapshots (%d bytes), rss %.1f -> %.1f MB",
             collected, len(done.epochs), done.nbytes, before / 1e6, after / 1e6)
    return result
