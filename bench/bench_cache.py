"""Route cache on vs off for single ``GET /v1/route/{key}`` lookups through the real server.

One server process on the real table; the cache is switched live with
``PATCH /admin/tuning {"route_cache_size": 0 | 50000}`` between phases, which
alternate off/on/off/on so drift (other work on the machine) hits both sides.
Two key mixes: *hot* (2,000 IPv4 addresses inside table prefixes, sampled
with a Zipf-like skew: the case a cache exists for) and *cold* (200,000
mostly distinct addresses: nearly every lookup misses, so this shows what a
miss costs). Measured per phase: the server's own routing-decision latency
(its histogram, read from /metrics around the phase), client round trip, and
requests/s; the ratio on/off is the result. The cache only serves prefix and
default answers: exact keys are one FIT probe already.

    .venv/bin/python bench/bench_cache.py [--quick]
"""

import argparse
import asyncio
import random
import sys

import aiohttp
import numpy as np

from _live import (Histogram, Recorder, busy_note, metric, sample_addresses, scrape, server_config, single_lookups,
                   start_server, stop, us, wait_ready)


def hot_keys(n_distinct, total, seed=5):
    """``total`` lookups over ``n_distinct`` in-table addresses, rank r drawn with weight 1/r."""
    rng = random.Random(seed)
    distinct = [k for k in sample_addresses(2 * n_distinct, seed=seed) if not k.startswith("2")][:n_distinct]
    weights = [1 / (r + 1) for r in range(len(distinct))]
    return rng.choices(distinct, weights=weights, k=total)


async def phase(session, base, metrics_url, keys, seconds):
    """One measured phase: (server delta, client latencies, requests/s, errors)."""
    h0 = Histogram(await scrape(session, metrics_url))
    started = asyncio.get_running_loop().time()
    lat, errors = await single_lookups(session, base, keys, concurrency=8, seconds=seconds, limit=10**7)
    elapsed = asyncio.get_running_loop().time() - started
    h1 = Histogram(await scrape(session, metrics_url))
    return h1.since(h0), lat, len(lat) / elapsed, errors


async def run(args, out):
    seconds, rounds = (3, 1) if args.quick else (10, 2)
    config = server_config()
    proc, base, metrics_url = start_server(config)
    results = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            health = await wait_ready(session, base)
            out(f"server: real table, {health['routes']:,} routes; 8 concurrent clients; {seconds}s phases, "
                f"{rounds} rounds of off/on per mix")
            mixes = {"hot": hot_keys(2000, 200_000), "cold": sample_addresses(200_000, seed=9)}
            await single_lookups(session, base, mixes["cold"], concurrency=8, seconds=3, limit=3000)
            for mix, keys in mixes.items():
                for _ in range(rounds):
                    for size in (0, 50000):
                        async with session.patch(f"{base}/admin/tuning", json={"route_cache_size": size}) as r:
                            assert r.status == 200, await r.text()
                        before = await scrape(session, metrics_url)
                        res = await phase(session, base, metrics_url, keys, seconds)
                        after = await scrape(session, metrics_url)
                        hits = metric(after, "valkyrie_cache_hits_total") - metric(before, "valkyrie_cache_hits_total")
                        results.setdefault((mix, size), []).append((*res, hits))
            if note := busy_note({proc.pid}):
                out(note)
    finally:
        await stop(proc)
        config.unlink()
    summary = {}
    for (mix, size), runs in results.items():
        delta = [(le, sum(r[0][i][1] for r in runs)) for i, (le, _) in enumerate(runs[0][0])]
        lat = np.concatenate([r[1] for r in runs])
        rate = float(np.mean([r[2] for r in runs]))
        hits = sum(r[4] for r in runs)
        q = {p: Histogram.quantile(delta, p) for p in (0.5, 0.99)}
        summary[(mix, size)] = (q, np.percentile(lat, 99), rate)
        out(f"{mix:4} cache {'on ' if size else 'off'}: server P50 {us(q[0.5])} P99 {us(q[0.99])} | client P99 "
            f"{us(np.percentile(lat, 99))}, {rate:,.0f} req/s | hit ratio {hits / max(1, Histogram.count(delta)):.0%}; "
            f"failed {sum(r[3] for r in runs)}")
    helps = {}
    for mix in ("hot", "cold"):
        (q_off, c_off, r_off), (q_on, c_on, r_on) = summary[(mix, 0)], summary[(mix, 50000)]
        helps[mix] = r_on / r_off
        out(f"{mix:4} on/off: server P50 {q_on[0.5] / q_off[0.5]:.2f}x, P99 {q_on[0.99] / q_off[0.99]:.2f}x; "
            f"client P99 {c_on / c_off:.2f}x; throughput {r_on / r_off:.2f}x")
    verdict = "helps" if helps["hot"] >= 1.05 and helps["cold"] >= 0.97 else "does not help enough to keep"
    out(f"verdict: the cache {verdict} (kept when hot-key throughput gains >= 5% and cold keys lose < 3%)")
    return True


def main():
    """Run and record the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3s phases, one round (smoke test; not recorded)")
    args = p.parse_args()
    out = Recorder("cache.txt", args.quick)
    asyncio.run(run(args, out))
    out.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
