"""Process-wide settings applied before serving: jemalloc (by re-exec) and CPU affinity."""

import ctypes.util
import logging
import os
import sys
import threading
from pathlib import Path

from valkyrie.system import usable_cpus

__all__ = ["apply_process_settings", "find_jemalloc", "pin_cpus", "background_thread"]

log = logging.getLogger("valkyrie.process")

_JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                   "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")
_REEXEC_MARK = "VALKYRIE_JEMALLOC_REEXEC"


def find_jemalloc():
    """Path of libjemalloc on this machine, or None."""
    for path in _JEMALLOC_PATHS:
        if Path(path).exists():
            return path
    name = ctypes.util.find_library("jemalloc")
    return name if name and Path(name).is_absolute() else None


def _reexec_command(argv):
    """(program, argv) that restarts this command: the console script itself when that is what ran."""
    script = sys.argv[0] if sys.argv else ""
    # Re-running the script keeps the process name and command line, so ps, `pgrep -f valkyrie-routing`
    # and systemd see the same process after the re-exec as before it.
    if script and not script.endswith(".py") and os.path.isfile(script) and os.access(script, os.X_OK):
        return script, [script, *argv]
    return sys.executable, [sys.executable, "-m", "valkyrie.cli", *argv]


def apply_process_settings(config, argv):
    """Honour ``enable_jemalloc`` (re-exec with LD_PRELOAD; never returns then) and ``cpu_cores``."""
    if config["enable_jemalloc"] and "jemalloc" not in os.environ.get("LD_PRELOAD", ""):
        lib = find_jemalloc()
        if lib is None:
            log.warning("WARN enable_jemalloc = true but libjemalloc is not installed (apt-get install libjemalloc2); "
                        "continuing with the system allocator")
        elif os.environ.get(_REEXEC_MARK):
            log.warning("WARN jemalloc preload did not take effect; continuing with the system allocator")
        else:
            env = dict(os.environ, LD_PRELOAD=" ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")])),
                       **{_REEXEC_MARK: "1"})
            log.info("re-executing with %s preloaded", lib)
            sys.stderr.flush()
            os.execve(*_reexec_command(argv), env)
    if config["cpu_cores"]:
        pin_cpus(config["cpu_cores"])


def _threads():
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def pin_cpus(cores):
    """Pin every thread of this process to ``cores`` (CPUs this machine lacks are named and skipped)."""
    usable = set(usable_cpus())
    missing = sorted(set(cores) - usable)
    wanted = sorted(set(cores) & usable)
    if missing:
        log.warning("WARN cpu_cores names CPU(s) %s this machine does not offer (it has %s)", missing, sorted(usable))
    if not wanted:
        log.warning("WARN none of cpu_cores %s is available; running unpinned", list(cores))
        return
    # sched_setaffinity(0) pins only the calling thread; threads started at import (BLAS, Numba) need their own call.
    for tid in _threads():
        try:
            os.sched_setaffinity(tid, wanted)
        except OSError as exc:
            log.warning("WARN cannot pin thread %d to CPUs %s: %s", tid, wanted, exc.strerror)
    log.info("pinned to CPUs %s", sorted(os.sched_getaffinity(0)))


# Niceness of the writer thread: its kernels run without the GIL, and when they compete with the
# event loop for a core the loop's lookups go first. Threads that hold the GIL throughout (the PUT
# parser) keep the process's priority: lowered, they are preempted while every thread waits on them.
BACKGROUND_NICE = 10


def background_thread():
    """Lower the calling thread's CPU priority (a ThreadPoolExecutor initializer for background work)."""
    try:
        # On Linux a thread id names one thread here, not the whole process.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (OSError, AttributeError):
        pass  # not Linux, or not permitted: the thread keeps the process's priority
