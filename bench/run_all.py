#!/usr/bin/env python3
"""Run every bench/bench_*.py in order, teeing all output to bench/results/all-<date>.txt.

The log starts with the exact command line and the machine/library versions, so a result file
can be compared with another one from a different run. Extra arguments (e.g. ``--quick``) are
passed to every benchmark. Exit status is non-zero if any benchmark failed.
"""

import argparse
import datetime
import glob
import os
import platform
import shlex
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

# Known benchmarks run first in this order (cheap to expensive); any other bench_*.py follows.
ORDER = ["bench_fit.py", "bench_cra_micro.py", "bench_cra_real.py", "bench_http.py"]


def cpu_model():
    """CPU model name from /proc/cpuinfo, else platform's best guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions():
    """Lines describing the interpreter, the key libraries and the machine."""
    lines = [f"python     {sys.version.split()[0]} ({sys.executable})"]
    for mod in ("numpy", "numba", "pytricia", "geoip2fast", "xxhash", "radix"):
        try:
            m = __import__(mod)
            v = getattr(m, "__version__", None)
            if v is None:
                from importlib.metadata import version

                dist = {"radix": "py-radix"}.get(mod, mod)
                v = version(dist)
            lines.append(f"{mod:10} {v}")
        except Exception:  # a missing optional peer is information, not an error
            lines.append(f"{mod:10} (not installed)")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = "n/a"
    lines.append(f"cpu        {cpu_model()}; os.cpu_count()={os.cpu_count()}, usable={affinity}")
    lines.append(f"platform   {platform.platform()}")
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        lines.append(f"git        {rev}{' (uncommitted changes)' if dirty else ''}")
    except (OSError, subprocess.SubprocessError):
        pass
    return lines


def discover(only):
    """Benchmark scripts to run, in ORDER first, then the rest alphabetically."""
    present = {os.path.basename(p) for p in glob.glob(os.path.join(HERE, "bench_*.py"))}
    names = [n for n in ORDER if n in present] + sorted(present - set(ORDER))
    if only:
        names = [n for n in names if any(o in n for o in only)]
    return names


class Tee:
    """Write to stdout and a log file at once."""

    def __init__(self, path):
        self.fh = open(path, "w", encoding="utf-8")

    def write(self, text):
        sys.stdout.write(text)
        sys.stdout.flush()
        self.fh.write(text)
        self.fh.flush()

    def close(self):
        self.fh.close()


def accepts_quick(script):
    """Whether a benchmark script declares a --quick option (all should; say so when one doesn't)."""
    with open(os.path.join(HERE, script), encoding="utf-8") as fh:
        return '"--quick"' in fh.read()


def run_one(tee, script, extra, timeout):
    """Run one benchmark as a subprocess, streaming its output; return its exit status."""
    if "--quick" in extra and not accepts_quick(script):
        # Passing it would only make argparse fail; a full run is still a result.
        tee.write(f"[run_all] {script} has no --quick option: running it in full\n")
        extra = [a for a in extra if a != "--quick"]
    cmd = [sys.executable, "-u", os.path.join(HERE, script), *extra]
    tee.write(f"\n{'=' * 78}\n$ {shlex.join(cmd)}\n{'=' * 78}\n")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    # A watchdog, not a check between lines: a silent, hung benchmark must be bounded too.
    killed = threading.Event()

    def kill():
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        for line in proc.stdout:
            tee.write(line)
        rc = proc.wait()
    finally:
        timer.cancel()
    if killed.is_set():
        tee.write(f"[run_all] {script}: killed after {timeout:.0f}s\n")
    tee.write(f"[run_all] {script}: exit {rc} in {time.perf_counter() - t0:.1f}s\n")
    return rc


def main(argv=None):
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    ap.add_argument("--only", action="append", default=[],
                    help="run only scripts whose name contains this (repeatable)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    ap.add_argument("--out", help="log file (default bench/results/all-<date>.txt)")
    args = ap.parse_args(argv)

    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d")
    out = args.out or os.path.join(RESULTS, f"all-{stamp}{'-quick' if args.quick else ''}.txt")
    tee = Tee(out)
    try:
        tee.write(f"$ {shlex.join([sys.executable, *sys.argv])}\n")
        tee.write(f"# {datetime.datetime.now().isoformat(timespec='seconds')}\n")
        for line in versions():
            tee.write(line + "\n")
        scripts = discover(args.only)
        tee.write(f"benchmarks: {', '.join(scripts) or '(none found)'}\n")
        extra = ["--quick"] if args.quick else []
        failed = [s for s in scripts if run_one(tee, s, extra, args.timeout) != 0]
        tee.write(f"\n[run_all] {len(scripts) - len(failed)}/{len(scripts)} ok"
                  f"{'; failed: ' + ', '.join(failed) if failed else ''}; log: {out}\n")
    finally:
        tee.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
