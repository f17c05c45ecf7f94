"""HTTP lookups end to end against a real server process on loopback.

Starts ``valkyrie-routing`` (the real ASN table when ``make tables`` has run,
else the example table) on ephemeral ports, then measures from one client
process: single GET lookups (client P50/P99 and the server's own quantiles),
JSON batches and packed batches (lookups/s end to end). Every load loop is
bounded by a request count and a deadline.

    .venv/bin/python bench/bench_http.py [--quick]
"""

import argparse
import asyncio
import ipaddress
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parent.parent
REAL_CONFIG = REPO / "config" / "real-table.toml"
REAL_V4 = REPO / "bench" / "data" / "generated" / "ipv4.csv"
RESULTS = REPO / "bench" / "results" / "http.txt"


def start_server(config):
    """Run the server on ephemeral loopback ports; return (process, base_url, metrics_url)."""
    cmd = [str(REPO / ".venv" / "bin" / "valkyrie-routing"), "--config", str(config), "--port", "0", "--metrics-port", "0",
           "--host", "127.0.0.1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    for line in proc.stderr:
        m = re.search(r"listening http=(\S+) metrics=(\S+)", line)
        if m:
            break
        if time.time() > deadline:
            proc.kill()
            raise SystemExit("server did not start")
    else:
        raise SystemExit(f"server exited with {proc.wait()}")
    # Keep draining stderr so the server never blocks on a full pipe.
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, m.group(1), m.group(2)


async def wait_ready(session, base, timeout=600):
    """Poll /health until 200."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            async with session.get(f"{base}/health") as r:
                if r.status == 200:
                    return await r.json()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("server not ready")


def sample_addresses(n, seed=7):
    """Half inside table prefixes, half uniformly random IPv4 addresses."""
    rng = random.Random(seed)
    inside = []
    if REAL_V4.exists():
        lines = REAL_V4.read_text().splitlines()[1:]
        for line in rng.sample(lines, min(n // 2, len(lines))):
            net = ipaddress.IPv4Network(line.split(",")[0])
            inside.append(str(net.network_address + rng.randrange(net.num_addresses)))
    else:
        inside = [f"198.51.100.{rng.randrange(256)}" for _ in range(n // 2)]
    rand = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(n - len(inside))]
    keys = inside + rand
    rng.shuffle(keys)
    return keys


async def single_lookups(session, base, keys, concurrency, total, seconds):
    """Concurrent GET /v1/route/{key}; returns (latencies_s, elapsed_s, errors)."""
    lat, errors = [], 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(total))

    async def worker():
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            async with session.get(f"{base}/v1/route/{keys[i % len(keys)]}") as r:
                await r.read()
                if r.status not in (200, 404):
                    errors += 1
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return np.array(lat), time.perf_counter() - t0, errors


async def batches(session, base, keys, size, rounds, seconds, packed, concurrency=2):
    """Concurrent batch lookups; returns (keys_resolved, elapsed_s, errors)."""
    chunks = [keys[i:i + size] for i in range(0, len(keys) - size + 1, size)] or [keys[:size]]
    bodies = [("\n".join(c)).encode() for c in chunks] if packed else None
    done, errors = 0, 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(rounds))

    async def worker():
        nonlocal done, errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            if packed:
                async with session.post(f"{base}/v1/route/packed", data=bodies[i % len(bodies)]) as r:
                    out = await r.read()
                    ok = r.status == 200 and out.count(b"\n") == size - 1
            else:
                async with session.post(f"{base}/v1/route", json={"keys": chunks[i % len(chunks)]}) as r:
                    body = await r.json()
                    ok = r.status == 200 and len(body["results"]) == size
            if ok:
                done += size
            else:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - t0, errors


async def server_quantiles(session, metrics_url):
    """The server's own live request-duration quantiles from /metrics."""
    async with session.get(metrics_url) as r:
        text = await r.text()
    out = {}
    for line in text.splitlines():
        m = re.match(r'valkyrie_routing_request_duration_window_seconds\{quantile="([0-9.]+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


async def run(args, out):
    config = REAL_CONFIG if REAL_V4.exists() else REPO / "config" / "default.toml"
    proc, base, metrics_url = start_server(config)
    try:
        conn = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=conn) as session:
            health = await wait_ready(session, base)
            out(f"server: {config.name}, {health['routes']} routes, epoch {health['epoch']}")
            keys = sample_addresses(20000 if args.quick else 200000)
            # Warm up connections and the server's caches.
            await single_lookups(session, base, keys, 8, 500, 10)
            n = 2000 if args.quick else 30000
            lat, elapsed, errors = await single_lookups(session, base, keys, 8, n, 60)
            q = await server_quantiles(session, metrics_url)
            out(f"single GET, 8 concurrent: {len(lat) / elapsed:,.0f} req/s; client P50 {np.percentile(lat, 50) * 1e6:.0f}us "
                f"P99 {np.percentile(lat, 99) * 1e6:.0f}us; errors {errors}")
            out("server routing-decision quantiles (last minute): " +
                ", ".join(f"P{float(k) * 100:g} {v * 1e6:.1f}us" for k, v in sorted(q.items())) +
                f"  (budget 82us: {'met' if q.get('0.99', 1) < 82e-6 else 'MISSED'})")
            for size in (1000, 10000):
                rounds = 20 if args.quick else 200
                done, elapsed, errors = await batches(session, base, keys, size, rounds, 60, packed=False)
                out(f"JSON batch of {size}: {done / elapsed:,.0f} lookups/s end to end; errors {errors}")
            for size in (10000, 50000):
                rounds = 20 if args.quick else 200
                done, elapsed, errors = await batches(session, base, keys, size, rounds, 60, packed=True)
                out(f"packed batch of {size}: {done / elapsed:,.0f} lookups/s end to end; errors {errors}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    """Run the HTTP benchmark and record it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short run")
    args = p.parse_args()
    lines = [f"$ {' '.join([os.path.relpath(sys.executable, REPO)] + sys.argv)}", f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} cores"]

    def out(line):
        print(line, flush=True)
        lines.append(line)

    for line in lines:
        print(line)
    asyncio.run(run(args, out))
    if not args.quick:
        RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
