"""Sustained route updates with readers running: >= 45k updates/s, reader P99 within 10% of idle, RSS flat over 1M updates.

A real server process serves the real 509k-prefix table. Readers: 4 concurrent
clients doing single ``GET /v1/route/{addr}`` lookups at a steady 2,000/s in total
(an offered load, so their latency is the server's, not a saturated client's). Writers: 4 concurrent
clients sending ``PUT /v1/routes`` batches of 5,000 changes each (4,000
next-hop changes of random existing IPv4 prefixes of the real table, 1,000
upserts of exact keys from a pool of 20,000; every one changes a value), pre-encoded so
the client spends its time sending. Phases, all in this run: readers alone (the baseline); readers
with writers flat out (4 PUTs in flight, so the writer thread always has the next one) until 1M
updates are applied, which measures capacity; readers with writers paced at a steady ``--rate``
(default 50,000 updates/s: the target's 45k with a margin) until another 1M are applied, which
is the sustained-load target; then readers alone again. RSS of the server is sampled twice a
second while writers run. Reader latency is measured on the server (its routing-decision
histogram, per phase) and on the client (round trip); no reader window repeats a key, so the route cache answers none of them and idle windows
are not flattered by it. The server runs with the shipped defaults
(``rcu_grace_period`` 5ms, ``rcu_max_pending_updates`` 5000, ``cra_defrag_threshold`` 0.25);
``--max-pending N`` changes how many changes one snapshot coalesces (the guide's knob for
update-heavy routers).

    .venv/bin/python bench/bench_updates.py [--quick] [--rate 50000] [--max-pending 20000]
"""

import argparse
import asyncio
import random
import sys
import time

import aiohttp
import numpy as np
import orjson

from _live import (GENERATED, Histogram, KeyRing, Recorder, busy_note, merge_windows, metric, rss_bytes,
                   sample_addresses, scrape, server_config, single_lookups, start_server, stop, us, wait_ready)

BATCH = 5000
EXACT_PER_BATCH = 1000
EXACT_POOL = 20000
WRITERS = 4  # PUTs in flight: the writer thread always has the next batch queued
READ_RATE = 2000  # lookups/s offered by the readers, the same in every phase


def update_bodies(count, seed=3):
    """``2 * count`` pre-encoded PUT bodies of ``BATCH`` changes each, in sending order.

    The second half sets the same routes as the first to other next hops, so cycling through
    the list changes every route every time (an upsert of an unchanged value costs nothing).
    """
    rng = random.Random(seed)
    prefixes = [line.split(",", 1)[0] for line in (GENERATED / "ipv4.csv").read_text().splitlines()[1:]]
    hops = [line.split(",", 1)[0] for line in (GENERATED / "asn-nodes.csv").read_text().splitlines()[1:65]]
    plans = [(rng.sample(prefixes, BATCH - EXACT_PER_BATCH), rng.sample(range(EXACT_POOL), EXACT_PER_BATCH))
             for _ in range(count)]
    bodies = []
    for flip in (0, 1):
        for b, (nets, keys) in enumerate(plans):
            routes = [{"prefix": p, "next_hop": hops[2 * ((b + i) % 32) + flip]} for i, p in enumerate(nets)]
            routes += [{"key": f"upd-{k}", "next_hop": hops[2 * (b % 32) + flip]} for k in keys]
            bodies.append(orjson.dumps({"routes": routes}))
    return bodies


async def writers(session, base, bodies, target, done, progress, rate=None, already=0):
    """``WRITERS`` PUT loops until ``target`` changes are applied or ``done``; ``progress`` gets (time, already + applied).

    ``rate`` (updates/s) sends batch ``i`` no earlier than ``i * BATCH / rate`` seconds in; else flat out.
    """
    applied, failed, counter = 0, 0, iter(range(10**9))
    start = time.perf_counter()

    async def loop():
        nonlocal applied, failed
        for i in counter:
            if rate and (wait := start + i * BATCH / rate - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            if applied >= target or done.is_set():
                return
            async with session.put(f"{base}/v1/routes", data=bodies[i % len(bodies)],
                                   headers={"Content-Type": "application/json"}) as r:
                body = await r.json()
            if r.status == 200:
                applied += body["applied"]
                progress.append((time.perf_counter(), already + applied))
            else:
                failed += 1

    await asyncio.gather(*(loop() for _ in range(WRITERS)))
    return applied, failed


async def rss_sampler(pid, done, samples, progress):
    """RSS every 0.5 s as (time, applied so far, bytes) until ``done``."""
    while not done.is_set():
        samples.append((time.perf_counter(), progress[-1][1] if progress else 0, rss_bytes(pid)))
        await asyncio.sleep(0.5)


async def readers(session, base, ring, seconds, metrics_url):
    """A reader phase on fresh keys from ``ring``: (server histogram delta, client latencies, errors)."""
    h0 = Histogram(await scrape(session, metrics_url))
    lat, errors = await single_lookups(session, base, ring.take(READ_RATE, seconds), concurrency=4, seconds=seconds,
                                       limit=10**7, rate=READ_RATE)
    h1 = Histogram(await scrape(session, metrics_url))
    return h1.since(h0), lat, errors


def describe(name, delta, lat, errors):
    """One line per reader phase; returns the server P99."""
    p99 = Histogram.quantile(delta, 0.99)
    return (f"{name:16} readers: server P50 {us(Histogram.quantile(delta, 0.5))} P99 {us(p99)} over "
            f"{Histogram.count(delta):,} lookups | client P50 {us(np.percentile(lat, 50))} "
            f"P99 {us(np.percentile(lat, 99))}; failed {errors}"), p99, np.percentile(lat, 99)


async def update_phase(session, base, metrics_url, pid, ring, bodies, target, rate, chunks=1):
    """Writers (flat out, or paced at ``rate``) with readers running until ``target`` updates apply.

    Paced updates come in ``chunks`` equal parts, each after a 2s window of readers alone, so idle
    and busy windows interleave and drift in this machine's speed hits both alike.
    """
    before = await scrape(session, metrics_url)
    done, progress, samples = asyncio.Event(), [], []
    sampler = asyncio.ensure_future(rss_sampler(pid, done, samples, progress))
    busy, idle, applied, failed, elapsed = [], [], 0, 0, 0.0
    for _ in range(chunks):
        if rate:
            idle.append(await readers(session, base, ring, 2, metrics_url))
        t0 = time.perf_counter()
        write = asyncio.ensure_future(writers(session, base, bodies, target // chunks, asyncio.Event(), progress, rate,
                                              applied))
        if rate:  # readers for as long as the paced chunk takes, not into the next idle window
            busy.append(await readers(session, base, ring, 0.95 * target / chunks / rate, metrics_url))
        while not write.done() and time.perf_counter() - t0 < 300:
            busy.append(await readers(session, base, ring, 2, metrics_url))
        done_now, failed_now = await write
        applied += done_now
        failed += failed_now
        elapsed += progress[-1][0] - t0 if progress else float("nan")
    done.set()
    await sampler
    after = await scrape(session, metrics_url)
    v4, gen2 = 'family="ipv4"', 'generation="2"'

    def grew(name, labels=None):
        return metric(after, name, labels) - metric(before, name, labels)

    summary = (f"{applied:,} applied in {elapsed:.1f}s of updates = {applied / elapsed:,.0f}/s; failed requests {failed}; "
               f"full GCs {grew('python_gc_collections_total', gen2):.0f}; snapshots published "
               f"{grew('valkyrie_rcu_epoch'):.0f}, CRA defragmentations {grew('valkyrie_cra_defragmentations_total', v4):.0f}, "
               f"pending at end {metric(after, 'valkyrie_rcu_pending_snapshots'):.0f}")
    return {"rate": applied / elapsed, "failed": failed, "summary": summary, "samples": samples,
            "readers": merge_windows(busy), "idle": merge_windows(idle) if idle else None}


async def run(args, out):
    target = 100_000 if args.quick else 1_000_000
    idle_seconds = 5 if args.quick else 15
    config = server_config(lockfree={"rcu_max_pending_updates": args.max_pending} if args.max_pending else None)
    bodies = update_bodies(5 if args.quick else 20)
    proc, base, metrics_url = start_server(config)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            health = await wait_ready(session, base)
            out(f"server: real table, {health['routes']:,} routes; rcu_max_pending_updates "
                f"{args.max_pending or 'default (5000)'}; updates: PUT batches of {BATCH:,} ({BATCH - EXACT_PER_BATCH:,} "
                f"IPv4 next-hop changes + {EXACT_PER_BATCH:,} exact upserts); readers {READ_RATE:,} lookups/s")
            ring = KeyRing(sample_addresses(100_000))
            await single_lookups(session, base, ring.take(1000, 2), concurrency=4, seconds=3, limit=2000)
            # One round of updates first: arenas and the exact pool reach their working size before RSS counts.
            await writers(session, base, bodies, len(bodies) * BATCH, asyncio.Event(), [])
            if note := busy_note({proc.pid}):
                out(note)
            idle_before = describe("idle before", *await readers(session, base, ring, idle_seconds, metrics_url))
            flat = await update_phase(session, base, metrics_url, proc.pid, ring, bodies, target, None)
            paced = await update_phase(session, base, metrics_url, proc.pid, ring, bodies, target, args.rate,
                                       chunks=4 if args.quick else 10)
            if note := busy_note({proc.pid}):
                out(note)
            out(f"flat out ({WRITERS} PUTs in flight): {flat['summary']}")
            out(f"paced at {args.rate:,}/s offered, in {4 if args.quick else 10} chunks between idle windows: {paced['summary']}")
            idle = describe("idle, interleaved", *paced["idle"])
            lines = [idle_before, describe("flat out", *flat["readers"]), idle,
                     describe(f"paced {args.rate // 1000}k/s", *paced["readers"])]
            for line, *_ in lines:
                out(line)
            for name, (_, p99, client) in (("flat out", lines[1]), ("paced", lines[3])):
                out(f"ratio {name}/interleaved idle reader P99: server {p99 / idle[1]:.2f}x, client {client / idle[2]:.2f}x")
            out("(server quantiles are histogram bucket edges, 2^(1/4) = 1.19x apart: 'within 10%' means the same bucket)")
            fine = {name: Histogram.interpolated(part[0], 0.99)
                    for name, part in (("idle", paced["idle"]), ("paced", paced["readers"]), ("flat", flat["readers"]))}
            out(f"server P99 interpolated inside its bucket (as Prometheus' histogram_quantile; information, not the "
                f"verdict): interleaved idle {us(fine['idle'])}, paced {us(fine['paced'])} "
                f"({fine['paced'] / fine['idle']:.2f}x), flat out {us(fine['flat'])} ({fine['flat'] / fine['idle']:.2f}x)")
            samples = flat["samples"] + paced["samples"]
            warm = [s for s in samples if s[1] >= 0.1 * target] or samples
            rss = np.array([s[2] for s in warm], dtype=float)
            quarter = max(1, len(rss) // 4)
            first, last = np.median(rss[:quarter]), np.median(rss[-quarter:])
            drift = (last - first) / first
            out(f"RSS over both update phases ({2 * target:,} updates): {samples[0][2] / 2**20:.0f} MiB at the start; "
                f"the first quarter's median {first / 2**20:.0f} MiB, the last quarter's {last / 2**20:.0f} MiB: drift "
                f"{drift * 100:+.1f}%; peak {rss.max() / 2**20:.0f} MiB; {len(samples)} samples")
            server_ratio = lines[3][1] / idle[1]
            targets = [("capacity flat out >= 45k updates/s", flat["rate"] >= 45_000),
                       ("sustained >= 45k updates/s at the paced load", paced["rate"] >= 45_000),
                       ("reader P99 within 10% of idle at the paced load (server)", server_ratio <= 1.10),
                       ("RSS flat within 5%", abs(drift) <= 0.05),
                       ("no failed request", flat["failed"] == paced["failed"] == 0
                        and all(line.endswith("failed 0") for line, *_ in lines))]
            for name, ok in targets:
                out(f"target {name}: {'MET' if ok else 'MISSED'}")
            return all(ok for _, ok in targets)
    finally:
        await stop(proc)
        config.unlink()


def main():
    """Run and record the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100k updates, short phases (smoke test; not recorded)")
    p.add_argument("--max-pending", type=int, help="rcu_max_pending_updates for the server (changes coalesced per snapshot)")
    p.add_argument("--rate", type=int, default=50_000, help="updates/s the paced phase offers (default 50000)")
    args = p.parse_args()
    out = Recorder(f"updates-max-pending-{args.max_pending}.txt" if args.max_pending else "updates.txt", args.quick)
    ok = asyncio.run(run(args, out))
    out.save()
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
