"""Hot reload of the config file: validate, diff, apply what can change live, report what needs a restart.

A reload never takes the service down: a file that fails validation is
rejected whole, logged at ERROR with every problem, counted, and the server
keeps running on the config it had.
"""

import asyncio
import logging
import os
import time
from contextlib import suppress

from valkyrie.config import ConfigError, display_value, load_config
from valkyrie.inotify import DirectoryWatch

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
    "server.max_batch_keys", "server.max_connections",
    "performance.performance_budget",
    "performance.memory.gc_threshold", "performance.memory.heap_profile_path",
    "performance.memory.enable_memory_profiling",
    "logging.level", "logging.format", "logging.file", "logging.performance_interval",
    "logging.file_max_size", "logging.file_backups",
    "caching.policies.max_cache_memory",
})


def _fingerprint(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


async def reload_config(state, trigger):
    """Reload ``state.config.source``; returns the result dict also kept as ``state.last_reload``."""
    async with state.reload_lock:
        return await _reload(state, trigger)


async def _reload(state, trigger):
    source = state.config.source
    result = {"trigger": trigger, "at": time.time(), "file": str(source) if source else None}
    if source is None:
        return _reject(state, result, ["the server runs on an in-memory config with no file to reload"],
                       what="is not possible")
    # Taken before the read: a write racing the read changes it again and the watcher reloads once more.
    state.config_fingerprint = _fingerprint(source)
    loop = asyncio.get_running_loop()
    try:
        new = state.file_config.repin(await loop.run_in_executor(None, load_config, source))
    except ConfigError as exc:
        return _reject(state, result, exc.problems)
    changed = state.file_config.diff(new)
    # An edited file key wins over a live override of it; overrides of keys the edit left alone stay.
    dropped = [k for k in state.overrides if k in changed]
    kept = [k for k in state.overrides if k not in changed]
    live = [k for k in changed if k in LIVE_KEYS]
    # Against what runs, not the previous file: an edit put back to the running value needs no restart.
    restart = [k for k in changed if k not in LIVE_KEYS and new[k] != state.config[k]]
    try:
        await state.apply_live({k: new[k] for k in live}, source=f"hot.reload ({trigger})")
    except ValueError as exc:
        return _reject(state, result, [str(exc)], what="could not be applied")
    state.file_config = new
    for k in dropped:
        state.overrides.pop(k, None)
    result.update(result="ok", changed=changed, applied=live, restart_required=restart,
                  overrides_dropped=dropped, overrides_kept=kept,
                  epoch=state.rcu.current.epoch if state.rcu.ready else 0)
    if restart:
        log.warning("WARN hot.reload of %s: %s changed; restart the server to apply %s", source, ", ".join(restart),
                    "it" if len(restart) == 1 else "them")
    log.info("hot.reload of %s (%s): validation passed, applied %s", source, trigger,
             ", ".join(f"{k}={display_value(k, new[k])}" for k in live) or "nothing (no live key changed)")
    return _finish(state, result)


def _reject(state, result, problems, what="rejected (Configuration validation failed)"):
    error = "; ".join(problems)
    result.update(result="error", error=error, problems=list(problems))
    log.error("ERROR hot.reload of %s (%s) %s: %s; still serving the previous config",
              result["file"], result["trigger"], what, error)
    return _finish(state, result)


def _finish(state, result):
    state.last_reload = result
    state.metrics.reloads.labels(result["result"]).inc()
    return result


async def _settled(path, step=0.05, limit=2.0):
    """The file's fingerprint once two looks ``step`` apart agree (a writer that truncates then writes is done)."""
    before = _fingerprint(path)
    for _ in range(int(limit / step)):
        await asyncio.sleep(step)
        now = _fingerprint(path)
        if now == before:
            break
        before = now
    return before


async def watch_config_file(state, interval=1.0):
    """Reload whenever the config file's inode, size or mtime differs from the last one read (editors often replace files).

    inotify on the file's directory wakes the check at once; every ``interval`` it runs anyway.
    """
    source = state.config.source
    if source is None:
        return
    if state.config_fingerprint is None:
        state.config_fingerprint = _fingerprint(source)
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    watch = DirectoryWatch.open(os.path.dirname(os.path.abspath(source)))
    name = os.path.basename(source)

    def on_event():
        # The directory may be busy (a route store's WAL beside the config): wake only for our file.
        if name in watch.drain():
            woken.set()

    if watch is not None:
        loop.add_reader(watch.fd, on_event)
    log.info("hot.reload: watching %s (%s, checked every %gs)", source,
             "inotify" if watch is not None else "no inotify here", interval)
    try:
        while True:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), interval)
            woken.clear()
            await _check_and_reload(state, source)
    finally:
        if watch is not None:
            loop.remove_reader(watch.fd)
            watch.close()


async def _check_and_reload(state, source):
    now = _fingerprint(source)
    # Gone (an editor mid-rename) or unchanged since the last reload by any trigger: nothing to do.
    if now is None or now == state.config_fingerprint:
        return
    # Compare again once writes settle: an edit reverted meanwhile (or a stat caught mid-write) needs no reload.
    settled = await _settled(source)
    if settled is None or settled == state.config_fingerprint:
        return
    try:
        await reload_config(state, "file watch")
    except Exception:
        # The watcher must outlive any one bad reload.
        log.exception("ERROR hot.reload by file watch failed unexpectedly; still watching %s", source)
