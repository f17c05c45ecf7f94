#!/usr/bin/env python3
"""Build real IPv4/IPv6 route tables from the GeoLite2-derived ASN data shipped in geoip2fast.

Outputs (into ``bench/data/generated/`` by default, git-ignored):

* ``asn-nodes.csv``  -- ``id,address``: one node per autonomous system, address empty;
* ``ipv4.csv`` / ``ipv6.csv`` -- ``prefix,next_hop``: one row per network.

``--sample`` instead writes the small committed test sample (``tests/data/asn-sample/``).

About the data: geoip2fast's ``*.dat.gz`` files are gzip'd pickles of
``(version, source_info, total_networks, database)``; for the "country with ASN" flavour the
database is a 10-tuple whose ASN part is a chunked, sorted list of first addresses, a parallel
list of prefix lengths and a parallel list of indexes into a list of AS *organisation names*.
geoip2fast's converter drops GeoLite2's AS numbers and merges ASes by organisation name, so
numbers cannot be recovered: a node id is ``AS-`` plus the organisation name made id-safe
(``AS-GOOGLE``, ``AS-CLOUDFLARENET``, ``AS-IANA.ORG`` for the reserved ranges).
The IPv6 file also repeats every IPv4 network (as integers below 2**32); those are skipped there.

The real data is almost flat (GeoLite2 networks do not overlap; only geoip2fast's own reserved
ranges nest, once). Longest-prefix match needs nesting to be tested at all, so the sample adds,
around each cluster of real prefixes it draws, synthesised covering aggregates and
more-specifics owned by ASes from the same cluster. The full tables are never altered.
"""

import argparse
import csv
import gzip
import ipaddress
import os
import pickle
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(HERE, "generated")
DEFAULT_SAMPLE_OUT = os.path.join(REPO, "tests", "data", "asn-sample")
MAX_IPV4 = (1 << 32) - 1
SAMPLE_SEED = 20240618  # the GeoLite2 build date of the shipped data; any fixed value works


def geoip2fast_dir():
    """Return the directory holding geoip2fast's bundled data files."""
    import geoip2fast

    return os.path.dirname(os.path.abspath(geoip2fast.__file__))


def source_files():
    """Return the (ipv4, ipv6) ASN data file paths inside the geoip2fast package."""
    d = geoip2fast_dir()
    return os.path.join(d, "geoip2fast-asn.dat.gz"), os.path.join(d, "geoip2fast-asn-ipv6.dat.gz")


def load_asn_networks(path):
    """Return ``[(first_int, plen, as_name)]`` sorted by first address, from a geoip2fast ASN file."""
    with gzip.open(path, "rb") as fh:
        # The file is geoip2fast's own package data, the same object its lookup code unpickles.
        version, source_info, _total, database = pickle.load(fh)
    if version not in (120, 121):
        raise ValueError(f"{path}: unsupported geoip2fast data version {version}")
    if not (source_info.get("country") and source_info.get("asn")) or len(database) != 10:
        raise ValueError(f"{path}: expected a country+ASN database, got {source_info}")
    (_idx, _idx_asn, _names_cc, names_asn, _first_cc, first_asn,
     _id_cc, id_asn, _len_cc, len_asn) = database
    out = []
    for firsts, plens, ids in zip(first_asn, len_asn, id_asn):
        for first, plen, ident in zip(firsts, plens, ids):
            out.append((int(first), int(plen), names_asn[ident]))
    return out


def range_to_cidrs(first, last, bits):
    """Split the inclusive integer range ``[first, last]`` into the minimal list of ``(net, plen)``."""
    if not 0 <= first <= last < (1 << bits):
        raise ValueError(f"bad range {first}..{last} for {bits} bits")
    out = []
    while first <= last:
        # Largest block aligned at `first` (lowest set bit) that still fits in the range.
        size = (first & -first) if first else (1 << bits)
        while first + size - 1 > last:
            size >>= 1
        out.append((first, bits - (size.bit_length() - 1)))
        first += size
    return out


def networks_to_prefixes(networks, family):
    """Turn geoip2fast (first, plen, name) networks of one family into validated prefix rows."""
    bits = 32 if family == "ipv4" else 128
    net_cls = ipaddress.IPv4Network if family == "ipv4" else ipaddress.IPv6Network
    rows = []
    for first, plen, name in networks:
        # IPv4 networks are stored below 2**32 in the IPv6 file too; keep each in its own table.
        if (first <= MAX_IPV4) != (family == "ipv4"):
            continue
        if not 0 <= plen <= bits:
            raise ValueError(f"bad prefix length {plen} at {first:#x}")
        last = first + (1 << (bits - plen)) - 1
        for net, nplen in range_to_cidrs(first, last, bits):
            text = f"{net_cls((net, nplen))}"
            # Strict parse of our own text: it must round-trip with no host bits set.
            check = ipaddress.ip_network(text, strict=True)
            if int(check.network_address) != net or check.prefixlen != nplen:
                raise ValueError(f"prefix {text} does not round-trip")
            rows.append((text, name))
    return rows


def node_ids(names):
    """Map AS organisation names to unique, id-safe node ids (deterministic for a given set)."""
    ids, taken = {}, set()
    for name in sorted(set(names)):
        base = "AS-" + (re.sub(r"[^A-Za-z0-9.\-]+", "_", name).strip("_.-") or "unnamed")
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}~{n}"
        taken.add(ident)
        ids[name] = ident
    return ids


def write_csv(path, header, rows):
    """Write ``rows`` under ``header`` to ``path`` atomically (temp file then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def load_both():
    """Return ``(v4_rows, v6_rows)`` of ``(prefix_text, as_name)`` from the shipped data."""
    src4, src6 = source_files()
    v4 = networks_to_prefixes(load_asn_networks(src4), "ipv4")
    v6 = networks_to_prefixes(load_asn_networks(src6), "ipv6")
    return v4, v6


def build_full(out_dir, force):
    """Write the full asn-nodes/ipv4/ipv6 CSVs unless they are newer than their sources."""
    outs = [os.path.join(out_dir, n) for n in ("asn-nodes.csv", "ipv4.csv", "ipv6.csv")]
    sources = list(source_files()) + [os.path.abspath(__file__)]
    newest_src = max(os.path.getmtime(p) for p in sources)
    if not force and all(os.path.exists(p) and os.path.getmtime(p) > newest_src for p in outs):
        print(f"tables up to date in {out_dir} (use --force to rebuild)")
        return 0
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    v4, v6 = load_both()
    t1 = time.perf_counter()
    ids = node_ids([n for _, n in v4] + [n for _, n in v6])
    write_csv(outs[0], ["id", "address"], [(ids[n], "") for n in sorted(ids, key=ids.get)])
    write_csv(outs[1], ["prefix", "next_hop"], [(p, ids[n]) for p, n in v4])
    write_csv(outs[2], ["prefix", "next_hop"], [(p, ids[n]) for p, n in v6])
    t2 = time.perf_counter()
    print(f"ipv4 prefixes: {len(v4)}")
    print(f"ipv6 prefixes: {len(v6)}")
    print(f"nodes (ASes):  {len(ids)}")
    print(f"load+validate {t1 - t0:.2f}s, write {t2 - t1:.2f}s, total {t2 - t0:.2f}s -> {out_dir}")
    return 0


def _sample_family(rows, family, target, rng):
    """Draw ~``target`` rows: clusters of consecutive real prefixes plus synthesised nesting."""
    bits = 32 if family == "ipv4" else 128
    net_cls = ipaddress.IPv4Network if family == "ipv4" else ipaddress.IPv6Network
    # Keep synthesised covers from swallowing the table: no cover shorter than this.
    min_cover = 8 if family == "ipv4" else 16
    parsed = [(net_cls(p), n) for p, n in rows]
    chosen = {}

    def add(net, name):
        chosen.setdefault(net, name)

    # The real nested pairs are the rarest case, so take all of them.
    max_end, prev = -1, None
    for net, name in parsed:
        if int(net.network_address) <= max_end:
            add(*prev)
            add(net, name)
        end = int(net.broadcast_address)
        if end > max_end:
            max_end, prev = end, (net, name)

    attempts = 0
    while len(chosen) < target and attempts < 100 * target:
        attempts += 1
        start = rng.randrange(len(parsed))
        run = parsed[start:start + rng.randint(4, 16)]
        for net, name in run:
            add(net, name)
        names = [n for _, n in run]
        # Covering aggregate of the whole run, and a shorter one above it (an upstream's block).
        lo = int(run[0][0].network_address)
        hi = int(run[-1][0].broadcast_address)
        plen = bits - (lo ^ hi).bit_length()
        if plen >= min_cover:
            cover = net_cls((lo >> (bits - plen) << (bits - plen), plen))
            add(cover, rng.choice(names))
            up_plen = plen - rng.randint(2, 6)
            if up_plen >= min_cover:
                add(cover.supernet(new_prefix=up_plen), rng.choice(names))
        # A more-specific punched into one member by a different AS of the cluster.
        net, name = rng.choice(run)
        if net.prefixlen + 2 <= bits:
            subs = list(net.subnets(prefixlen_diff=2))
            add(rng.choice(subs), rng.choice(names))
    out = sorted(chosen.items(), key=lambda kv: (int(kv[0].network_address), kv[0].prefixlen))
    for net, _ in out:
        ipaddress.ip_network(str(net), strict=True)
    return [(str(net), name) for net, name in out]


def build_sample(out_dir, n4, n6):
    """Write the deterministic test sample (nodes.csv, ipv4.csv, ipv6.csv) into ``out_dir``."""
    t0 = time.perf_counter()
    v4, v6 = load_both()
    rng = random.Random(SAMPLE_SEED)
    s4 = _sample_family(v4, "ipv4", n4, rng)
    s6 = _sample_family(v6, "ipv6", n6, rng)
    # Ids come from the full name set so a sample node id equals the full table's id.
    ids = node_ids([n for _, n in v4] + [n for _, n in v6])
    used = sorted({ids[n] for _, n in s4 + s6})
    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, "nodes.csv"), ["id", "address"], [(i, "") for i in used])
    write_csv(os.path.join(out_dir, "ipv4.csv"), ["prefix", "next_hop"], [(p, ids[n]) for p, n in s4])
    write_csv(os.path.join(out_dir, "ipv6.csv"), ["prefix", "next_hop"], [(p, ids[n]) for p, n in s6])
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in ("nodes.csv", "ipv4.csv", "ipv6.csv"))
    print(f"sample: {len(s4)} ipv4, {len(s6)} ipv6 prefixes, {len(used)} nodes, "
          f"{size / 1024:.0f} KiB in {time.perf_counter() - t0:.2f}s -> {out_dir}")
    return 0


def main(argv=None):
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output directory (default: bench/data/generated, or "
                    "tests/data/asn-sample with --sample)")
    ap.add_argument("--force", action="store_true", help="rebuild even if outputs are up to date")
    ap.add_argument("--sample", action="store_true", help="write the small committed test sample")
    ap.add_argument("--sample-ipv4", type=int, default=3000, help="approx. IPv4 prefixes in sample")
    ap.add_argument("--sample-ipv6", type=int, default=2000, help="approx. IPv6 prefixes in sample")
    args = ap.parse_args(argv)
    if args.sample:
        return build_sample(args.out or DEFAULT_SAMPLE_OUT, args.sample_ipv4, args.sample_ipv6)
    return build_full(args.out or DEFAULT_OUT, args.force)


if __name__ == "__main__":
    sys.exit(main())
