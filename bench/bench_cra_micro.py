#!/usr/bin/env python3
"""CRA micro-benchmark on synthetic tables: lookups/s on one core against pytricia.

IPv4: random prefixes with a routing-table-like length mix (mostly /16../24); IPv6: mostly
/32../48 clustered under allocated blocks; names: service-style names against the pure-Python dict twin. Also prints build,
small-batch ``updated()``, ``defragmented()`` and numba compile times (cold and warm cache).
Exit status 1 on any mismatch against the peer.
"""

import os

# One core, as the targets are stated per core.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

# Share of prefixes per length, roughly the shape of a full BGP IPv4 table.
V4_MIX = {8: 0.0005, 12: 0.002, 14: 0.005, 15: 0.005, 16: 0.03, 17: 0.013, 18: 0.023,
          19: 0.042, 20: 0.064, 21: 0.087, 22: 0.19, 23: 0.18, 24: 0.35, 28: 0.004, 32: 0.004}
V6_MIX = {20: 0.01, 24: 0.01, 28: 0.03, 29: 0.05, 32: 0.25, 36: 0.04, 40: 0.07, 44: 0.08,
          48: 0.4, 56: 0.02, 64: 0.03, 128: 0.01}

COMPILE_SNIPPET = """
import time, numpy as np
t0 = time.perf_counter()
from valkyrie.cra_table import CraTable
from valkyrie.keys import pack_keys
from jit.addr import parse_addresses
t = CraTable.build("ipv4", [(bytes([10, 0, 0, 0]), 8, 1), (bytes([10, 1, 2, 0]), 24, 2)])
t = t.updated([(bytes([10, 1, 0, 0]), 16, 3)], [(bytes([10, 0, 0, 0]), 8)])
t.lookup_ipv4(np.zeros(4, np.uint32)); t.defragmented()
s = CraTable.build("ipv6", [(bytes(16), 0, 1)]).updated([(bytes(16), 0, 2)], [])
s.lookup_ipv6(np.zeros(4, np.uint64), np.zeros(4, np.uint64))
n = CraTable.build("name", [(b"ab", 16, 1)]).updated([(b"a", 8, 2)], [(b"ab", 16)])
n.lookup_keys(*pack_keys([b"abc", b""]))
parse_addresses(*pack_keys([b"1.2.3.4", b"::1"]))
print(time.perf_counter() - t0)
"""


def pin_one_core():
    """Pin to one CPU so the numbers are per core; return its id or None."""
    try:
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None


def compile_times():
    """Seconds to import, compile and first-call every CRA kernel: fresh cache, then warm."""
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=ROOT)
        for _ in range(2):
            res = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET], env=env, cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            out.append(float(res.stdout.strip().splitlines()[-1]))
    return out


def random_prefixes(rng, n, mix, width):
    """Unique random (network int, plen) pairs following the length mix."""
    lengths = np.array(sorted(mix))
    probs = np.array([mix[k] for k in lengths], dtype=float)
    plens = rng.choice(lengths, size=n, p=probs / probs.sum())
    bits = 8 * width
    nets = [int.from_bytes(rng.bytes(width), "big") for _ in range(n)]
    if width == 16:
        # Real IPv6 routes cluster under allocated blocks inside 2000::/3; uniformly random
        # ones would be the sparse worst case for 8-bit strides (a node chain per route).
        blocks = [(0x2000 << 112) | (int(x) << 96) for x in rng.integers(0, 2**29, n // 8 + 1)]
        nets = [blocks[int(rng.integers(len(blocks)))] | (v & ((1 << 96) - 1)) for v in nets]
    seen = {}
    for net, plen in zip(nets, plens.tolist()):
        net &= ~((1 << (bits - plen)) - 1) & ((1 << bits) - 1)
        seen[(net, plen)] = len(seen)
    return list(seen)


def inside_or_uniform(rng, nets, n, width):
    """n address ints: half inside random prefixes, half uniform."""
    bits = 8 * width
    out = []
    for i in range(n):
        if i % 2 == 0:
            net, plen = nets[int(rng.integers(len(nets)))]
            host = int.from_bytes(rng.bytes(width), "big") & ((1 << (bits - plen)) - 1)
            out.append(net | host)
        else:
            out.append(int.from_bytes(rng.bytes(width), "big"))
    return out


def rate(fn, n, seconds):
    """Median lookups/s of repeated whole-batch calls within a time bound."""
    rates, end = [], time.perf_counter() + seconds
    while len(rates) < 3 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_ip(family, args, rng):
    """Build, check and time one IP family against pytricia; return mismatch count."""
    import pytricia

    from valkyrie.cra_table import CraTable

    width = 4 if family == "ipv4" else 16
    n_routes = args.v4_routes if family == "ipv4" else args.v6_routes
    nets = random_prefixes(rng, n_routes, V4_MIX if family == "ipv4" else V6_MIX, width)
    routes = [(net.to_bytes(width, "big"), plen, i % 50000) for i, (net, plen) in enumerate(nets)]
    print(f"\n== {family}: {len(routes)} synthetic prefixes")
    CraTable.build(family, routes[:1000])
    table, t_build = timed(lambda: CraTable.build(family, routes))
    print(f"CraTable.build: {t_build:.2f}s  stats={table.stats()}")

    trie = pytricia.PyTricia(8 * width)

    def fill():
        for prefix, plen, value in routes:
            trie.insert(prefix, plen, value)
    _unused, t_trie = timed(fill)
    print(f"pytricia build: {t_trie:.2f}s")

    addrs = inside_or_uniform(rng, nets, args.lookups, width)
    packed = [a.to_bytes(width, "big") for a in addrs]
    if family == "ipv4":
        keys = (np.array(addrs, dtype=np.uint32),)
        call = table.lookup_ipv4
    else:
        keys = (np.array([a >> 64 for a in addrs], dtype=np.uint64),
                np.array([a & (2**64 - 1) for a in addrs], dtype=np.uint64))
        call = table.lookup_ipv6
    values, _plens = call(*keys)
    sample = min(len(packed), 100_000)
    want = np.fromiter((trie.get(p, -1) for p in packed[:sample]), np.int64, count=sample)
    bad = int(np.count_nonzero(want != values[:sample]))
    print(f"correctness: {sample} addresses vs pytricia, {float((want >= 0).mean()):.1%} routed, "
          f"mismatches={bad}")

    cra = rate(lambda: call(*keys), len(addrs), args.seconds)
    get = trie.get
    peer_keys = packed[:args.peer_lookups]
    peer = rate(lambda: [get(p, -1) for p in peer_keys], len(peer_keys), args.seconds)
    print(f"CraTable batch {len(addrs) // 1000}k: {cra / 1e6:8.2f} M lookups/s")
    print(f"pytricia .get:        {peer / 1e6:8.3f} M lookups/s")
    print(f"ratio CRA/pytricia:   {cra / peer:8.1f}x")

    # Small update batches chained on the full table, as the writer publishes them.
    current, times = table, []
    for b in range(args.batches):
        ups = [routes[int(i)][:2] + (7,) for i in rng.integers(0, len(routes), 10)]
        dels = [routes[int(i)][:2] for i in rng.integers(0, len(routes), 10)]
        current, dt = timed(lambda: current.updated(ups, dels))
        times.append(dt)
    frag = current.stats()["fragmentation"]
    compact, t_defrag = timed(current.defragmented)
    print(f"updated(10 upserts + 10 deletes): median {np.median(times) * 1e3:.2f} ms, "
          f"max {max(times) * 1e3:.2f} ms over {len(times)} chained batches; "
          f"fragmentation after {frag:.4f}")
    print(f"defragmented: {t_defrag:.2f}s -> fragmentation {compact.stats()['fragmentation']}")
    return bad, cra, peer


def bench_names(args, rng):
    """Names against the dict twin (probe every prefix length); return mismatch count."""
    from jit.naive import cra as naive
    from valkyrie.cra_table import CraTable
    from valkyrie.keys import pack_keys

    services = [f"svc-{i:06d}" for i in range(args.name_routes)]
    routes = []
    for i, svc in enumerate(services):
        routes.append((f"{svc}.".encode(), i))
        if i % 4 == 0:
            routes.append((f"{svc}.canary.".encode(), i + 1))
    routes = [(p, 8 * len(p), v) for p, v in routes]
    print(f"\n== name: {len(routes)} synthetic prefixes")
    CraTable.build("name", routes[:100])
    table, t_build = timed(lambda: CraTable.build("name", routes))
    print(f"CraTable.build: {t_build:.2f}s  stats={table.stats()}")
    rules = naive.apply({}, routes)
    picks = rng.integers(0, len(services), args.lookups)
    keys = [f"{services[k]}.{'canary.' if k % 8 == 0 else ''}pod-{k % 97}".encode()
            for k in picks.tolist()]
    data, offsets = pack_keys(keys)
    values, _plens = table.lookup_keys(data, offsets)
    sample = min(len(keys), 20_000)
    d2, o2 = pack_keys(keys[:sample])
    want, _p = naive.lookup_names(rules, d2, o2)
    bad = int(np.count_nonzero(want != values[:sample]))
    print(f"correctness: {sample} keys vs dict twin, mismatches={bad}")
    cra = rate(lambda: table.lookup_keys(data, offsets), len(keys), args.seconds)
    peer = rate(lambda: naive.lookup_names(rules, d2, o2), sample, args.seconds)
    print(f"CraTable batch {len(keys) // 1000}k: {cra / 1e6:8.2f} M lookups/s")
    print(f"dict twin:            {peer / 1e6:8.3f} M lookups/s")
    print(f"ratio CRA/dict:       {cra / peer:8.1f}x")
    return bad, cra, peer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for smoke tests")
    args = parser.parse_args()
    big = not args.quick
    args.v4_routes = 500_000 if big else 20_000
    args.v6_routes = 150_000 if big else 10_000
    args.name_routes = 100_000 if big else 5_000
    args.lookups = 1_000_000 if big else 100_000
    args.peer_lookups = 300_000 if big else 30_000
    args.seconds = 3.0 if big else 0.3
    args.batches = 50 if big else 5
    cpu = pin_one_core()
    print(f"bench_cra_micro: pinned to cpu {cpu}, NUMBA_NUM_THREADS="
          f"{os.environ['NUMBA_NUM_THREADS']}")
    cold, warm = compile_times()
    print(f"import + compile + first call of every CRA kernel: cold cache {cold:.1f}s, "
          f"warm cache {warm:.2f}s")
    rng = np.random.default_rng(2024)
    summary, failed = [], 0
    for family in ("ipv4", "ipv6"):
        bad, cra, peer = bench_ip(family, args, rng)
        failed += bad
        summary.append((family, cra, peer, "pytricia"))
    bad, cra, peer = bench_names(args, rng)
    failed += bad
    summary.append(("name", cra, peer, "dict twin"))
    print("\n== summary (lookups/s, one core)")
    for family, cra, peer, name in summary:
        print(f"{family:5} CraTable {cra:14,.0f}   {name:9} {peer:12,.0f}   x{cra / peer:7.1f}")
    if failed:
        print(f"FAILED: {failed} mismatches")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
