"""Prefix texts (jit.text) against the pure-Python twin and against ipaddress."""

import ipaddress

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jit.naive import text as naive
from jit.text import format_prefixes
from valkyrie.keys import pack_keys

HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def texts(rows, names=()):
    """Kernel and twin texts for ``rows`` of (kind, value, plen) plus name keys (key, plen)."""
    keys = [b"x"] * len(rows) + [k for k, _p in names]
    data, offsets = pack_keys(keys)
    n = len(keys)
    kind = np.array([r[0] for r in rows] + [0] * len(names), np.int8)
    v4 = np.array([r[1] if r[0] == 4 else 0 for r in rows] + [0] * len(names), np.uint32)
    v6hi = np.array([r[1] >> 64 if r[0] == 6 else 0 for r in rows] + [0] * len(names), np.uint64)
    v6lo = np.array([r[1] & (2**64 - 1) if r[0] == 6 else 0 for r in rows] + [0] * len(names), np.uint64)
    plen = np.array([r[2] for r in rows] + [p for _k, p in names], np.int16)
    sel = np.arange(n, dtype=np.int64)
    got = format_prefixes(sel, kind, v4, v6hi, v6lo, plen, data, offsets, HEX).tobytes()
    want = naive.format_prefixes(sel, kind, v4, v6hi, v6lo, plen, data, offsets)
    return got, want


CASES = [
    ((4, int(ipaddress.IPv4Address("198.51.100.7")), 24), "198.51.100.0/24"),
    ((4, 0xFFFFFFFF, 32), "255.255.255.255/32"),
    ((4, 0x0A010203, 0), "0.0.0.0/0"),
    ((6, 0, 0), "::/0"),
    ((6, 1, 128), "::1/128"),
    ((6, 1 << 112, 16), "1::/16"),
    ((6, int(ipaddress.IPv6Address("2001:db8:0:0:1:0:0:1")), 128), "2001:db8::1:0:0:1/128"),
    ((6, int(ipaddress.IPv6Address("1:0:1:1:1:1:1:1")), 128), "1:0:1:1:1:1:1:1/128"),
    ((6, int(ipaddress.IPv6Address("2001:db8:1:2:3:4:5:6")), 47), "2001:db8::/47"),
    ((6, int(ipaddress.IPv6Address("2001:db8:abcd:ffff::")), 52), "2001:db8:abcd:f000::/52"),
]


def test_fixed_cases():
    got, want = texts([row for row, _t in CASES], [(b"ci.build.linux", 72), (b"caf\xc3\xa9.x", 40)])
    assert got == want
    assert got.decode().split("\0")[:-1] == [t for _r, t in CASES] + ["ci.build.", "café"]


def test_ipv6_matches_ipaddress_outside_the_mapped_range():
    for text in ("2001:db8::", "::", "fe80::1:2", "1:2:3:4:5:6:7:8", "1:0:0:2:0:0:0:3", "0:0:1::"):
        value = int(ipaddress.IPv6Address(text))
        assert naive.ipv6_text(value) == str(ipaddress.IPv6Address(value))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just(4), st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.tuples(st.just(6), st.one_of(st.integers(0, 2**128 - 1),
                                     st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xABC]), min_size=8, max_size=8)
                                     .map(lambda gs: sum(g << (112 - 16 * i) for i, g in enumerate(gs)))),
              st.integers(0, 128))), max_size=30),
       st.lists(st.binary(min_size=0, max_size=8).filter(lambda b: b"\0" not in b)
                .map(lambda b: (b.decode("latin-1").encode(), 8 * len(b.decode("latin-1").encode()))), max_size=5))
def test_matches_the_twin(rows, names):
    got, want = texts(rows, names)
    assert got == want
