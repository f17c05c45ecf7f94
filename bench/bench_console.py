"""Does watching the server slow it down? Lookup throughput with and without the operator console polling it.

Starts a real server (example table) on loopback, then alternates bounded rounds:
a load process posts packed batches (``POST /v1/route/packed``, keys one per line)
for a fixed time, alone or while a console process polls the same server once a
second (the real ``ConsoleApp`` rendering headless via ``run_test``, or just
``ValkyrieClient.poll()`` in a loop with ``--console-mode client``). Reports median
lookups/s of each, the overhead ratio, and what one console poll costs.

    .venv/bin/python bench/bench_console.py [--rounds 5] [--seconds 6] [--batch 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "console.txt"
EXAMPLE_ROUTES = REPO / "config" / "routes" / "example.toml"
# Keys of every kind the example table answers: prefixes v4/v6, names, exact keys, misses (default route).
KEYS = ["198.51.100.7", "198.51.100.200", "203.0.113.9", "2001:db8::1", "ci.build.linux.x86", "job-42",
        "192.0.2.1", "unknown.service"]


def write_config(tmp: Path) -> Path:
    """A loopback config on the example table with no route store (nothing written between runs)."""
    path = tmp / "bench.toml"
    path.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\n\n[routing]\nstore_path = ""\n'
                    f'route_files = ["{EXAMPLE_ROUTES}"]\n\n[observability.metrics]\nport = 0\n\n'
                    f'[logging]\nlevel = "warning"\nperformance_interval = "600s"\n')
    return path


# ---- child: load generator ----------------------------------------------------------------------


async def load_child(url: str, seconds: float, batch: int, concurrency: int) -> dict:
    """Post packed batches for ``seconds``; return lookups done and elapsed time."""
    import aiohttp

    body = "\n".join(KEYS[i % len(KEYS)] for i in range(batch)).encode()
    done = errors = 0
    stop = time.monotonic() + seconds

    async def worker(session):
        nonlocal done, errors
        while time.monotonic() < stop:
            async with session.post(f"{url}/v1/route/packed", data=body) as r:
                await r.read()
                if r.status == 200:
                    done += batch
                else:
                    errors += 1

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return {"lookups": done, "elapsed": time.monotonic() - started, "errors": errors}


# ---- child: console -----------------------------------------------------------------------------


async def console_child(url: str, metrics_url: str, seconds: float, mode: str, interval: float) -> dict:
    """Poll like the console does for ``seconds``; return polls made and CPU used."""
    from tui.client import Unreachable, ValkyrieClient

    client = ValkyrieClient(url, metrics_url)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    polls, poll_times = 0, []
    if mode == "app":
        from tui.app import ConsoleApp

        app = ConsoleApp(client, interval=interval)
        app.animation_level = "none"
        async with app.run_test(size=(120, 40)) as pilot:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                await pilot.pause(0.25)
            polls = len(app.main.query_one("LatencyPanel").history)
    else:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            t0 = time.monotonic()
            try:
                await client.poll()
                polls += 1
                poll_times.append(time.monotonic() - t0)
            except Unreachable:
                pass
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))
        await client.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"polls": polls, "cpu_seconds": cpu, "seconds": seconds,
            "poll_ms": statistics.median(poll_times) * 1e3 if poll_times else None}


# ---- parent -------------------------------------------------------------------------------------


def child(args: list[str]) -> subprocess.Popen:
    """Start this script in a child role; its JSON answer comes on stdout."""
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)


def answer(proc: subprocess.Popen, timeout: float) -> dict:
    """Wait (bounded) for a child's JSON answer."""
    out, _ = proc.communicate(timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


def scrape_cost(metrics_url: str, url: str, n: int = 50) -> tuple[float, float]:
    """Median wall ms of one /metrics scrape and of one /config/status answer, as seen by a client."""
    def median_ms(target):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            with urllib.request.urlopen(target, timeout=5) as r:
                r.read()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3
    return median_ms(metrics_url), median_ms(f"{url}/config/status")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds of each kind (default %(default)s)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of one round (default %(default)s)")
    p.add_argument("--batch", type=int, default=2000, help="keys per packed request (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default %(default)s)")
    p.add_argument("--interval", type=float, default=1.0, help="console poll period (default %(default)s)")
    p.add_argument("--console-mode", choices=("app", "client"), default="app",
                   help="app: the real ConsoleApp headless; client: ValkyrieClient.poll() in a loop")
    p.add_argument("--role", choices=("load", "console"), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--metrics-url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "load":
        print(json.dumps(asyncio.run(load_child(args.url, args.seconds, args.batch, args.concurrency))))
        return 0
    if args.role == "console":
        print(json.dumps(asyncio.run(console_child(args.url, args.metrics_url, args.seconds, args.console_mode,
                                                   args.interval))))
        return 0

    from tui.serve import ServedServer

    lines = [f"$ .venv/bin/python bench/bench_console.py {' '.join(sys.argv[1:])}".rstrip(),
             f"# {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} CPUs; {args.rounds} rounds x "
             f"{args.seconds:g}s each way, packed batches of {args.batch}, {args.concurrency} in flight, "
             f"console={args.console_mode} polling every {args.interval:g}s"]

    def out(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    for line in lines:
        print(line)
    with tempfile.TemporaryDirectory(prefix="valkyrie-bench-console-") as tmp:
        with ServedServer(write_config(Path(tmp))) as srv:
            srv.wait_ready(600)
            base = ["--url", srv.url, "--metrics-url", srv.metrics_url, "--seconds", str(args.seconds)]
            load_args = ["--role", "load", *base, "--batch", str(args.batch), "--concurrency", str(args.concurrency)]
            # Warm up connections and the server's caches before measuring.
            answer(child(load_args), args.seconds + 60)
            alone, watched, consoles = [], [], []
            for i in range(args.rounds):
                # Alternate the order so drift (thermal, caches) does not favour one side.
                for with_console in ((False, True) if i % 2 == 0 else (True, False)):
                    con = None
                    if with_console:
                        con = child(["--role", "console", "--url", srv.url, "--metrics-url", srv.metrics_url,
                                     "--seconds", str(args.seconds + 2.0), "--console-mode", args.console_mode,
                                     "--interval", str(args.interval)])
                        time.sleep(1.5)  # console started and polling before load begins
                    res = answer(child(load_args), args.seconds + 60)
                    rate = res["lookups"] / res["elapsed"]
                    (watched if with_console else alone).append(rate)
                    note = ""
                    if con is not None:
                        c = answer(con, args.seconds + 60)
                        consoles.append(c)
                        note = f"; console {c['polls']} polls, {c['cpu_seconds']:.2f} CPU s"
                    out(f"round {i + 1} {'with console' if with_console else 'alone       '}: "
                        f"{rate:,.0f} lookups/s ({res['errors']} errors){note}")
            metrics_ms, status_ms = scrape_cost(srv.metrics_url, srv.url)
    a, w = statistics.median(alone), statistics.median(watched)
    overhead = (a - w) / a * 100
    cpu = sum(c["cpu_seconds"] for c in consoles) / sum(c["seconds"] for c in consoles)
    out(f"median alone:        {a:,.0f} lookups/s")
    out(f"median with console: {w:,.0f} lookups/s")
    out(f"console overhead:    {overhead:+.2f}% of server throughput (budget 5%; negative = within noise)")
    out(f"console process CPU: {cpu * 100:.1f}% of one core while polling every {args.interval:g}s")
    out(f"one poll's server work: /metrics {metrics_ms:.2f} ms, /config/status {status_ms:.2f} ms (client-side median)")
    out(f"verdict: {'PASS' if a >= 100_000 and overhead <= 5.0 else 'FAIL'} "
        f"(server >= 100k lookups/s: {a >= 100_000}; overhead <= 5%: {overhead <= 5.0})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    return 0 if overhead <= 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
