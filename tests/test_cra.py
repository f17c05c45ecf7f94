"""CraTable (jit.cra kernels) against the dict twin in jit.naive.cra."""

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jit.naive import cra as naive
from valkyrie.cra_table import CraTable
from valkyrie.keys import pack_keys

SETTINGS = settings(max_examples=120, deadline=None)


def v4(text):
    """'10.0.0.0/8' -> (prefix bytes, plen)."""
    net = ipaddress.IPv4Network(text)
    return net.network_address.packed, net.prefixlen


def v6(text):
    net = ipaddress.IPv6Network(text)
    return net.network_address.packed, net.prefixlen


def a4(text):
    return int(ipaddress.IPv4Address(text))


def split6(value):
    return value >> 64, value & (2**64 - 1)


def lookup6(table, values):
    hi = np.array([v >> 64 for v in values], dtype=np.uint64)
    lo = np.array([v & (2**64 - 1) for v in values], dtype=np.uint64)
    return table.lookup_ipv6(hi, lo)


def rules_of(routes):
    return naive.apply({}, routes)


def assert_matches(table, rules, family, keys):
    """Compare a table with the twin on ``keys`` (ints for IP, bytes for names)."""
    if family == "ipv4":
        addrs = np.array(keys, dtype=np.uint32)
        got, want = table.lookup_ipv4(addrs), naive.lookup_ipv4(rules, addrs)
    elif family == "ipv6":
        hi = np.array([k >> 64 for k in keys], dtype=np.uint64)
        lo = np.array([k & (2**64 - 1) for k in keys], dtype=np.uint64)
        got, want = table.lookup_ipv6(hi, lo), naive.lookup_ipv6(rules, hi, lo)
    else:
        data, offsets = pack_keys(list(keys))
        got, want = table.lookup_keys(data, offsets), naive.lookup_names(rules, data, offsets)
    for i, key in enumerate(keys):
        g = (int(got[0][i]), int(got[1][i]))
        w = (int(want[0][i]), int(want[1][i]))
        assert g == w, f"{family} key {key!r}: table {g}, twin {w}"
    assert sorted(table.routes()) == sorted((p, n, v) for (p, n), v in rules.items())
    assert len(table) == len(rules)


# -- table-driven cases ------------------------------------------------------------------------

V4_ROUTES = [("0.0.0.0/0", 1), ("10.0.0.0/8", 2), ("10.1.0.0/16", 3), ("10.1.2.0/24", 4),
             ("10.1.2.128/25", 5), ("10.1.2.129/32", 6), ("192.0.2.0/24", 7),
             ("255.255.255.255/32", 8), ("128.0.0.0/1", 9), ("10.1.2.0/23", 10)]
V4_CASES = [("10.1.2.129", 6, 32), ("10.1.2.130", 5, 25), ("10.1.2.1", 4, 24),
            ("10.1.3.1", 10, 23), ("10.1.4.1", 3, 16), ("10.2.0.0", 2, 8), ("11.0.0.0", 1, 0),
            ("0.0.0.0", 1, 0), ("255.255.255.255", 8, 32), ("255.255.255.254", 9, 1),
            ("192.0.2.77", 7, 24), ("192.0.3.0", 9, 1)]


def test_ipv4_cases():
    table = CraTable.build("ipv4", [(*v4(p), v) for p, v in V4_ROUTES])
    vals, plens = table.lookup_ipv4(np.array([a4(a) for a, _v, _p in V4_CASES], np.uint32))
    assert list(zip(vals.tolist(), plens.tolist())) == [(v, p) for _a, v, p in V4_CASES]
    table._check_invariants()


V6_ROUTES = [("::/0", 1), ("2001:db8::/32", 2), ("2001:db8:1::/48", 3), ("2001:db8:1::1/128", 4),
             ("2001:db8:1:2::/63", 5), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 6),
             ("fe80::/10", 7)]
V6_CASES = [("2001:db8:1::1", 4, 128), ("2001:db8:1::2", 3, 48), ("2001:db8:1:3::9", 5, 63),
            ("2001:db8:2::", 2, 32), ("2001:db9::", 1, 0), ("::", 1, 0),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 6, 128), ("febf::1", 7, 10)]


def test_ipv6_cases():
    table = CraTable.build("ipv6", [(*v6(p), v) for p, v in V6_ROUTES])
    vals, plens = lookup6(table, [int(ipaddress.IPv6Address(a)) for a, _v, _p in V6_CASES])
    assert list(zip(vals.tolist(), plens.tolist())) == [(v, p) for _a, v, p in V6_CASES]
    table._check_invariants()


NAME_ROUTES = [(b"ci.", 1), (b"ci.build.", 2), (b"ci.build.linux", 3), (b"ci.builder", 4),
               (b"svc", 5), (b"svc-a", 6)]
NAME_CASES = [(b"ci.build.linux.x86", 3, 112), (b"ci.build.linux", 3, 112),
              (b"ci.build.linu", 2, 72), (b"ci.build.", 2, 72), (b"ci.build", 1, 24),
              (b"ci.builders", 4, 80), (b"ci.", 1, 24), (b"ci", -1, -1), (b"", -1, -1),
              (b"svc-b", 5, 24), (b"svc-a", 6, 40), (b"sv", -1, -1), (b"x", -1, -1)]


def test_name_cases():
    table = CraTable.build("name", [(p, 8 * len(p), v) for p, v in NAME_ROUTES])
    data, offsets = pack_keys([k for k, _v, _p in NAME_CASES])
    vals, plens = table.lookup_keys(data, offsets)
    assert list(zip(vals.tolist(), plens.tolist())) == [(v, p) for _k, v, p in NAME_CASES]
    table._check_invariants()
    # The empty prefix matches every key, the empty one included.
    catch_all = table.updated([(b"", 0, 9)], [])
    vals, plens = catch_all.lookup_keys(*pack_keys([b"", b"x", b"sv"]))
    assert vals.tolist() == [9, 9, 9] and plens.tolist() == [0, 0, 0]


def test_delete_of_covering_prefix_restores_next_shorter():
    table = CraTable.build("ipv4", [(*v4("10.0.0.0/8"), 1), (*v4("10.1.0.0/16"), 2),
                                    (*v4("10.1.2.0/24"), 3)])
    addrs = np.array([a4("10.1.2.3"), a4("10.1.9.9")], np.uint32)
    assert table.lookup_ipv4(addrs)[0].tolist() == [3, 2]
    no16 = table.updated([], [v4("10.1.0.0/16")])
    assert no16.lookup_ipv4(addrs)[0].tolist() == [3, 1]
    no24 = no16.updated([], [v4("10.1.2.0/24")])
    assert no24.lookup_ipv4(addrs)[0].tolist() == [1, 1]
    assert no24.stats()["nodes"] == 1
    empty = no24.updated([], [v4("10.0.0.0/8")])
    assert empty.lookup_ipv4(addrs)[1].tolist() == [-1, -1]
    for t in (no16, no24, empty):
        t._check_invariants()


def test_duplicates_last_wins_and_value_update():
    table = CraTable.build("ipv4", [(*v4("10.0.0.0/8"), 1), (*v4("10.0.0.0/8"), 2)])
    assert list(table.routes()) == [(bytes([10, 0, 0, 0]), 8, 2)]
    changed = table.updated([(*v4("10.0.0.0/8"), 5), (*v4("10.0.0.0/8"), 6)], [])
    assert changed.lookup_ipv4(np.array([a4("10.9.9.9")], np.uint32))[0].tolist() == [6]
    assert table.lookup_ipv4(np.array([a4("10.9.9.9")], np.uint32))[0].tolist() == [2]
    assert len(changed) == 1


def test_updated_leaves_original_unchanged():
    routes = [(*v4("10.0.0.0/8"), 1), (*v4("10.1.2.0/24"), 2), (*v4("10.1.2.4/30"), 3)]
    table = CraTable.build("ipv4", routes)
    before = [a.copy() for a in table.arrays()]
    addrs = np.arange(a4("10.1.1.250"), a4("10.1.3.5"), dtype=np.uint32)
    answers = table.lookup_ipv4(addrs)
    newer = table.updated([(*v4("10.1.2.0/25"), 4), (*v4("10.0.0.0/8"), 9)],
                          [v4("10.1.2.4/30")])
    newer.updated([(*v4("10.1.0.0/16"), 5)], [v4("10.1.2.0/24")])
    for old, now in zip(before, table.arrays()):
        np.testing.assert_array_equal(old, now)
    for got, want in zip(table.lookup_ipv4(addrs), answers):
        np.testing.assert_array_equal(got, want)
    assert sorted(table.routes()) == sorted(routes)


def test_frozen_arrays_raise_on_write():
    for family, routes in (("ipv4", [(*v4("10.0.0.0/8"), 1)]), ("name", [(b"ab", 16, 1)])):
        table = CraTable.build(family, routes).freeze()
        for arr in table.arrays():
            assert not arr.flags.writeable
            if arr.size:
                with pytest.raises(ValueError):
                    arr[0] = arr[0]


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "name"])
def test_fragmentation_and_defragmented(family):
    rng = np.random.default_rng(7)
    if family == "name":
        routes = [(f"svc-{i:04d}.zone".encode(), 0, i) for i in range(300)]
        routes = [(p, 8 * len(p), v) for p, _n, v in routes]
        keys = [p for p, _n, _v in routes] + [p + b".x" for p, _n, _v in routes] + [b"svc-"]
    else:
        width = 4 if family == "ipv4" else 16
        raw = rng.integers(0, 256, size=(300, width), dtype=np.uint8)
        plens = rng.integers(8, 8 * width + 1, size=300)
        routes = [(naive.mask_prefix(raw[i].tobytes(), int(plens[i])), int(plens[i]), i)
                  for i in range(300)]
        keys = [int.from_bytes(p, "big") for p, _n, _v in routes]
    table = CraTable.build(family, routes)
    assert table.stats()["fragmentation"] == 0.0
    fragmented = table.updated([], [(p, n) for p, n, _v in routes[::2]])
    frag = fragmented.stats()["fragmentation"]
    assert frag > 0 and fragmented.stats()["dead_slots"] > 0
    compact = fragmented.defragmented()
    assert compact.stats()["fragmentation"] == 0.0
    assert compact.stats()["arena_slots"] < fragmented.stats()["arena_slots"]
    rules = rules_of(routes[1::2])
    for t in (fragmented, compact):
        t._check_invariants()
        assert_matches(t, rules, family, keys)


def test_updates_from_an_older_snapshot_fork():
    base = CraTable.build("ipv4", [(*v4("10.0.0.0/8"), 1)])
    left = base.updated([(*v4("10.1.0.0/16"), 2)], [])
    right = base.updated([(*v4("10.2.0.0/16"), 3)], [])
    left2 = left.updated([(*v4("10.1.1.0/24"), 4)], [])
    addrs = np.array([a4("10.1.1.1"), a4("10.2.1.1"), a4("10.3.0.0")], np.uint32)
    assert base.lookup_ipv4(addrs)[0].tolist() == [1, 1, 1]
    assert left.lookup_ipv4(addrs)[0].tolist() == [2, 1, 1]
    assert right.lookup_ipv4(addrs)[0].tolist() == [1, 3, 1]
    assert left2.lookup_ipv4(addrs)[0].tolist() == [4, 1, 1]
    assert left.updated([], [v4("10.1.0.0/16")]).lookup_ipv4(addrs)[0].tolist() == [1, 1, 1]


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "name"])
def test_value_changes_copy_no_node_and_older_snapshots_keep_their_values(family):
    if family == "name":
        routes = [(f"svc-{i:03d}".encode(), 56, i) for i in range(200)]
        keys = [p for p, _n, _v in routes]
    else:
        width = 4 if family == "ipv4" else 16
        routes = [(bytes([10, i % 256, i // 256]) + bytes(width - 3), 24, i) for i in range(200)]
        keys = [int.from_bytes(p, "big") + 1 for p, _n, _v in routes]
    table = CraTable.build(family, routes)
    changed = table.updated([(p, n, v + 1000) for p, n, v in routes], [])
    before, after = table.stats(), changed.stats()
    assert after["dead_slots"] == before["dead_slots"] == 0
    assert (after["arena_slots"], after["route_ids"]) == (before["arena_slots"], before["route_ids"])
    assert_matches(table, rules_of(routes), family, keys)
    assert_matches(changed, rules_of([(p, n, v + 1000) for p, n, v in routes]), family, keys)
    changed._check_invariants()


def test_arena_grows_from_tiny_capacity():
    table = CraTable.build("ipv4", [], initial_capacity=0)
    rules = {}
    for step in range(5):
        batch = [(bytes([10, step, i, 0]), 24, i) for i in range(60)]
        table = table.updated(batch, [])
        rules = naive.apply(rules, batch)
    table._check_invariants()
    assert_matches(table, rules, "ipv4", [a4(f"10.{s}.{i}.1") for s in range(5) for i in range(64)])


def test_missing_delete_is_ignored_or_raises():
    table = CraTable.build("ipv4", [(*v4("10.0.0.0/8"), 1)])
    assert len(table.updated([], [v4("11.0.0.0/8")])) == 1
    with pytest.raises(KeyError, match="11.0.0.0/8"):
        table.updated([], [v4("11.0.0.0/8")], missing_ok=False)
    assert len(table.updated([(*v4("11.0.0.0/8"), 2)], [v4("11.0.0.0/8")],
                             missing_ok=False)) == 1


@pytest.mark.parametrize("family,routes,message", [
    ("ipv4", [(bytes([10, 0, 0, 1]), 8, 1)], "beyond the prefix length"),
    ("ipv4", [(bytes([10, 0, 0]), 8, 1)], "must be 4 bytes"),
    ("ipv4", [(bytes(4), 33, 1)], "outside 0..32"),
    ("ipv6", [(bytes(15) + b"\x01", 127, 1)], "beyond the prefix length"),
    ("ipv4", [(bytes(4), 0, -1)], "outside 0.."),
    ("name", [(b"abc", 16, 1)], "needs plen 24"),
    ("mpls", [], "unknown family"),
])
def test_bad_routes_raise_value_error(family, routes, message):
    with pytest.raises(ValueError, match=message):
        CraTable.build(family, routes)


def test_wrong_family_lookup_raises():
    table = CraTable.build("name", [(b"a", 8, 1)])
    with pytest.raises(ValueError, match="ipv4"):
        table.lookup_ipv4(np.zeros(1, np.uint32))
    with pytest.raises(TypeError):
        CraTable.build("ipv4", [(bytes(4), 0, 1)]).lookup_ipv4(np.zeros(1, np.float64))


def test_empty_tables_and_batches():
    for family in ("ipv4", "ipv6", "name"):
        table = CraTable.build(family, [])
        assert len(table) == 0 and list(table.routes()) == []
        assert table.stats()["fragmentation"] == 0.0
        table._check_invariants()
    assert CraTable.build("ipv4", []).lookup_ipv4(np.array([7], np.uint32))[0].tolist() == [-1]
    assert CraTable.build("ipv6", []).lookup_ipv6([1], [2])[1].tolist() == [-1]
    vals, plens = CraTable.build("name", []).lookup_keys(*pack_keys([b"", b"a"]))
    assert vals.tolist() == [-1, -1]
    vals, plens = CraTable.build("name", [(b"", 0, 3)]).lookup_keys(*pack_keys([]))
    assert vals.shape == (0,)


def test_stats_keys():
    stats = CraTable.build("ipv4", [(*v4("10.1.2.0/24"), 1)]).stats()
    for key in ("family", "routes", "nodes", "arena_slots", "dead_slots", "fragmentation",
                "nbytes"):
        assert key in stats
    assert stats["routes"] == 1 and stats["nodes"] == 2


# -- property tests against the twin -------------------------------------------------------------

# A few anchors make nested and overlapping prefixes common.
V4_ANCHORS = [0x0A000000, 0x0A010200, 0xC0A80000, 0xFFFFFFFF, 0x00000000, 0x7F000001]


@st.composite
def v4_prefix(draw):
    base = draw(st.one_of(st.sampled_from(V4_ANCHORS), st.integers(0, 2**32 - 1)))
    base ^= draw(st.integers(0, 255)) if draw(st.booleans()) else 0
    plen = draw(st.one_of(st.sampled_from([0, 1, 8, 15, 16, 17, 23, 24, 25, 31, 32]),
                          st.integers(0, 32)))
    masked = base & ~((1 << (32 - plen)) - 1) & 0xFFFFFFFF
    return masked.to_bytes(4, "big"), plen


def v4_probes(rules, extra):
    keys = list(extra)
    for prefix, plen in rules:
        start = int.from_bytes(prefix, "big")
        end = start | ((1 << (32 - plen)) - 1)
        keys += [start, end, (start + end) // 2, (start - 1) % 2**32, (end + 1) % 2**32]
    return keys


route_values = st.integers(0, 2**31 - 1)


@st.composite
def steps(draw, prefix):
    """A list of (upserts, deletes) batches drawn over one prefix strategy."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        ups = draw(st.lists(st.tuples(prefix, route_values), max_size=8))
        dels = draw(st.lists(prefix, max_size=4))
        out.append(([(p, n, v) for (p, n), v in ups], dels))
    return out


def run_property(family, routes, batches, probe):
    table = CraTable.build(family, routes)
    rules = rules_of(routes)
    table._check_invariants()
    assert_matches(table, rules, family, probe(rules))
    first, first_rules = table, rules
    for ups, dels in batches:
        # Deleting existing routes as well as random ones keeps deletes meaningful.
        dels = dels + [k for i, k in enumerate(sorted(rules)) if i % 3 == 0]
        table = table.updated(ups, dels)
        rules = naive.apply(rules, ups, dels)
        table._check_invariants()
        assert_matches(table, rules, family, probe(rules))
    assert_matches(first, first_rules, family, probe(first_rules))
    compact = table.defragmented()
    assert compact.stats()["dead_slots"] == 0
    assert_matches(compact, rules, family, probe(rules))


@SETTINGS
@given(st.lists(st.tuples(v4_prefix(), route_values), max_size=40), steps(v4_prefix()),
       st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_ipv4_random_vs_twin(routes, batches, extra):
    routes = [(p, n, v) for (p, n), v in routes]
    run_property("ipv4", routes, batches, lambda rules: v4_probes(rules, extra))


V6_ANCHORS = [0x20010DB8 << 96, 0xFE80 << 112, 0, 2**128 - 1, (0x20010DB8 << 96) | (1 << 64)]


@st.composite
def v6_prefix(draw):
    base = draw(st.one_of(st.sampled_from(V6_ANCHORS), st.integers(0, 2**128 - 1)))
    base ^= draw(st.integers(0, 2**16 - 1)) << draw(st.sampled_from([0, 48, 64, 100, 112]))
    plen = draw(st.one_of(st.sampled_from([0, 16, 17, 32, 48, 63, 64, 65, 127, 128]),
                          st.integers(0, 128)))
    masked = base & ~((1 << (128 - plen)) - 1) & (2**128 - 1)
    return masked.to_bytes(16, "big"), plen


def v6_probes(rules, extra):
    keys = list(extra)
    for prefix, plen in rules:
        start = int.from_bytes(prefix, "big")
        end = start | ((1 << (128 - plen)) - 1)
        keys += [start, end, (start + end) // 2, (start - 1) % 2**128, (end + 1) % 2**128]
    return keys


@SETTINGS
@given(st.lists(st.tuples(v6_prefix(), route_values), max_size=30), steps(v6_prefix()),
       st.lists(st.integers(0, 2**128 - 1), max_size=10))
def test_ipv6_random_vs_twin(routes, batches, extra):
    routes = [(p, n, v) for (p, n), v in routes]
    run_property("ipv6", routes, batches, lambda rules: v6_probes(rules, extra))


names = st.binary(max_size=6).map(lambda b: bytes(b"ab."[x % 3] for x in b))
name_prefix = names.map(lambda p: (p, 8 * len(p)))


def name_probes(rules, extra):
    keys = list(extra)
    for prefix, _plen in rules:
        keys += [prefix, prefix + b"a", prefix + b".b", prefix[:-1]]
    return keys


@SETTINGS
@given(st.lists(st.tuples(name_prefix, route_values), max_size=30), steps(name_prefix),
       st.lists(names, max_size=20))
def test_names_random_vs_twin(routes, batches, extra):
    routes = [(p, n, v) for (p, n), v in routes]
    run_property("name", routes, batches, lambda rules: name_probes(rules, extra))


def test_larger_random_ipv4_vs_twin():
    rng = np.random.default_rng(11)
    n = 3000
    bases = rng.integers(0, 2**32, size=n, dtype=np.uint64)
    plens = rng.choice([8, 12, 16, 18, 20, 22, 24, 24, 24, 28, 32], size=n)
    routes = []
    for b, p in zip(bases.tolist(), plens.tolist()):
        b = (b & 0x0FFFFFFF) | 0x0A000000  # crowd them into 10/8 so they nest
        routes.append(((b & ~((1 << (32 - p)) - 1) & 0xFFFFFFFF).to_bytes(4, "big"), p, len(routes)))
    table = CraTable.build("ipv4", routes)
    rules = rules_of(routes)
    addrs = (rng.integers(0, 2**28, size=4000) | 0x0A000000).tolist()
    assert_matches(table, rules, "ipv4", addrs)
    ups = [(p, n, v + 1) for p, n, v in routes[:200]]
    dels = [(p, n) for p, n, _v in routes[200:600]]
    newer = table.updated(ups, dels)
    newer._check_invariants()
    assert_matches(newer, naive.apply(rules, ups, dels), "ipv4", addrs)
