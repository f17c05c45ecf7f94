"""Writer time per PUT batch on the real table: a body decoded by orjson and ``parse_put`` against the plain scan.

Every millisecond here holds the GIL the lookups need (except the scan kernel and the
table-update kernels, which run without it), so it is what updates cost the readers. The
writer serves the real 509k-prefix table, frozen out of the GC as the server does; the
bodies are bench_updates' (5,000 routes: 4,000 IPv4 next-hop changes and 1,000 exact
upserts). Both paths run in alternating rounds on the same bodies and the same writer, and
stage the same routes (checked). Prints the median per batch of parse (bytes to a ``Batch``),
stage (validate and record) and build (the next snapshot), and the young GCs each path set off.

    .venv/bin/python bench/bench_put_parse.py [--quick]
"""

import argparse
import gc
import statistics
import sys
import time

import orjson

from _live import GENERATED, Recorder
from bench_updates import BATCH, update_bodies
from valkyrie.routes import load_route_file
from valkyrie.server import GC_THRESHOLDS
from valkyrie.writer import RouteWriter, parse_put, parse_put_body

PATHS = {
    "orjson + parse_put": lambda raw: parse_put(orjson.loads(raw), 10**6),
    "plain scan": lambda raw: parse_put_body(raw, 10**6, orjson.loads),
}


def run(out, rounds, per_round):
    """Time both paths; returns {path: {phase: [seconds per batch]}}."""
    writer = RouteWriter()
    files = [GENERATED / "asn-nodes.csv", GENERATED / "ipv4.csv", GENERATED / "ipv6.csv"]
    writer.load([load_route_file(p) for p in files])
    snap = writer.build()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    bodies = update_bodies(per_round)
    out(f"writer: real table, {snap.route_count:,} routes; {rounds} rounds of {2 * per_round} batches of {BATCH:,} "
        f"routes per path, alternating")
    times = {name: {"parse": [], "stage": [], "build": []} for name in PATHS}
    gcs = dict.fromkeys(PATHS, 0)
    for _ in range(rounds):
        for name, parse in PATHS.items():
            young = gc.get_stats()[0]["collections"]
            for raw in bodies:
                t0 = time.perf_counter()
                batch = parse(raw)
                t1 = time.perf_counter()
                writer.stage(batch)
                t2 = time.perf_counter()
                snap = writer.build(snap)
                t3 = time.perf_counter()
                for phase, seconds in zip(("parse", "stage", "build"), (t1 - t0, t2 - t1, t3 - t2)):
                    times[name][phase].append(seconds)
            gcs[name] += gc.get_stats()[0]["collections"] - young
    check = [PATHS[name](bodies[0]) for name in PATHS]
    staged = []
    for batch in check:
        w = RouteWriter()
        w.nodes = writer.nodes
        w.stage(batch)
        staged.append((w.exact, w.prefixes))
    if staged[0] != staged[1]:
        out("MISMATCH: the two paths staged different routes")
        return None
    return times, gcs


def main():
    """Run and record the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 rounds of 4 batches (smoke test; not recorded)")
    args = p.parse_args()
    out = Recorder("put_parse.txt", args.quick)
    result = run(out, *((2, 2) if args.quick else (5, 10)))
    if result is None:
        return 1
    times, gcs = result
    med = {name: {phase: statistics.median(v) * 1e3 for phase, v in phases.items()} for name, phases in times.items()}
    for name, m in med.items():
        out(f"{name:20} parse {m['parse']:5.2f}ms  stage {m['stage']:5.2f}ms  build {m['build']:5.2f}ms  "
            f"total {sum(m.values()):5.2f}ms per batch (median of {len(times[name]['parse'])}); young GCs {gcs[name]}")
    slow, fast = med["orjson + parse_put"], med["plain scan"]
    out(f"ratio orjson + parse_put / plain scan: parse {slow['parse'] / fast['parse']:.2f}x, stage "
        f"{slow['stage'] / fast['stage']:.2f}x, total {sum(slow.values()) / sum(fast.values()):.2f}x")
    out.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
