"""Plain PUT bodies staged from columns: the scan kernel against its twin and orjson, the staging against parse_put."""

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jit.naive.put_scan import scan_put as naive_scan
from jit.put_scan import scan_put
from valkyrie.nodes import Node
from valkyrie.put_plain import _WORDS, parse_plain_put
from valkyrie.routes import MAX_KEY_BYTES, RouteError
from valkyrie.writer import Batch, RouteWriter, parse_put, parse_put_body

SETTINGS = settings(max_examples=300, deadline=None)

WS = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])
# Mostly plain pieces, so most bodies are plain and the rest differ from plain in one place.
TEXT = st.one_of(
    st.sampled_from(["10.0.0.0/8", "198.51.100.7", "2001:db8::/32", "::/0", "10.0.0.1/8", "ci.build.", "job-1", "a"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12),
    st.sampled_from(["", "x" * (MAX_KEY_BYTES + 1), "x" * MAX_KEY_BYTES, "tab\there", 'quote"d', "back\\slash", "ünï"]),
)
HOP = st.sampled_from(["a", "b", "node-3"] * 10 + ["", "c\\d", "é", 'q"'])
NAMES = st.sampled_from([("prefix", "next_hop"), ("next_hop", "prefix"), ("key", "next_hop"), ("next_hop", "key")] * 10
                        + [("prefix", "key"), ("prefix", "prefix"), ("next_hop", "next_hop"), ("key", "route")])


@st.composite
def bodies(draw):
    """JSON texts near the plain shape: varied whitespace and escapes, some broken by one byte."""
    entries = []
    for _ in range(draw(st.integers(0, 4))):
        names = draw(NAMES)
        values = [draw(HOP) if n == "next_hop" else draw(TEXT) for n in names]
        ascii_only = draw(st.integers(0, 9)) > 0
        members = [f"{draw(WS)}{json.dumps(n)}{draw(WS)}:{draw(WS)}{json.dumps(v, ensure_ascii=ascii_only)}{draw(WS)}"
                   for n, v in zip(names, values)]
        if draw(st.integers(0, 29)) == 0:
            members.append(' "extra": "x"')
        entries.append("{" + ",".join(members) + "}")
    top = draw(st.sampled_from(["routes"] * 18 + ["nodes", "Routes"]))
    text = f'{draw(WS)}{{{draw(WS)}"{top}"{draw(WS)}:{draw(WS)}[{draw(WS)}{(draw(WS) + "," + draw(WS)).join(entries)}{draw(WS)}]{draw(WS)}}}{draw(WS)}'
    raw = text.encode("utf-8")
    if raw and draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + draw(st.sampled_from([b"", b",", b"}", b'"', b"\\", b"\x00"])) + raw[at + 1:]
    return raw


def kernel_scan(raw):
    ok, n, kind, start, end, hop, hop_start, hop_end = scan_put(np.frombuffer(raw, np.uint8), MAX_KEY_BYTES, *_WORDS)
    if not ok:
        return None
    hops = [raw[s:e] for s, e in zip(hop_start.tolist(), hop_end.tolist())]
    # Ordinals number the distinct hops by first appearance.
    firsts = []
    for h in hop.tolist():
        if h not in firsts:
            firsts.append(h)
    assert firsts == list(range(len(hops)))
    return [(int(k), raw[s:e], hops[h]) for k, s, e, h in zip(kind.tolist(), start.tolist(), end.tolist(), hop.tolist())]


@SETTINGS
@given(bodies())
def test_scan_matches_the_twin_and_what_orjson_reads(raw):
    got = kernel_scan(raw)
    assert got == naive_scan(raw, MAX_KEY_BYTES)
    if got is not None:
        routes = orjson.loads(raw)["routes"]
        want = [(1, r["prefix"].encode(), r["next_hop"].encode()) if "prefix" in r else
                (2, r["key"].encode(), r["next_hop"].encode()) for r in routes]
        assert got == want


def test_the_bench_body_is_plain():
    """What clients send (orjson/json.dumps of route dicts) takes the fast path."""
    routes = [{"prefix": f"10.{i}.0.0/16", "next_hop": f"n{i % 3}"} for i in range(50)]
    routes += [{"key": f"job-{i}", "next_hop": "n1"} for i in range(50)]
    for raw in (orjson.dumps({"routes": routes}), json.dumps({"routes": routes}, indent=2).encode()):
        plain = parse_plain_put(raw, 1000)
        assert plain is not None and len(plain) == 100 and plain.hops == ["n0", "n1", "n2"]


def _staged(batch_or_error):
    """The writer state after staging (or the error's text), from a writer that knows nodes a and b."""
    w = RouteWriter()
    w.stage(Batch(nodes=[Node("a"), Node("b")]))
    try:
        w.stage(batch_or_error())
    except RouteError as exc:
        return "error", exc.code, str(exc)
    return w.exact, w.prefixes, w._changed_exact, w._changed_prefix


ROUTE = st.one_of(
    st.builds(lambda p, h: {"prefix": p, "next_hop": h},
              st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "198.51.100.7", "198.51.100.7/32", "2001:db8::/32",
                               "2001:DB8::/32", "::/0", "0.0.0.0/0", "10.0.0.1/8", "::ffff:10.0.0.0/104"]),
              st.sampled_from(["a", "b", "ghost"])),
    st.builds(lambda k, h: {"key": k, "next_hop": h}, st.sampled_from(["job-1", "job-2", "10.0.0.1", "k" * 300]),
              st.sampled_from(["a", "b", "ghost"])),
)


@SETTINGS
@given(st.lists(ROUTE, min_size=1, max_size=12))
def test_plain_staging_equals_parse_put(routes):
    """Same staged state, or the same error naming the same entry, whichever parser reads the body."""
    raw = orjson.dumps({"routes": routes})
    fast = _staged(lambda: parse_put_body(raw, 100, orjson.loads))
    slow = _staged(lambda: parse_put(orjson.loads(raw), 100))
    assert fast == slow


@pytest.mark.parametrize("raw", [
    b'{"routes": [{"prefix": "ci.build.", "next_hop": "a"}]}',  # a name prefix: parse_route's
    b'{"routes": [{"prefix": "10.0.0.1/8", "next_hop": "a"}]}',  # host bits set: its error words it
    b'{"routes": [{"key": "j\\u00e9", "next_hop": "a"}]}',  # an escape
    b'{"routes": [], "nodes": []}',
    b'{"routes": [{"key": "j", "next_hop": "a"}]',  # truncated
])
def test_bodies_outside_the_plain_shape_take_parse_put(raw):
    assert parse_plain_put(raw, 100) is None


def test_limit_is_left_to_parse_put():
    raw = orjson.dumps({"routes": [{"key": f"k{i}", "next_hop": "a"} for i in range(3)]})
    assert parse_plain_put(raw, 2) is None
    with pytest.raises(RouteError, match="at most 2 per batch"):
        parse_put_body(raw, 2, orjson.loads)
