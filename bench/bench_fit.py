#!/usr/bin/env python3
"""FIT benchmark: exact-route batch lookups/s on one core against a Python dict on the same keys.

Keys look like exact routes an operator adds (``job-<n>``, ``tenant-<n>/svc-<m>``, 16-byte ids);
the query stream is half hits, half misses, shuffled. Reports the FitTable batch kernel, the
whole lookup pipeline of a snapshot for the same keys, and ``dict.get``; every answer is checked
against the dict (exit 1 on any mismatch).
"""

import os

# One core, as the targets are stated per core.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench_cra_micro import pin_one_core  # noqa: E402
from valkyrie.fit_table import FitTable  # noqa: E402
from valkyrie.keys import pack_keys  # noqa: E402

TARGET_RATE = 30e6
TARGET_RATIO = 10.0


def make_keys(rng, n):
    """``n`` distinct exact-route keys of mixed shapes and lengths (6..40 bytes)."""
    ids = rng.permutation(4 * n)[:n]
    out = []
    for i, v in enumerate(ids.tolist()):
        shape = i % 3
        if shape == 0:
            out.append(b"job-%d" % v)
        elif shape == 1:
            out.append(b"tenant-%d/svc-%d" % (v % 997, v))
        else:
            out.append(v.to_bytes(8, "little") + (v * 2654435761 % 2**64).to_bytes(8, "little"))
    return out


def timed(fn, *, min_seconds, max_runs):
    """Median seconds of ``fn()`` over repeated runs (at least 3, bounded)."""
    times = []
    started = time.perf_counter()
    while len(times) < max_runs and (len(times) < 3 or time.perf_counter() - started < min_seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (smaller table, less time)")
    ap.add_argument("--load-factor", type=float, default=0.75)
    args = ap.parse_args()
    cpu = pin_one_core()
    print(f"bench_fit: pinned to cpu {cpu}, NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}")
    n = 100_000 if args.quick else 1_000_000
    rng = np.random.default_rng(42)
    keys = make_keys(rng, 2 * n)
    present, absent = keys[:n], keys[n:]
    values = rng.integers(0, 2**31 - 1, n)
    t0 = time.perf_counter()
    table = FitTable.build(present, values, load_factor=args.load_factor).freeze()
    build = time.perf_counter() - t0
    model = dict(zip(present, values.tolist()))
    st = table.stats()
    print(f"\n== {n} keys: FitTable.build {build:.2f}s, capacity {st['capacity']}, "
          f"load {st['load_factor']:.3f}, {st['nbytes'] / n:.1f} B/key")

    query = present + absent
    order = rng.permutation(len(query))
    query = [query[i] for i in order.tolist()]
    data, offsets = pack_keys(query)
    got = table.lookup(data, offsets)
    want = np.array([model.get(k, -1) for k in query], dtype=np.int64)
    mismatches = int((got != want).sum())
    st = table.stats()
    print(f"correctness: {len(query)} lookups (half absent) vs dict, mismatches={mismatches}; "
          f"mean probe {st['mean_probe']:.3f}, max probe {st['max_probe']}, "
          f"collision rate {st['collisions'] / max(st['operations'], 1):.2%}")

    budget = 1.5 if args.quick else 4.0
    med, best, runs = timed(lambda: table.lookup(data, offsets), min_seconds=budget, max_runs=200)
    fit_rate = len(query) / med
    print(f"FitTable batch {len(query) // 1000}k:  {fit_rate / 1e6:8.2f} M lookups/s "
          f"(median of {runs}, best {len(query) / best / 1e6:.2f} M)")

    small = [pack_keys(query[i:i + 1024]) for i in range(0, min(len(query), 200 * 1024), 1024)]
    t0 = time.perf_counter()
    done = 0
    for d, o in small:
        table.lookup(d, o)
        done += o.size - 1
    small_rate = done / (time.perf_counter() - t0)
    print(f"FitTable batch 1024:   {small_rate / 1e6:8.2f} M lookups/s ({done} keys in fresh 1024-key calls)")

    get = model.get
    sample = query[: min(len(query), 400_000)]
    med_d, _best_d, runs_d = timed(lambda: [get(k, -1) for k in sample], min_seconds=budget, max_runs=50)
    dict_rate = len(sample) / med_d
    print(f"dict.get:              {dict_rate / 1e6:8.3f} M lookups/s (median of {runs_d})")

    ratio = fit_rate / dict_rate
    print("\n== summary (lookups/s, one core)")
    print(f"FitTable {fit_rate:,.0f}  dict {dict_rate:,.0f}  x {ratio:.1f}  "
          f">= {TARGET_RATE / 1e6:.0f}M/s: {'yes' if fit_rate >= TARGET_RATE else 'no'}  "
          f">= {TARGET_RATIO:.0f}x dict: {'yes' if ratio >= TARGET_RATIO else 'no'}  mismatches {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
