"""Memory maintenance the guide triggers with signals: heap profiles (SIGUSR1) and forced reclamation (SIGUSR2).

Also the ``gc_threshold`` watch (the same reclamation, forced when RSS passes the
threshold) and the switch for allocation tracing (``enable_memory_profiling``).
"""

import asyncio
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

__all__ = ["write_heap_profile", "force_reclaim", "set_memory_profiling", "watch_memory"]

# Frames kept per traced allocation: enough to see the caller of numpy/aiohttp internals.
TRACE_FRAMES = 8

log = logging.getLogger("valkyrie.memory")


def _malloc_trim():
    """Return freed heap pages to the OS (glibc only); True when it released something."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def set_memory_profiling(enabled):
    """Start or stop tracemalloc so heap profiles can list the top allocations."""
    if enabled and not tracemalloc.is_tracing():
        tracemalloc.start(TRACE_FRAMES)
    elif not enabled and tracemalloc.is_tracing():
        tracemalloc.stop()


def write_heap_profile(state, path=None):
    """Write RSS, table bytes, RCU state and the top allocations to ``path``; returns the path.

    Raises ``OSError`` when the file cannot be written.
    """
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


def force_reclaim(state, reason="requested"):
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
    log.info("forced reclamation (%s) freed: %d gc objects, %d snapshots (%d bytes), malloc_trim %s, rss %.1f -> %.1f MB",
             reason, collected, len(done.epochs), done.nbytes, "released pages" if trimmed else "released nothing",
             before / 1e6, after / 1e6)
    return result


async def watch_memory(state, every=5.0):
    """Force reclamation whenever RSS is above ``gc_threshold`` (checked every ``every`` seconds)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        threshold, rss = state.config["performance.memory.gc_threshold"], rss_bytes()
        if rss > threshold:
            log.warning("WARN rss %.1f MB is above gc_threshold %.1f MB: forcing GC and RCU reclamation",
                        rss / 1e6, threshold / 1e6)
            await loop.run_in_executor(None, force_reclaim, state, "gc_threshold")
