"""Shared parts of the live benchmarks (rebuild, updates, cache): a real server process on the real table,
its own latency histogram read from /metrics, client-side load and the result file header.

Not a benchmark itself (``run_all.py`` runs ``bench_*.py`` only).
"""

import asyncio
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GENERATED = HERE / "data" / "generated"
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from bench_http import sample_addresses, start_server, wait_ready  # noqa: E402
from run_all import versions  # noqa: E402

__all__ = ["Recorder", "KeyRing", "merge_windows", "server_config", "exact_routes", "start_server", "wait_ready", "sample_addresses",
           "Histogram", "scrape", "single_lookups", "rss_bytes", "busy_note", "stop"]

BUDGET_US = 82.0


class Recorder:
    """Prints lines and keeps them for ``bench/results/<name>``, headed by the exact command and versions."""

    def __init__(self, name, quick):
        self.path = RESULTS / name
        self.quick = quick
        cmd = shlex.join([os.path.relpath(sys.executable, REPO), *[os.path.relpath(a, REPO) if a.endswith(".py") else a
                                                                   for a in sys.argv]])
        self.lines = []
        self(f"$ {cmd}")
        self(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}")
        for line in versions():
            self(f"# {line}")

    def __call__(self, line=""):
        print(line, flush=True)
        self.lines.append(line)

    def save(self):
        """Write the result file (full runs only: a --quick run is a smoke test, not a result)."""
        if self.quick:
            self("(--quick: not recorded)")
            return
        RESULTS.mkdir(exist_ok=True)
        self.path.write_text("\n".join(self.lines) + "\n")
        print(f"recorded in {os.path.relpath(self.path, REPO)}")


def exact_routes(n, nodes=256):
    """``bench/data/generated/exact-<n>.csv``: ``n`` exact keys ``sess-0000000``.. spread over real AS next hops."""
    path = GENERATED / f"exact-{n}.csv"
    if path.exists():
        return path
    ids = [line.split(",", 1)[0] for line in (GENERATED / "asn-nodes.csv").read_text().splitlines()[1:nodes + 1]]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("key,next_hop\n" + "".join(f"sess-{i:07d},{ids[i % len(ids)]}\n" for i in range(n)))
    tmp.rename(path)
    return path


class KeyRing:
    """Lookup keys handed out in fresh slices: a window never repeats a key the route cache may still hold.

    (A repeated key is answered from the cache in a fifth of the time, so windows that reuse keys
    would not be comparable with windows whose snapshots changed and emptied the cache.)
    """

    def __init__(self, keys):
        self.keys, self.at = keys, 0

    def take(self, rate, seconds):
        """Keys for ``seconds`` of lookups at ``rate``/s (with a margin), continuing where the last took off."""
        n = min(len(self.keys), int(rate * seconds * 1.1) + 16)
        out = [self.keys[(self.at + i) % len(self.keys)] for i in range(n)]
        self.at = (self.at + n) % len(self.keys)
        return out


def server_config(*, extra_routes=(), lockfree=None, routing=None):
    """A temporary config serving the real table (plus ``extra_routes`` files); no route store, free ports."""
    if not (GENERATED / "ipv4.csv").exists():
        raise SystemExit("the real table is missing: run `make tables` (bench/data/build_tables.py) first")
    files = [GENERATED / "asn-nodes.csv", GENERATED / "ipv4.csv", GENERATED / "ipv6.csv", *extra_routes]
    lines = ["[server]", 'host = "127.0.0.1"', "port = 0", "[routing]", 'store_path = ""',
             "route_files = [" + ", ".join(f'"{p}"' for p in files) + "]"]
    lines += [f"{k} = {_toml(v)}" for k, v in (routing or {}).items()]
    lines += ["[routing.lockfree]"] + [f"{k} = {_toml(v)}" for k, v in (lockfree or {}).items()]
    lines += ["[observability.metrics]", "port = 0"]
    fd, path = tempfile.mkstemp(prefix="valkyrie-bench-", suffix=".toml")
    os.write(fd, ("\n".join(lines) + "\n").encode())
    os.close(fd)
    return Path(path)


def _toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return f'"{v}"' if isinstance(v, str) else str(v)


class Histogram:
    """The server's cumulative ``valkyrie_routing_request_duration_seconds`` buckets at one scrape."""

    def __init__(self, text):
        self.buckets = []
        for m in re.finditer(r'^valkyrie_routing_request_duration_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M):
            self.buckets.append((float(m.group(1)), float(m.group(2))))
        self.sum = metric(text, "valkyrie_routing_request_duration_seconds_sum") or 0.0

    def mean_since(self, earlier):
        """Mean request time between ``earlier`` and this scrape (exact: from _sum, not bucket edges)."""
        count = Histogram.count(self.since(earlier))
        return (self.sum - earlier.sum) / count if count else float("nan")

    def since(self, earlier):
        """Per-bucket counts observed between ``earlier`` and this scrape: ``[(le, count)]``."""
        before = dict(earlier.buckets)
        cum = [(le, c - before.get(le, 0.0)) for le, c in self.buckets]
        return [(le, c - (cum[i - 1][1] if i else 0.0)) for i, (le, c) in enumerate(cum)]

    @staticmethod
    def quantile(delta, q):
        """Upper bucket edge holding quantile ``q`` of a ``since()`` delta (seconds; nan when empty)."""
        total = sum(c for _, c in delta)
        if not total:
            return float("nan")
        seen = 0.0
        for le, c in delta:
            seen += c
            if seen >= q * total:
                return le
        return float("inf")

    @staticmethod
    def interpolated(delta, q):
        """Quantile ``q`` of a ``since()`` delta interpolated linearly inside its bucket, as Prometheus'
        ``histogram_quantile`` does: finer than a bucket edge, exact only if the bucket fills evenly."""
        total = sum(c for _, c in delta)
        if not total:
            return float("nan")
        seen, lower = 0.0, 0.0
        for le, c in delta:
            if c and seen + c >= q * total:
                return lower + (le - lower) * (q * total - seen) / c if le != float("inf") else lower
            seen += c
            lower = le
        return float("inf")

    @staticmethod
    def count(delta):
        return int(sum(c for _, c in delta))


def merge_windows(windows):
    """Reader windows ``(server histogram delta, client latencies, errors, ...)`` as one ``(delta, latencies, errors)``."""
    delta = [(le, sum(w[0][i][1] for w in windows)) for i, (le, _) in enumerate(windows[0][0])]
    return delta, np.concatenate([w[1] for w in windows]), sum(w[2] for w in windows)


async def scrape(session, metrics_url):
    """The server's /metrics text."""
    async with session.get(metrics_url) as r:
        return await r.text()


def metric(text, name, labels=""):
    """One sample's value from Prometheus text, or None."""
    m = re.search(rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def single_lookups(session, base, keys, *, concurrency, seconds, limit, stamps=None, rate=None):
    """``GET /v1/route/{key}`` from ``concurrency`` workers for ``seconds`` (at most ``limit`` requests).

    ``rate`` (requests/s, all workers together) paces the load instead of running flat out:
    latency is then measured at a steady offered load, not while the client saturates the box.
    Returns ``(latencies_s, errors)``; ``stamps`` (a list) gets each request's start time when given.
    """
    lat, errors = [], 0
    start = time.perf_counter()
    deadline = start + seconds
    counter = iter(range(limit))
    gap = concurrency / rate if rate else 0.0

    async def worker(w):
        nonlocal errors
        due = start + w * gap / concurrency
        for i in counter:
            if gap:
                due += gap
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
            t0 = time.perf_counter()
            if t0 > deadline:
                return
            try:
                async with session.get(f"{base}/v1/route/{keys[i % len(keys)]}") as r:
                    await r.read()
                    if r.status not in (200, 404):
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            lat.append(time.perf_counter() - t0)
            if stamps is not None:
                stamps.append(t0)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return np.array(lat), errors


def rss_bytes(pid):
    """Resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def busy_note(own_pids=()):
    """A line naming other processes using the CPU now (their numbers make ours noisy), or ''."""
    load = os.getloadavg()[0]
    busy = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in own_pids or int(d.name) == os.getpid():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (d / "comm").read_text().strip()
            if not (d / "cmdline").read_bytes():
                continue  # a kernel thread, not other work
        except OSError:
            continue
        if stat[0] == "R":
            busy.append(comm)
    cores = os.cpu_count() or 1
    if load > 0.5 * cores or busy:
        return (f"NOTE: machine busy (load {load:.2f} on {cores} cores; running now: {', '.join(sorted(set(busy))) or '-'})"
                "; other work shares these cores, so treat absolute numbers as noisy")
    return ""


def us(seconds):
    """Seconds as microseconds text."""
    return f"{seconds * 1e6:.1f}us" if seconds == seconds else "n/a"


async def stop(proc):
    """SIGTERM the server and wait (kill after 20 s)."""
    proc.terminate()
    for _ in range(200):
        if proc.poll() is not None:
            return
        await asyncio.sleep(0.1)
    proc.kill()
