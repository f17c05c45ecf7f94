"""Process settings on a real server process: ``enable_jemalloc`` re-execs with jemalloc preloaded (or warns
and continues without it), ``cpu_cores`` pins every thread, ``gc_threshold`` forces reclamation."""

import logging
import os
from pathlib import Path

import pytest

from tests.realserver import RealServer, write_config
from valkyrie import process
from valkyrie.config import parse_config
from valkyrie.process import apply_process_settings, find_jemalloc, pin_cpus

JEMALLOC = find_jemalloc()
CPUS = sorted(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def pinned(tmp_path_factory):
    """A ready server with enable_jemalloc, cpu_cores = [first CPU, a CPU nobody has] and a 1MB gc_threshold."""
    directory = tmp_path_factory.mktemp("process")
    config = write_config(directory, sections={
        "": {"enable_jemalloc": True, "cpu_cores": [CPUS[0], 4096]},
        "performance.memory": {"gc_threshold": "1MB"},
    })
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "VALKYRIE_JEMALLOC_REEXEC")}
    server = RealServer(config)
    server.env = env
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _environ(pid):
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


@pytest.mark.skipif(JEMALLOC is None, reason="libjemalloc is not installed here (apt-get install -y libjemalloc2)")
def test_jemalloc_is_preloaded_by_re_exec_when_present(pinned):
    pinned.wait_for_line(rf"re-executing with {JEMALLOC} preloaded")
    # Same pid (execve), now with the library mapped and the preload in its environment.
    maps = Path(f"/proc/{pinned.pid}/maps").read_text()
    assert JEMALLOC in maps or os.path.realpath(JEMALLOC) in maps
    env = _environ(pinned.pid)
    assert JEMALLOC in env["LD_PRELOAD"] and env["VALKYRIE_JEMALLOC_REEXEC"] == "1"
    # The re-exec keeps the command: `pgrep -f valkyrie-routing` and ps find the same process as before.
    cmdline = Path(f"/proc/{pinned.pid}/cmdline").read_bytes().split(b"\0")
    assert any(arg.endswith(b"/valkyrie-routing") for arg in cmdline), cmdline
    assert Path(f"/proc/{pinned.pid}/comm").read_text().strip() == "valkyrie-routin"
    assert not any("jemalloc" in line and "WARN" in line for line in pinned.lines)


@pytest.mark.skipif(JEMALLOC is not None, reason="libjemalloc is installed here; "
                                                 "test_absent_jemalloc_warns_and_continues covers the absent path")
def test_without_jemalloc_the_server_warns_and_serves(pinned):
    line = pinned.wait_for_line(r"WARN enable_jemalloc = true but libjemalloc is not installed")
    assert "continuing with the system allocator" in line
    assert "jemalloc" not in Path(f"/proc/{pinned.pid}/maps").read_text()


@pytest.mark.skipif(len(CPUS) < 2, reason="pinning to one CPU of one is not observable")
def test_cpu_cores_pins_every_thread(pinned):
    tids = os.listdir(f"/proc/{pinned.pid}/task")
    assert len(tids) > 1
    for tid in tids:
        assert os.sched_getaffinity(int(tid)) == {CPUS[0]}, f"thread {tid} is not pinned"
    pinned.wait_for_line(rf"cpu_cores names CPU\(s\) \[4096\] this machine does not offer")
    pinned.wait_for_line(rf"pinned to CPUs \[{CPUS[0]}\]")


def test_the_writer_thread_runs_at_a_lower_cpu_priority(pinned):
    base = os.getpriority(os.PRIO_PROCESS, 0)  # the server inherits this test's niceness
    nice = {int(tid): os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pinned.pid}/task")}
    assert nice[pinned.pid] == base, "the event loop (main thread) keeps the process's priority"
    # The writer built the tables at boot, so its thread exists by now (the PUT parser keeps the base priority).
    assert list(nice.values()).count(min(19, base + process.BACKGROUND_NICE)) >= 1, nice


def test_gc_threshold_forces_reclamation(pinned):
    # RSS is far above 1MB, so the memory watch forces a reclamation within its 5s period.
    line = pinned.wait_for_line(r"WARN rss [\d.]+ MB is above gc_threshold 1\.0 MB: forcing GC and RCU reclamation")
    assert "WARNING valkyrie.memory" in line
    pinned.wait_for_line(r"forced reclamation \(gc_threshold\) freed: \d+ gc objects")


# ---- in-process: the paths a real process here cannot take --------------------------------------


@pytest.fixture
def process_log():
    """WARNING+ records of ``valkyrie.process`` (its parent may not propagate to pytest's handlers)."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("valkyrie.process")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture
def no_exec(monkeypatch):
    """Fail instead of replacing the test process should the code under test exec."""
    def refuse(*args):
        raise AssertionError(f"unexpected exec {args[:2]}")

    monkeypatch.setattr(os, "execve", refuse)


def test_absent_jemalloc_warns_and_continues(monkeypatch, process_log, no_exec):
    # The one boundary faked here: which libraries this machine has installed.
    monkeypatch.setattr(process, "_JEMALLOC_PATHS", ())
    monkeypatch.setattr(process.ctypes.util, "find_library", lambda name: None)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert find_jemalloc() is None
    apply_process_settings(parse_config({"enable_jemalloc": True}), [])
    [record] = [r for r in process_log if r.levelno == logging.WARNING]
    assert record.getMessage().startswith("WARN enable_jemalloc = true but libjemalloc is not installed")


@pytest.mark.skipif(JEMALLOC is None, reason="libjemalloc is not installed here (apt-get install -y libjemalloc2)")
def test_a_preload_that_did_not_take_is_reported_not_retried(monkeypatch, process_log, no_exec):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setenv("VALKYRIE_JEMALLOC_REEXEC", "1")
    apply_process_settings(parse_config({"enable_jemalloc": True}), [])
    assert any("jemalloc preload did not take effect" in r.getMessage() for r in process_log)


def test_disabled_jemalloc_and_no_cpu_cores_change_nothing(process_log, no_exec):
    before = os.sched_getaffinity(0)
    apply_process_settings(parse_config({}), [])
    assert os.sched_getaffinity(0) == before and process_log == []


def test_cpu_cores_this_machine_lacks_leave_affinity_alone(process_log):
    before = os.sched_getaffinity(0)
    pin_cpus([4096, 4097])
    assert os.sched_getaffinity(0) == before
    messages = [r.getMessage() for r in process_log]
    assert "WARN cpu_cores names CPU(s) [4096, 4097] this machine does not offer" in messages[0]
    assert messages[1] == "WARN none of cpu_cores [4096, 4097] is available; running unpinned"
