"""HTTP lookups end to end against a real server process on loopback.

Starts ``valkyrie-routing`` (the real ASN table when ``make tables`` has run,
else the example table) on ephemeral ports and, as the peer, pytricia serving
the same tables behind the same aiohttp front end (bench/peer_pytricia.py).
Measures single GET lookups (wrk when installed: client P50/P99, and
Valkyrie's own decision quantiles), JSON batches (both) and packed batches
(Valkyrie), with ratios against the peer and an answer agreement check.
Every load loop is bounded by a request count and a deadline.

    .venv/bin/python bench/bench_http.py [--quick]
"""

import argparse
import asyncio
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson

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
    # Bodies encoded up front (orjson for JSON), so the client spends its time on the wire, not encoding.
    bodies = [("\n".join(c)).encode() if packed else orjson.dumps({"keys": c}) for c in chunks]
    done, errors = 0, 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(rounds))

    async def worker():
        nonlocal done, errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            chunk = chunks[i % len(chunks)]
            if packed:
                async with session.post(f"{base}/v1/route/packed", data=bodies[i % len(bodies)]) as r:
                    out = await r.read()
                    ok = r.status == 200 and out.count(b"\n") == len(chunk) - 1
            else:
                async with session.post(f"{base}/v1/route", data=bodies[i % len(bodies)],
                                        headers={"Content-Type": "application/json"}) as r:
                    body = orjson.loads(await r.read())
                    ok = r.status == 200 and len(body["results"]) == len(chunk)
            if ok:
                done += len(chunk)
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


WRK_SCRIPT = """
local keys = {}
for line in io.lines(os.getenv("VALKYRIE_KEYS")) do keys[#keys + 1] = line end
local i = 0
request = function()
  i = i % #keys + 1
  return wrk.format("GET", "/v1/route/" .. keys[i])
end
"""


def start_peer():
    """The pytricia peer (bench/peer_pytricia.py) on an ephemeral port; (process, base_url) or None."""
    try:
        import pytricia  # noqa: F401
    except ImportError:
        return None
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "peer_pytricia.py")], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        return None
    return proc, f"http://127.0.0.1:{line.split()[1]}"


def pin(pid, cpu):
    """Pin every thread of ``pid`` to ``cpu`` (best effort), so client and server do not trade cores."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), {cpu})
    except OSError:
        pass


def wrk_single(base, keys, seconds, connections=8):
    """Single GETs from wrk (C, pinned to cpu 0): (req/s, client P50 s, client P99 s, errors) or None without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        keys_file, script = Path(tmp) / "keys.txt", Path(tmp) / "keys.lua"
        keys_file.write_text("\n".join(keys) + "\n")
        script.write_text(WRK_SCRIPT)
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "0", *cmd]
        res = subprocess.run(cmd, env=dict(os.environ, VALKYRIE_KEYS=str(keys_file)), capture_output=True,
                             text=True, timeout=seconds + 60)
    text = res.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {m.group(1): _seconds(m.group(2), m.group(3)) for m in re.finditer(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", text)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: .*", text)
    return rate, lat.get("50"), lat.get("99"), (socket_errors.group(0) if socket_errors else "0 socket errors"), \
        int(bad.group(1)) if bad else 0


def _seconds(value, unit):
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def agreement(valkyrie_results, peer_results):
    """How many answers name the same next hop and prefix (the peer serves the same real table)."""
    same = sum(a["next_hop"] == b["next_hop"] and a.get("prefix") == b.get("prefix")
               for a, b in zip(valkyrie_results, peer_results))
    return same, len(valkyrie_results)


async def run(args, out):
    real = REAL_V4.exists()
    config = REAL_CONFIG if real else REPO / "config" / "default.toml"
    proc, base, metrics_url = start_server(config)
    peer = start_peer() if real else None
    try:
        conn = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=conn) as session:
            health = await wait_ready(session, base)
            pin(proc.pid, 1)
            out(f"server: {config.name}, {health['routes']} routes, epoch {health['epoch']}; "
                f"peer: {'pytricia behind aiohttp (bench/peer_pytricia.py), same tables' if peer else 'none (needs make tables and pytricia)'}")
            if peer:
                await wait_ready_peer(session, peer[1])
                pin(peer[0].pid, 1)
            keys = sample_addresses(20000 if args.quick else 200000)
            servers = [("valkyrie", base)] + ([("pytricia", peer[1])] if peer else [])
            seconds = 5 if args.quick else 20
            single = {}
            for name, url in servers:
                await single_lookups(session, url, keys, 8, 500, 10)  # warm connections and caches
                got = wrk_single(url, keys, seconds)
                if got is None:
                    lat, elapsed, errors = await single_lookups(session, url, keys, 8, 2000 if args.quick else 30000, 60)
                    got = (len(lat) / elapsed, np.percentile(lat, 50), np.percentile(lat, 99), f"{errors} errors", 0)
                    tool = "aiohttp client (install wrk for a lighter client)"
                else:
                    tool = "wrk -t1 -c8 on cpu 0, server on cpu 1"
                single[name] = got
                out(f"{name:8s} single GET ({tool}): {got[0]:,.0f} req/s; client P50 {got[1] * 1e6:.0f}us "
                    f"P99 {got[2] * 1e6:.0f}us; {got[3]}, {got[4]} non-2xx (404 = no route)")
                if name == "valkyrie":
                    q = await server_quantiles(session, metrics_url)
                    out("valkyrie server routing-decision quantiles (last minute): " +
                        ", ".join(f"P{float(k) * 100:g} {v * 1e6:.1f}us" for k, v in sorted(q.items())) +
                        f"  (budget 82us: {'met' if q.get('0.99', 1) < 82e-6 else 'MISSED'})")
            if peer:
                out(f"single GET ratio valkyrie/pytricia: {single['valkyrie'][0] / single['pytricia'][0]:.2f}x req/s")
                sample = keys[:2000]
                answers = []
                for _name, url in servers:
                    async with session.post(f"{url}/v1/route", data=orjson.dumps({"keys": sample})) as r:
                        answers.append(orjson.loads(await r.read())["results"])
                same, total = agreement(*answers)
                out(f"answers agree with the peer on {same}/{total} keys (next hop and prefix)")
            for size in (1000, 10000):
                rates = {}
                for name, url in servers:
                    done, elapsed, errors = await batches(session, url, keys, size, 20 if args.quick else 200,
                                                          seconds, packed=False)
                    rates[name] = done / elapsed
                    out(f"{name:8s} JSON batch of {size}: {rates[name]:,.0f} lookups/s end to end; errors {errors}")
                if peer:
                    out(f"JSON batch of {size} ratio valkyrie/pytricia: {rates['valkyrie'] / rates['pytricia']:.1f}x")
            for size in (10000, 50000):
                done, elapsed, errors = await batches(session, base, keys, size, 20 if args.quick else 200, seconds,
                                                      packed=True)
                out(f"valkyrie packed batch of {size}: {done / elapsed:,.0f} lookups/s end to end; errors {errors}")
    finally:
        for p in [proc] + ([peer[0]] if peer else []):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


async def wait_ready_peer(session, base, timeout=120):
    """The peer answers as soon as it listens; make sure it does."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            async with session.get(f"{base}/v1/route/1.1.1.1") as r:
                if r.status in (200, 404):
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("peer not ready")


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
