#!/usr/bin/env python3
"""CRA longest-prefix match on the real ASN tables: correctness against pytricia, then throughput.

Needs ``make tables`` (bench/data/build_tables.py) first. Peers, all on the same addresses:
CraTable batch lookups, pytricia per-address ``.get`` (packed bytes, its fastest key form),
py-radix ``search_best(packed=...)`` when installed (optional, not in requirements.lock) and
geoip2fast's own ``lookup`` on its bundled ASN data (strings; a smaller slice, it is slow).
Exit status 1 on any CRA/pytricia mismatch.
"""

import os

# One core, as the targets are stated per core: no numba worker threads.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

DATA = os.path.join(HERE, "data", "generated")
U64 = np.uint64
MASK64 = (1 << 64) - 1


def pin_one_core():
    """Pin this process to a single CPU so numbers are per core; return the CPU id or None."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        return cpus[-1]
    except (AttributeError, OSError):
        return None


def load_table(data_dir, family, node_index):
    """Read ``<family>.csv`` into (prefix bytes list, plen int array, value int array, text list)."""
    af = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    prefixes, plens, values, texts = [], [], [], []
    with open(os.path.join(data_dir, f"{family}.csv"), newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        if next(reader) != ["prefix", "next_hop"]:
            raise SystemExit(f"{family}.csv: unexpected header")
        for prefix, hop in reader:
            addr, plen = prefix.split("/")
            prefixes.append(socket.inet_pton(af, addr))
            plens.append(int(plen))
            values.append(node_index[hop])
            texts.append(prefix)
    return prefixes, np.array(plens, dtype=np.int64), np.array(values, dtype=np.int64), texts


def load_nodes(data_dir):
    """Read asn-nodes.csv into (ids list, id -> index dict)."""
    with open(os.path.join(data_dir, "asn-nodes.csv"), newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        if next(reader) != ["id", "address"]:
            raise SystemExit("asn-nodes.csv: unexpected header")
        ids = [row[0] for row in reader]
    return ids, {n: i for i, n in enumerate(ids)}


def make_ipv4(prefixes, plens, n, rng):
    """Return n host-order uint32 addresses: half inside random prefixes, half uniform."""
    nets = np.frombuffer(b"".join(prefixes), dtype=">u4").astype(np.uint64)
    half = n // 2
    pick = rng.integers(0, len(prefixes), half)
    host = (np.uint64(1) << (32 - plens[pick]).astype(np.uint64)) - np.uint64(1)
    inside = nets[pick] | (rng.integers(0, 1 << 32, half, dtype=np.uint64) & host)
    uniform = rng.integers(0, 1 << 32, n - half, dtype=np.uint64)
    return np.concatenate([inside, uniform]).astype(np.uint32)


def _host_masks(plens):
    """Per-prefix (hi, lo) host-bit masks for IPv6 prefix lengths."""
    hb = (128 - plens).astype(np.int64)
    hi_bits = np.clip(hb - 64, 0, 64)
    lo_bits = np.clip(hb, 0, 64)

    def ones(bits):
        out = np.full(bits.shape, MASK64, dtype=U64)
        part = bits < 64
        out[part] = (np.uint64(1) << bits[part].astype(U64)) - np.uint64(1)
        return out

    return ones(hi_bits), ones(lo_bits)


def make_ipv6(prefixes, plens, n, rng):
    """Return (hi, lo) uint64 arrays of n addresses: half inside random prefixes, half uniform."""
    raw = np.frombuffer(b"".join(prefixes), dtype=">u8").reshape(-1, 2).astype(U64)
    half = n // 2
    pick = rng.integers(0, len(prefixes), half)
    mhi, mlo = _host_masks(plens[pick])
    r = rng.integers(0, MASK64, (2, half), dtype=U64, endpoint=True)
    hi_in = raw[pick, 0] | (r[0] & mhi)
    lo_in = raw[pick, 1] | (r[1] & mlo)
    u = rng.integers(0, MASK64, (2, n - half), dtype=U64, endpoint=True)
    return np.concatenate([hi_in, u[0]]), np.concatenate([lo_in, u[1]])


def pack_ipv4(addrs):
    """Network-order 4-byte strings, pytricia's fastest key form."""
    raw = addrs.astype(">u4").tobytes()
    return [raw[i:i + 4] for i in range(0, len(raw), 4)]


def pack_ipv6(hi, lo):
    """Network-order 16-byte strings, pytricia's fastest key form."""
    raw = np.stack([hi, lo], axis=1).astype(">u8").tobytes()
    return [raw[i:i + 16] for i in range(0, len(raw), 16)]


def texts_of(packed, family):
    """Printable addresses, geoip2fast's only key form."""
    af = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    return [socket.inet_ntop(af, p) for p in packed]


def build_trie(family, texts, values):
    """Build a frozen pytricia trie mapping prefix text -> node index."""
    import pytricia

    trie = pytricia.PyTricia(32 if family == "ipv4" else 128)
    for t, v in zip(texts, values.tolist()):
        trie[t] = v
    trie.freeze()
    return trie


def build_radix(texts, values):
    """Build a py-radix tree (optional peer); None when py-radix is not installed."""
    try:
        import radix
    except ImportError:
        return None
    tree = radix.Radix()
    for t, v in zip(texts, values.tolist()):
        tree.add(t).data["v"] = v
    return tree


def cra_lookup(cra, family, keys):
    """One batch lookup; keys is a uint32 array (ipv4) or a (hi, lo) pair (ipv6)."""
    return cra.lookup_ipv4(keys) if family == "ipv4" else cra.lookup_ipv6(*keys)


def check(family, cra, trie, keys, packed, node_ids):
    """Compare CRA and pytricia on every address; return (mismatches, routed fraction)."""
    values, plens = cra_lookup(cra, family, keys)
    get, get_key = trie.get, trie.get_key
    want_v = np.fromiter((get(p, -1) for p in packed), dtype=np.int64, count=len(packed))
    bad = np.flatnonzero(want_v != values.astype(np.int64))
    routed = want_v >= 0
    # Equal values can still come from different prefixes (same AS twice); compare lengths too.
    idx = np.flatnonzero(routed)
    want_pl = np.fromiter((int(get_key(packed[i]).rsplit("/", 1)[1]) for i in idx.tolist()),
                          dtype=np.int64, count=len(idx))
    bad_pl = idx[want_pl != plens[idx].astype(np.int64)]
    bad = np.union1d(bad, bad_pl)
    for i in bad[:5].tolist():
        addr = texts_of([packed[i]], family)[0]
        got = node_ids[values[i]] if values[i] >= 0 else None
        want = node_ids[want_v[i]] if want_v[i] >= 0 else None
        print(f"  MISMATCH {addr}: cra={got}/{plens[i]} pytricia={want}/{get_key(packed[i])}")
    return len(bad), float(routed.mean())


def rate_cra(cra, family, keys, seconds, max_reps):
    """Median and best lookups/s of whole-batch CRA lookups, repeated within a time bound."""
    n = len(keys) if family == "ipv4" else len(keys[0])
    rates, t_end = [], time.perf_counter() + seconds
    while len(rates) < max_reps and (len(rates) < 3 or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        cra_lookup(cra, family, keys)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates)), max(rates), len(rates)


def rate_cra_batches(cra, family, keys, batch, seconds):
    """Lookups/s calling CRA on consecutive ``batch``-sized slices of the whole set.

    Fresh addresses per call, so small batches show per-call overhead without a hot cache.
    """
    n = len(keys) if family == "ipv4" else len(keys[0])
    starts = range(0, n - batch + 1, batch)
    done, t0 = 0, time.perf_counter()
    for _ in range(100):  # passes over the set; the time bound normally ends it first
        for start in starts:
            if family == "ipv4":
                cra.lookup_ipv4(keys[start:start + batch])
            else:
                cra.lookup_ipv6(keys[0][start:start + batch], keys[1][start:start + batch])
        done += len(starts) * batch
        if time.perf_counter() - t0 > seconds:
            break
    return done / (time.perf_counter() - t0), done


def rate_loop(fn, items, seconds):
    """Lookups/s of a per-item Python loop over at most ``items``, stopping after ``seconds``."""
    done, t0 = 0, time.perf_counter()
    chunk = 10_000
    while done < len(items):
        for x in items[done:done + chunk]:
            fn(x)
        done += len(items[done:done + chunk])
        if time.perf_counter() - t0 > seconds:
            break
    return done / (time.perf_counter() - t0), done


def slice_keys(family, keys, n):
    """First n addresses of a key set, in CRA input form."""
    return keys[:n] if family == "ipv4" else (keys[0][:n], keys[1][:n])


def geoip_peer(family):
    """Load geoip2fast on its bundled ASN file for the family; return a str -> asn_name callable."""
    from geoip2fast import GeoIP2Fast

    name = "geoip2fast-asn.dat.gz" if family == "ipv4" else "geoip2fast-asn-ipv6.dat.gz"
    g = GeoIP2Fast(geoip2fast_data_file=name)
    return g.lookup


def nbytes_of(cra, stats):
    """Best-effort arena size in bytes from CraTable (attribute or stats key); None if unknown."""
    for source in (getattr(cra, "nbytes", None), stats.get("nbytes") if isinstance(stats, dict) else None):
        if isinstance(source, (int, np.integer)):
            return int(source)
    return None


def main(argv=None):
    """Run the correctness check, then the throughput comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (smaller sets, less time)")
    ap.add_argument("--data", default=DATA, help="directory with asn-nodes.csv, ipv4.csv, ipv6.csv")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    n_check = 20_000 if args.quick else 100_000
    n_bench = 200_000 if args.quick else 1_000_000
    n_trie = 50_000 if args.quick else 300_000
    n_geo = 5_000 if args.quick else 30_000
    seconds = 1.0 if args.quick else 3.0

    cpu = pin_one_core()
    from valkyrie.cra_table import CraTable

    if not os.path.exists(os.path.join(args.data, "ipv4.csv")):
        raise SystemExit(f"no tables in {args.data}: run `make tables` first")
    print(f"bench_cra_real: pinned to cpu {cpu}, NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}"
          f"{' (quick)' if args.quick else ''}")
    node_ids, node_index = load_nodes(args.data)
    rng = np.random.default_rng(args.seed)
    failed = False
    summary = []

    for family in ("ipv4", "ipv6"):
        t0 = time.perf_counter()
        prefixes, plens, values, texts = load_table(args.data, family, node_index)
        print(f"\n== {family}: {len(prefixes)} prefixes, {len(set(values.tolist()))} next hops "
              f"(csv load {time.perf_counter() - t0:.2f}s)")
        routes = list(zip(prefixes, plens.tolist(), values.tolist()))

        t0 = time.perf_counter()
        cra = CraTable.build(family, routes)
        build_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        cra = CraTable.build(family, routes)
        build_warm = time.perf_counter() - t0
        stats = cra.stats()
        nbytes = nbytes_of(cra, stats)
        t0 = time.perf_counter()
        trie = build_trie(family, texts, values)
        trie_build = time.perf_counter() - t0
        print(f"CraTable.build: {build_warm:.2f}s warm ({build_first:.2f}s first, incl. any JIT), "
              f"len={len(cra)}, nbytes={nbytes if nbytes is not None else 'n/a'}"
              f"{f' ({nbytes / len(prefixes):.1f} B/prefix)' if nbytes else ''}")
        print(f"CraTable.stats: {stats}")
        print(f"pytricia build: {trie_build:.2f}s")

        # One address set per family; every peer and the check use a front slice of it.
        if family == "ipv4":
            keys = make_ipv4(prefixes, plens, n_bench, rng)
        else:
            keys = make_ipv6(prefixes, plens, n_bench, rng)
        # The set is built half inside, half uniform; shuffle so every front slice keeps the mix.
        perm = rng.permutation(n_bench)
        keys = keys[perm] if family == "ipv4" else (keys[0][perm], keys[1][perm])
        m = max(n_check, n_trie, n_geo)
        packed_all = pack_ipv4(keys[:m]) if family == "ipv4" else pack_ipv6(keys[0][:m], keys[1][:m])

        t0 = time.perf_counter()
        bad, routed = check(family, cra, trie, slice_keys(family, keys, n_check), packed_all[:n_check],
                            node_ids)
        print(f"correctness: {n_check} addresses, {routed:.1%} routed, mismatches={bad} "
              f"({time.perf_counter() - t0:.2f}s)")
        failed |= bad != 0

        cra_lookup(cra, family, slice_keys(family, keys, 1000))  # warm the kernel
        cra_rate, cra_best, reps = rate_cra(cra, family, keys, seconds, 1000)
        cra_small, small_n = rate_cra_batches(cra, family, keys, 1024, seconds)
        get = trie.get
        trie_rate, trie_n = rate_loop(get, packed_all[:n_trie], seconds)
        rad_rate = None
        t0 = time.perf_counter()
        tree = build_radix(texts, values)
        if tree is not None:
            search_best = tree.search_best
            rad_rate, rad_n = rate_loop(lambda p: search_best(packed=p), packed_all[:n_trie], seconds)
            rad_agree = sum((lambda nd: nd.data["v"] if nd is not None else -1)(search_best(packed=p))
                            == get(p, -1) for p in packed_all[:2000])
            rad_line = (f"py-radix search_best: {rad_rate / 1e6:8.3f} M lookups/s ({rad_n} addrs; "
                        f"build {time.perf_counter() - t0:.2f}s; agrees with pytricia on "
                        f"{rad_agree}/{min(2000, n_trie)})")
        else:
            rad_line = "py-radix: not installed (optional peer)"
        geo_lookup = geoip_peer(family)
        geo_texts = texts_of(packed_all[:n_geo], family)
        geo_rate, geo_n = rate_loop(geo_lookup, geo_texts, seconds * 2)
        # Same question answered? geoip2fast reports the matched network as asn_cidr.
        gk = trie.get_key
        agree = sum((geo_lookup(t).asn_cidr or None) == gk(p)
                    for t, p in zip(geo_texts[:2000], packed_all[:2000]))
        print(f"CraTable batch {n_bench // 1000}k: {cra_rate / 1e6:8.2f} M lookups/s "
              f"(median of {reps}, best {cra_best / 1e6:.2f} M)")
        print(f"CraTable batch 1024:  {cra_small / 1e6:8.2f} M lookups/s ({small_n} addrs in "
              f"fresh 1024-address calls)")
        print(f"pytricia .get:        {trie_rate / 1e6:8.3f} M lookups/s ({trie_n} addrs)")
        print(rad_line)
        print(f"geoip2fast .lookup:   {geo_rate / 1e6:8.3f} M lookups/s ({geo_n} addrs)")
        print(f"geoip2fast agreement: {agree}/{min(2000, n_geo)} same matched prefix as pytricia")
        print(f"ratio CRA/pytricia:   {cra_rate / trie_rate:8.1f}x   CRA/geoip2fast: "
              f"{cra_rate / geo_rate:8.1f}x")
        summary.append((family, cra_rate, trie_rate, rad_rate, geo_rate, bad))

    print("\n== summary (lookups/s, one core)")
    print(f"{'family':6} {'CraTable':>12} {'pytricia':>12} {'py-radix':>12} {'geoip2fast':>12}"
          f" {'xPyT':>7} {'xRadix':>7} {'xG2F':>7} {'20M/s':>6} {'20x':>5} mismatches")
    for family, c, t, r, g, bad in summary:
        r_txt, xr = (f"{r:12,.0f}", f"{c / r:7.1f}") if r else (f"{'-':>12}", f"{'-':>7}")
        print(f"{family:6} {c:12,.0f} {t:12,.0f} {r_txt} {g:12,.0f} {c / t:7.1f} {xr} {c / g:7.1f}"
              f" {'yes' if c >= 20e6 else 'no':>6} {'yes' if c / t >= 20 else 'no':>5} {bad}")
    if failed:
        print("FAIL: CraTable and pytricia disagree")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
