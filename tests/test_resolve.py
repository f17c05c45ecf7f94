"""The fused lookup kernel (jit.resolve, through Snapshot) against its pure-Python twin."""

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jit.naive import cra as naive_cra
from jit.naive.resolve import resolve as naive_resolve
from jit.tables import LAYOUT, describe
from valkyrie.cra_table import CraTable
from valkyrie.fit_table import FitTable
from valkyrie.snapshot import MATCH_NAMES, Snapshot

SETTINGS = settings(max_examples=80, deadline=None)


def snapshot(exact, v4, v6, names, default=-1, *, updates=None):
    """A frozen Snapshot of the given twin-format routes; ``updates`` are applied copy-on-write on top."""
    fit = FitTable.build(list(exact), list(exact.values()))
    tables = {f: CraTable.build(f, [(p, n, v) for (p, n), v in rules.items()])
              for f, rules in (("ipv4", v4), ("ipv6", v6), ("name", names))}
    if updates:
        for family, (ups, dels) in updates.items():
            tables[family] = tables[family].updated(ups, dels)
    snap = Snapshot(epoch=1, nodes=None, exact=fit, ipv4=tables["ipv4"], ipv6=tables["ipv6"],
                    names=tables["name"], default=default)
    return snap.freeze()


def check(snap, keys, exact, v4, v6, names, default=-1):
    res = snap.resolve(keys)
    got = list(zip(res.node.tolist(), res.match.tolist(), res.plen.tolist()))
    want = naive_resolve(keys, exact, v4, v6, names, default)
    for key, g, w in zip(keys, got, want):
        assert g == w, f"key {key!r}: kernel {g}, twin {w}"


def v4(text, value):
    net = ipaddress.IPv4Network(text)
    return (net.network_address.packed, net.prefixlen), value


def v6(text, value):
    net = ipaddress.IPv6Network(text)
    return (net.network_address.packed, net.prefixlen), value


EXACT = {b"job-42": 0, b"10.1.2.3": 5, b"": 6}
V4 = dict([v4("10.0.0.0/8", 1), v4("10.1.0.0/16", 2), v4("198.51.100.0/24", 3)])
V6 = dict([v6("2001:db8::/32", 1), v6("2001:db8:1::/48", 4)])
NAMES = {(b"ci.build.", 72): 2, (b"ci.", 24): 7}
CASES = [
    (b"job-42", 0, "exact", -1),
    (b"10.1.2.3", 5, "exact", -1),  # an exact route wins over the covering prefix
    (b"10.1.9.9", 2, "prefix", 16),
    (b"10.200.0.1", 1, "prefix", 8),
    (b"198.51.100.7", 3, "prefix", 24),
    (b"2001:db8:1::7", 4, "prefix", 48),
    (b"2001:db8:ff::", 1, "prefix", 32),
    (b"ci.build.linux.x86", 2, "prefix", 72),
    (b"ci.test", 7, "prefix", 24),
    (b"", 6, "exact", -1),
    (b"11.0.0.1", 9, "default", -1),
    (b"010.1.2.3", 9, "default", -1),  # not an address (leading zero): a name, and no name matches
    (b"fe80::1%eth0", 9, "default", -1),  # scoped: routed as a name
]


def test_fixed_cases_with_and_without_default():
    snap = snapshot(EXACT, V4, V6, NAMES, default=9)
    res = snap.resolve([k for k, *_ in CASES])
    got = [(n, MATCH_NAMES[m], p) for n, m, p in zip(res.node.tolist(), res.match.tolist(), res.plen.tolist())]
    assert got == [(n, m, p) for _k, n, m, p in CASES]
    check(snapshot(EXACT, V4, V6, NAMES), [k for k, *_ in CASES], EXACT, V4, V6, NAMES)


def test_empty_tables_and_empty_batch():
    snap = snapshot({}, {}, {}, {})
    res = snap.resolve([b"1.2.3.4", b"::1", b"name"])
    assert res.node.tolist() == [-1, -1, -1] and res.match.tolist() == [0, 0, 0]
    assert len(snap.resolve([])) == 0


def test_counts_fit_operations():
    snap = snapshot(EXACT, V4, V6, NAMES)
    before = snap.exact.stats()["operations"]
    snap.resolve([b"job-42", b"1.2.3.4"])
    assert snap.exact.stats()["operations"] == before + 2


# -- property-based ----------------------------------------------------------------------------

values = st.integers(0, 1000)
v4_prefix = st.builds(lambda a, n: (naive_cra.mask_prefix(a.to_bytes(4, "big"), n), n),
                      st.integers(0, 2**32 - 1), st.integers(0, 32))
v6_prefix = st.builds(lambda a, n: (naive_cra.mask_prefix(a.to_bytes(16, "big"), n), n),
                      st.integers(0, 2**128 - 1), st.sampled_from([0, 1, 16, 32, 47, 48, 64, 100, 128]))
short_names = st.binary(max_size=5).map(lambda b: bytes(b"ab."[x % 3] for x in b))
name_prefix = short_names.map(lambda p: (p, 8 * len(p)))


@st.composite
def tables_and_keys(draw):
    v4_rules = dict(draw(st.lists(st.tuples(v4_prefix, values), max_size=25)))
    v6_rules = dict(draw(st.lists(st.tuples(v6_prefix, values), max_size=15)))
    name_rules = dict(draw(st.lists(st.tuples(name_prefix, values), max_size=15)))
    exact = dict(draw(st.lists(st.tuples(st.one_of(short_names, st.binary(max_size=40)), values), max_size=20)))
    # Keys: addresses inside and outside the prefixes, names, exact keys, and arbitrary bytes.
    inside4 = [str(ipaddress.IPv4Address(int.from_bytes(p, "big") | draw(st.integers(0, 2**(32 - n) - 1)))).encode()
               for p, n in v4_rules]
    inside6 = [str(ipaddress.IPv6Address(int.from_bytes(p, "big") | draw(st.integers(0, 2**(128 - n) - 1)))).encode()
               for p, n in v6_rules]
    randoms = draw(st.lists(st.one_of(
        st.integers(0, 2**32 - 1).map(lambda a: str(ipaddress.IPv4Address(a)).encode()),
        st.integers(0, 2**128 - 1).map(lambda a: str(ipaddress.IPv6Address(a)).encode()),
        short_names, st.binary(max_size=12)), max_size=20))
    keys = inside4 + inside6 + randoms + list(exact)[:5]
    default = draw(st.sampled_from([-1, 999]))
    return exact, v4_rules, v6_rules, name_rules, default, draw(st.permutations(keys))


@SETTINGS
@given(tables_and_keys())
def test_matches_the_twin(case):
    exact, v4_rules, v6_rules, name_rules, default, keys = case
    check(snapshot(exact, v4_rules, v6_rules, name_rules, default), keys, exact, v4_rules, v6_rules,
          name_rules, default)


@SETTINGS
@given(tables_and_keys(), st.lists(st.tuples(v4_prefix, values), max_size=8), st.lists(v4_prefix, max_size=4),
       st.lists(st.tuples(name_prefix, values), max_size=6), st.lists(name_prefix, max_size=3))
def test_matches_the_twin_after_copy_on_write_updates(case, ups4, dels4, upsn, delsn):
    exact, v4_rules, v6_rules, name_rules, default, keys = case
    updates = {"ipv4": ([(p, n, v) for (p, n), v in ups4], dels4),
               "name": ([(p, n, v) for (p, n), v in upsn], delsn)}
    snap = snapshot(exact, v4_rules, v6_rules, name_rules, default, updates=updates)
    v4_after = naive_cra.apply(v4_rules, updates["ipv4"][0], dels4)
    names_after = naive_cra.apply(name_rules, updates["name"][0], delsn)
    check(snap, keys, exact, v4_after, v6_rules, names_after, default)


@SETTINGS
@given(tables_and_keys())
def test_single_key_answers_match_the_batch(case):
    """The one-key kernel is a walk of its own: the same answers, texts included, as the batch (checked against the twin)."""
    exact, v4_rules, v6_rules, name_rules, default, keys = case
    snap = snapshot(exact, v4_rules, v6_rules, name_rules, default)
    snap.nodes = _Ids()
    check(snap, keys, exact, v4_rules, v6_rules, name_rules, default)
    res = snap.resolve(keys)
    batch = snap.answers(res, keys)
    for key, want in zip(keys, batch):
        assert snap.answer(key, key) == want


class _Ids:
    """Stands in for a NodeTable: node i is called "n<i>"."""

    ids = [f"n{i}" for i in range(1001)]
    id_or_none = __import__("numpy").array([*ids, None], dtype=object)


def test_table_descriptor_refuses_a_part_of_the_wrong_type():
    """A table whose array changed dtype fails by name, instead of being read as the wrong type."""
    snap = snapshot(EXACT, V4, V6, NAMES)
    parts = list(snap._tables()[1])
    assert describe(parts).shape == (2 * len(LAYOUT),)
    parts[7] = parts[7].astype(np.int64)
    with pytest.raises(TypeError, match="v4_slots must be a contiguous 1-d int32 array, got int64"):
        describe(parts)
    with pytest.raises(TypeError, match="expected 25 table parts, got 24"):
        describe(parts[:-1])
