"""Hot reload of the config file: validate, diff, apply what can change live, report what needs a restart.

A reload never takes the service down: a file that fails validation is
rejected whole, logged at ERROR with every problem, counted, and the server
keeps running on the config it had.
"""

import asyncio
import logging
import os
import time

from valkyrie.config import ConfigError, load_config

__all__ = ["LIVE_KEYS", "reload_config", "watch_config_file"]

log = logging.getLogger("valkyrie.hot.reload")

# Keys applied to the running process without a restart; every other key changed
# in the file is reported as needing one and keeps its running value.
LIVE_KEYS = frozenset({
    "routing.lockfree.fit_load_factor", "routing.lockfree.fit_capacity",
    "routing.lockfree.rcu_grace_period", "routing.lockfree.rcu_max_pending_updates",
    "routing.lockfree.rcu_aggressive_reclaim", "routing.lockfree.cra_defrag_threshold",
    "routing.route_cache_size", "routing.route_cache_ttl",
    "routing.connection_pool_size", "routing.max_concurrent_requests",
    "server.max_batch_keys",
    "performance.performance_budget",
    "performance.memory.gc_threshold", "performance.memory.heap_profile_path",
    "performance.memory.enable_memory_profiling",
    "logging.level", "logging.format", "logging.file", "logging.performance_interval",
})


def _fingerprint(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


async def reload_config(state, trigger):
    """Reload ``state.config.source``; returns the result dict also kept as ``state.last_reload``."""
    source = state.config.source
    started = time.time()
    result = {"trigger": trigger, "at": started, "file": str(source) if source else None}
    if source is None:
        result.update(result="error", error="the server runs on an in-memory config with no file to reload")
        return _finish(state, result)
    loop = asyncio.get_running_loop()
    try:
        new = await loop.run_in_executor(None, load_config, source)
    except ConfigError as exc:
        result.update(result="error", error=str(exc), problems=exc.problems)
        log.error("ERROR hot.reload of %s rejected, still serving the previous config: %s", source,
                  "; ".join(exc.problems))
        return _finish(state, result)
    changed = state.file_config.diff(new)
    # An edited file key wins over a live override of it; overrides of keys the edit left alone stay.
    dropped = [k for k in state.overrides if k in changed]
    kept = [k for k in state.overrides if k not in changed]
    live = [k for k in changed if k in LIVE_KEYS]
    restart = [k for k in changed if k not in LIVE_KEYS]
    try:
        await state.apply_live({k: new[k] for k in live}, source="file")
    except ValueError as exc:
        result.update(result="error", error=str(exc))
        log.error("ERROR hot.reload of %s could not be applied: %s", source, exc)
        return _finish(state, result)
    state.file_config = new
    for k in dropped:
        state.overrides.pop(k, None)
    result.update(result="ok", changed=changed, applied=live, restart_required=restart,
                  overrides_dropped=dropped, overrides_kept=kept,
                  epoch=state.rcu.current.epoch if state.rcu.ready else 0)
    if restart:
        log.warning("WARN hot.reload of %s: %s changed but only take effect after a restart", source, ", ".join(restart))
    log.info("hot.reload of %s (%s): applied %s", source, trigger, ", ".join(live) or "nothing (no live key changed)")
    return _finish(state, result)


def _finish(state, result):
    state.last_reload = result
    state.metrics.reloads.labels(result["result"]).inc()
    return result


async def watch_config_file(state, interval=1.0):
    """Reload whenever the config file's inode, size or mtime changes (editors often replace files)."""
    source = state.config.source
    if source is None:
        return
    seen = _fingerprint(source)
    while True:
        await asyncio.sleep(interval)
        now = _fingerprint(source)
        if now != seen and now is not None:
            seen = now
            # Let a writer that truncates then writes finish before reading.
            await asyncio.sleep(0.05)
            seen = _fingerprint(source) or seen
            await reload_config(state, "file watch")
