#!/usr/bin/env python3
"""FIT update benchmark: ``FitTable.updated`` per batch on a large table, against a full rebuild.

A route PUT becomes one ``updated()`` batch on the live FIT, so its cost bounds how fast single
changes publish. Each scenario builds a fresh table of ``--keys`` keys (``sess-0000000`` ...), then
applies ``--loop`` batches in a chain (each batch updates the table the previous one returned, and
is frozen as the writer publishes it): value changes of existing keys, or new keys, 1 or 1,000 per
batch. Prints the first batch, the median and the max of the chain per repeat, and the spread of
the medians over ``--repeats`` repeats. Every table of a chain is checked against a dict, and the
first table must still hold its original values (exit 1 on any mismatch).
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench_cra_micro import pin_one_core  # noqa: E402
from valkyrie.fit_table import FitTable, warm_up  # noqa: E402
from valkyrie.keys import pack_keys  # noqa: E402


def header():
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print("command:", " ".join([sys.executable] + sys.argv))
    print(f"python {platform.python_version()}  numpy {np.__version__}  numba {numba.__version__}  "
          f"cpus {os.cpu_count()}  git {rev.stdout.strip() or '?'}")


def chain(n, kind, batch, loop, rng):
    """Seconds of each of ``loop`` chained ``updated()`` batches, and the mismatch count."""
    keys = [f"sess-{i:07d}".encode() for i in range(n)]
    values = rng.integers(0, 2**31 - 1, n)
    first = FitTable.build(keys, values).freeze()
    model = dict(zip(keys, values.tolist()))
    original = dict(model)
    table, times = first, []
    for step in range(loop):
        if kind == "change":
            picked = [keys[i] for i in rng.integers(0, n, batch).tolist()]
        else:
            picked = [f"new-{step:03d}-{i:05d}".encode() for i in range(batch)]
        ups = list(zip(picked, rng.integers(0, 2**31 - 1, batch).tolist()))
        t0 = time.perf_counter()
        table = table.updated(ups, []).freeze()
        times.append(time.perf_counter() - t0)
        model.update(ups)
    bad = int((table.lookup(*pack_keys(list(model))) != np.array(list(model.values()))).sum())
    bad += int((first.lookup(*pack_keys(keys)) != np.array([original[k] for k in keys])).sum())
    return times, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (50k keys, 1 repeat)")
    ap.add_argument("--keys", type=int, default=500_000)
    ap.add_argument("--loop", type=int, default=20, help="batches per chain")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        args.keys, args.repeats = 50_000, 1
    header()
    cpu = pin_one_core()
    print(f"bench_fit_update: pinned to cpu {cpu}, {args.keys} keys, chains of {args.loop}, "
          f"{args.repeats} repeats")
    warm_up()
    rng = np.random.default_rng(42)
    keys = [f"sess-{i:07d}".encode() for i in range(args.keys)]
    big = FitTable.build(keys, rng.integers(0, 2**31 - 1, args.keys)).freeze()
    rebuilds = []
    for _ in range(3):
        t0 = time.perf_counter()
        big.rebuilt()
        rebuilds.append(time.perf_counter() - t0)
    rebuild = statistics.median(rebuilds)
    st = big.stats()
    print(f"table: capacity {st['capacity']}, arena {st['arena_bytes'] / 1e6:.1f} MB; "
          f"rebuilt() {rebuild * 1e3:.2f} ms (median of 3)")
    del big, keys
    mismatches = 0
    summary = []
    for kind, batch in (("change", 1), ("change", 1000), ("add", 1), ("add", 1000)):
        medians = []
        for r in range(args.repeats):
            times, bad = chain(args.keys, kind, batch, args.loop, rng)
            mismatches += bad
            med = statistics.median(times)
            medians.append(med)
            print(f"{kind:6s} x{batch:<5d} repeat {r + 1}: first {times[0] * 1e3:7.3f} ms  "
                  f"median {med * 1e3:7.3f} ms  max {max(times) * 1e3:7.3f} ms  mismatches {bad}")
        summary.append((kind, batch, medians))
    print("\n== summary (median ms per updated() batch over each chain; spread over repeats)")
    for kind, batch, medians in summary:
        mid = statistics.median(medians)
        print(f"{kind:6s} x{batch:<5d} {mid * 1e3:7.3f} ms  (spread {min(medians) * 1e3:.3f}..{max(medians) * 1e3:.3f})"
              f"  {mid / batch * 1e6:8.2f} us/key  rebuilt()/batch x {rebuild / mid:6.1f}")
    print(f"mismatches {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
