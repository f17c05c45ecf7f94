#!/usr/bin/env python3
"""Start-up cost: kernel compilation (cold and cached), then process start to /health 200.

Compilation counts toward start-up: ``/health`` stays 503 until every kernel signature
is compiled and warm. Measured in fresh subprocesses:

- ``warm_kernels()`` with an empty Numba cache (first start on a machine), then with it cached;
- a real ``valkyrie-routing`` process on the example table and, after ``make tables``, on the
  real ASN table: seconds until it listens and until ``/health`` answers 200, and its RSS then;
- the peer: pytricia building the same real IPv4+IPv6 prefixes in the same run.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
GENERATED = REPO / "bench" / "data" / "generated"
VALKYRIE = REPO / ".venv" / "bin" / "valkyrie-routing"

WARM = "import time; t = time.perf_counter(); from valkyrie.warmup import warm_kernels; " \
       "s = warm_kernels(); print(time.perf_counter() - t, s)"


def compile_seconds(cache_dir=None):
    """(import + warm_kernels, warm_kernels alone) seconds in a fresh interpreter (``cache_dir``: Numba's cache)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", WARM], env=env, cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=900).stdout.split()
    return float(out[0]), float(out[1])


def time_to_healthy(config, timeout):
    """(seconds to listen, seconds to /health 200, RSS MiB at ready) for one server process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(VALKYRIE), "--config", str(config), "--port", "0", "--metrics-port", "0",
                             "--log-level", "warning"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        url = None
        deadline = t0 + timeout
        # --log-level warning hides the listen line; find the port from /proc instead of parsing logs.
        while url is None and time.perf_counter() < deadline:
            url = _listening_url(proc.pid)
            if proc.poll() is not None:
                raise SystemExit(f"server exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        listened = time.perf_counter() - t0
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            raise SystemExit(f"{config.name}: not healthy within {timeout}s")
        ready = time.perf_counter() - t0
        rss = _rss_mib(proc.pid)
        return listened, ready, rss
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _listening_url(pid):
    """The first TCP port ``pid`` listens on (the API port binds before the metrics port)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            m = re.match(r"socket:\[(\d+)\]", target)
            if m:
                inodes.add(m.group(1))
    except OSError:
        return None
    ports = []
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:
                ports.append((int(parts[9]), int(parts[1].split(":")[1], 16)))
    return f"http://127.0.0.1:{min(ports)[1]}" if ports else None


def _rss_mib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pytricia_build_seconds():
    """Seconds for pytricia to load the real IPv4 and IPv6 prefixes (None without the table or pytricia)."""
    try:
        from peer_pytricia import load
    except ImportError:
        return None
    t0 = time.perf_counter()
    load("ipv4.csv", 32)
    load("ipv6.csv", 128)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the cold compile (it takes half a minute or more)")
    args = ap.parse_args()
    print(f"bench_startup: {os.cpu_count()} CPUs")
    if not args.quick:
        with tempfile.TemporaryDirectory() as cache:
            total, kernels = compile_seconds(cache)
            print(f"compile, empty Numba cache:  import+warm {total:6.2f}s (warm_kernels {kernels:.2f}s)")
    compile_seconds()  # fills the project's own cache if it was empty
    total, kernels = compile_seconds()
    print(f"compile, cached:             import+warm {total:6.2f}s (warm_kernels {kernels:.2f}s)")
    configs = [REPO / "config" / "default.toml"]
    real = (GENERATED / "ipv4.csv").exists()
    if real:
        configs.append(REPO / "config" / "real-table.toml")
    else:
        print("real table not built (make tables): only the example table is timed")
    ready = {}
    for config in configs:
        listened, ready[config.name], rss = time_to_healthy(config, timeout=900)
        print(f"{config.name:18s} listening after {listened:5.2f}s, /health 200 after {ready[config.name]:5.2f}s, "
              f"RSS {rss:.0f} MiB")
    if real:
        peer = pytricia_build_seconds()
        if peer is not None:
            print(f"peer: pytricia builds the same IPv4+IPv6 prefixes in {peer:.2f}s; Valkyrie's whole start "
                  f"(config, kernels, CSV parse+validate, FIT+CRA build, store replay) is "
                  f"{ready['real-table.toml'] / peer:.1f}x that")
    return 0


if __name__ == "__main__":
    sys.exit(main())
