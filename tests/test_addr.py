"""jit.addr.parse_addresses against its ipaddress twin."""

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jit import addr as kernels
from jit.naive import addr as naive
from valkyrie.keys import pack_keys

SETTINGS = settings(max_examples=200, deadline=None)


def parse(keys):
    data, offsets = pack_keys(keys)
    return kernels.parse_addresses(data, offsets)


def assert_same(keys, kernel=kernels.parse_addresses, twin=naive.parse_addresses):
    """Kernel and twin agree on every key; returns the kernel's columns."""
    data, offsets = pack_keys(keys)
    got = kernel(data, offsets)
    want = twin(data, offsets)
    for i, key in enumerate(keys):
        g = tuple(int(a[i]) for a in got)
        w = tuple(int(a[i]) for a in want)
        assert g == w, f"{key!r}: kernel {g}, ipaddress {w}"
    return got


V4 = [
    ("0.0.0.0", 0),
    ("255.255.255.255", 0xFFFFFFFF),
    ("192.0.2.1", 0xC0000201),
    ("10.0.0.255", 0x0A0000FF),
]
V6 = [
    "::", "::1", "1::", "1::2", "2001:db8::", "2001:db8:0:0:0:0:0:1", "fe80::1:2:3:4:5:6",
    "::ffff:192.0.2.1", "::192.0.2.1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "FFFF::abcd",
    "0000:0000:0000:0000:0000:0000:0000:0001", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
    "1:2:3:4:5::1.2.3.4", "a:b:c:d:e:f:0:1",
]
NAMES = [
    "", "ci.build.linux", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "256.1.1.1", "1.2.3.",
    ".1.2.3", "1..2.3", "1.2.3.4 ", " 1.2.3.4", "1.2.3.+4", "1.2.3.-4", "0x1.2.3.4", "1.2.3.4/32",
    ":", ":::", "1:2", "1::2::3", ":1::2", "1::2:", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "12345::", "g::", "fe80::1%eth0", "fe80::1%",
    "::1.2.3", "::1.2.3.04", "1.2.3.4::", "::1.2.3.4:1", "1:2:3:4:5:6:7:1.2.3.4", "::ffff:1.2.3.256",
    "2001:db8::/32", "１.２.３.４", "١.٢.٣.٤", "1:2:3:4:5:6:7:8%1", "1:2:3:4:5:6:7:", ":2:3:4:5:6:7:8",
    "0.0.0.0.0", "1.2.3.4\n", "::\x00",
]


@pytest.mark.parametrize("text,value", V4)
def test_ipv4_cases(text, value):
    kind, v4, _hi, _lo = parse([text.encode()])
    assert (int(kind[0]), int(v4[0])) == (4, value)


@pytest.mark.parametrize("text", V6)
def test_ipv6_cases(text):
    kind, _v4, hi, lo = parse([text.encode()])
    want = int(ipaddress.IPv6Address(text))
    assert int(kind[0]) == 6
    assert (int(hi[0]) << 64) | int(lo[0]) == want


@pytest.mark.parametrize("text", NAMES)
def test_names_cases(text):
    kind, v4, hi, lo = parse([text.encode()])
    assert int(kind[0]) == 0
    assert int(v4[0]) == int(hi[0]) == int(lo[0]) == 0


def test_fixed_cases_match_twin():
    keys = [t.encode() for t, _v in V4] + [t.encode() for t in V6 + NAMES]
    assert_same(keys + [b"\xff\xfe", b"1.2.3.\xff", b"::\xc3\xa9"])


def test_empty_batch():
    data, offsets = pack_keys([])
    kind, v4, hi, lo = kernels.parse_addresses(data, offsets)
    assert kind.shape == v4.shape == hi.shape == lo.shape == (0,)


def _v6_texts(value):
    addr = ipaddress.IPv6Address(value)
    words = addr.exploded.split(":")
    yield addr.compressed
    yield addr.exploded
    yield ":".join(w.lstrip("0") or "0" for w in words)
    yield ":".join(words[:6]) + ":" + str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    yield addr.compressed.upper()


@SETTINGS
@given(st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_random_ipv4_values(values):
    keys = [str(ipaddress.IPv4Address(v)).encode() for v in values]
    kind, v4, _hi, _lo = parse(keys)
    assert (kind == 4).all()
    assert v4.tolist() == values


@SETTINGS
@given(st.lists(st.one_of(st.integers(0, 2**128 - 1),
                          st.integers(0, 2**16 - 1).map(lambda w: w << 64),
                          st.integers(0, 2**32 - 1)), max_size=10))
def test_random_ipv6_texts(values):
    keys = [t.encode() for v in values for t in _v6_texts(v)]
    assert_same(keys)
    kind, _v4, hi, lo = parse(keys)
    assert (kind == 6).all()


@SETTINGS
@given(st.lists(st.text(alphabet="0123456789abcdefABCDEFxg:.%/ ", max_size=42), max_size=30))
def test_random_text_matches_twin(texts):
    assert_same([t.encode() for t in texts])


@SETTINGS
@given(st.lists(st.lists(st.sampled_from(["0", "00", "1", "12", "255", "256", "099", "ffff",
                                          "fffff", "", "1.2.3.4", "01.2.3.4", "0.0.0.0"]),
                         min_size=1, max_size=10).map(":".join), max_size=20))
def test_structured_colon_text_matches_twin(texts):
    assert_same([t.encode() for t in texts])


@SETTINGS
@given(st.lists(st.binary(max_size=20), max_size=20))
def test_random_bytes_match_twin(keys):
    assert_same(keys)


# -- parse_prefixes: the route loaders' fast path --------------------------------------------------

def assert_prefixes_same(texts):
    return assert_same(texts, kernels.parse_prefixes, naive.parse_prefixes)


PREFIXES = [
    (b"10.0.0.0/8", 4, 8), (b"0.0.0.0/0", 4, 0), (b"198.51.100.7", 4, 32), (b"198.51.100.7/32", 4, 32),
    (b"10.0.0.0/08", 4, 8), (b"2001:db8::/32", 6, 32), (b"::/0", 6, 0), (b"::1", 6, 128),
    (b"2001:db8:8000::/33", 6, 33), (b"::ffff:192.0.2.0/120", 6, 120), (b"2001:db8::1/128", 6, 128),
    (b"2001:db8:0:1::/64", 6, 64), (b"2001:db8::1:0/112", 6, 112),
]
NOT_FAST = [
    b"10.0.0.0/33", b"300.1.1.1/8", b"10.0.0.1/8", b"10.0.0.0/", b"10.0.0.0/0008", b"10.0.0.0/255.0.0.0",
    b"10.0.0.0/a", b"2001:db8::1/32", b"2001:db8::/129", b"2001:db8::/-1", b"ci.build.", b"fe80::%eth0/64",
    b"", b"/8", b"10.0.0.0/8/8", b"2001:db8:0:1::1/64", b"::1/127", b"1.2.3.4 /32",
]


def test_prefix_cases():
    kind, _v4, _hi, _lo, plen = assert_prefixes_same([t for t, _k, _p in PREFIXES] + NOT_FAST)
    assert list(zip(kind.tolist(), plen.tolist())) == [(k, p) for _t, k, p in PREFIXES] + [(0, -1)] * len(NOT_FAST)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.booleans()), max_size=20),
       st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128), st.booleans()), max_size=10))
def test_random_networks_match_twin(v4s, v6s):
    texts = []
    for value, plen, masked in v4s:
        if masked:
            value &= ((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1)
        texts.append(f"{ipaddress.IPv4Address(value)}/{plen}".encode())
    for value, plen, masked in v6s:
        if masked:
            value &= ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
        texts.extend(f"{t}/{plen}".encode() for t in _v6_texts(value))
    assert_prefixes_same(texts)


@SETTINGS
@given(st.lists(st.text(alphabet="0123456789abcdefx:./ ", max_size=24), max_size=30))
def test_random_prefix_text_matches_twin(texts):
    assert_prefixes_same([t.encode() for t in texts])
