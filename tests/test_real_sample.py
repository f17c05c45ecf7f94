"""CRA longest-prefix match on a real-data ASN sample agrees with pytricia, address by address.

The sample (tests/data/asn-sample, made by ``bench/data/build_tables.py --sample``) is drawn from
GeoLite2-derived ASN networks and carries nested prefixes up to several levels deep.
"""

import csv
import ipaddress
import os
import random

import numpy as np
import pytest

pytricia = pytest.importorskip("pytricia")

from valkyrie.cra_table import CraTable  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "asn-sample")
N_ADDRS = 20_000
SEED = 1337


def _read_csv(name):
    with open(os.path.join(SAMPLE, name), newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [row for row in reader]


@pytest.fixture(scope="module")
def sample():
    header, nodes = _read_csv("nodes.csv")
    assert header == ["id", "address"]
    node_ids = [row[0] for row in nodes]
    index = {n: i for i, n in enumerate(node_ids)}
    assert len(index) == len(node_ids), "node ids must be unique"
    tables = {}
    for family in ("ipv4", "ipv6"):
        header, rows = _read_csv(f"{family}.csv")
        assert header == ["prefix", "next_hop"]
        nets = [(ipaddress.ip_network(p, strict=True), hop) for p, hop in rows]
        assert all(hop in index for _, hop in nets), "every next hop must be a known node"
        tables[family] = nets
    return node_ids, index, tables


def _addresses(nets, bits, rng):
    """Half inside random table prefixes (random host bits), half uniform over the space."""
    out = []
    for _ in range(N_ADDRS // 2):
        net, _ = nets[rng.randrange(len(nets))]
        host_bits = bits - net.prefixlen
        out.append(int(net.network_address) | (rng.getrandbits(host_bits) if host_bits else 0))
    out.extend(rng.getrandbits(bits) for _ in range(N_ADDRS - len(out)))
    return out


def _check(family, sample):
    node_ids, index, tables = sample
    nets = tables[family]
    bits = 32 if family == "ipv4" else 128
    routes = [(net.network_address.packed, net.prefixlen, index[hop]) for net, hop in nets]
    cra = CraTable.build(family, routes)
    assert len(cra) == len(nets)
    trie = pytricia.PyTricia(bits)
    for net, hop in nets:
        trie[str(net)] = hop

    addrs = _addresses(nets, bits, random.Random(SEED + bits))
    if family == "ipv4":
        values, plens = cra.lookup_ipv4(np.array(addrs, dtype=np.uint32))
    else:
        hi = np.array([a >> 64 for a in addrs], dtype=np.uint64)
        lo = np.array([a & 0xFFFF_FFFF_FFFF_FFFF for a in addrs], dtype=np.uint64)
        values, plens = cra.lookup_ipv6(hi, lo)
    assert len(values) == len(plens) == len(addrs)

    mismatches = []
    for a, v, pl in zip(addrs, values.tolist(), plens.tolist()):
        packed = a.to_bytes(bits // 8, "big")
        want_hop = trie.get(packed)
        want_key = trie.get_key(packed)
        want_plen = int(want_key.rsplit("/", 1)[1]) if want_key is not None else None
        got_hop = node_ids[v] if v >= 0 else None
        got_plen = pl if v >= 0 else None
        if (got_hop, got_plen) != (want_hop, want_plen):
            mismatches.append((str(ipaddress.ip_address(a)), got_hop, got_plen, want_hop, want_key))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"
    # The half drawn inside prefixes must all route; guards against a vacuous all-miss pass.
    assert (values[: N_ADDRS // 2] >= 0).all()


def test_ipv4_sample_matches_pytricia(sample):
    _check("ipv4", sample)


def test_ipv6_sample_matches_pytricia(sample):
    _check("ipv6", sample)
