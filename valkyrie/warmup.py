"""Compile (or load from cache) every kernel signature the server uses, before it reports ready."""

import time

from valkyrie.metrics import LatencyRecorder
from valkyrie.nodes import Node
from valkyrie.put_plain import parse_plain_put
from valkyrie.rcu import RcuDomain
from valkyrie.routes import parse_route
from valkyrie.writer import Batch, RouteWriter, parse_delete, parse_put

__all__ = ["warm_kernels"]

_KEYS = [b"10.1.2.3", b"2001:db8::1", b"ci.build.linux", b"job-1", b"", b"nothing"]


def warm_kernels():
    """Run every lookup and update path once on a tiny table; returns seconds taken."""
    started = time.perf_counter()
    writer = RouteWriter(fit_load_factor=0.75)
    routes = [
        {"prefix": "10.0.0.0/8", "next_hop": "n"},
        {"prefix": "2001:db8::/32", "next_hop": "n"},
        {"prefix": "ci.build.", "next_hop": "n"},
        {"key": "job-1", "next_hop": "n"},
    ]
    writer.stage(Batch(nodes=[Node("n")], puts=[parse_route(r) for r in routes], default_route="n"))
    first = writer.build()
    first.answers(first.resolve(_KEYS), [k.decode() for k in _KEYS])
    for key in _KEYS:
        first.answer(key, key.decode())
    writer.stage(Batch(puts=[parse_route({"prefix": "10.1.0.0/16", "next_hop": "n"}),
                             parse_route({"prefix": "2001:db8:1::/48", "next_hop": "n"}),
                             parse_route({"prefix": "ci.", "next_hop": "n"}),
                             parse_route({"key": "job-2", "next_hop": "n"})]))
    second = writer.build(first)
    second.resolve(_KEYS)
    writer.rebuild_fit(second, load_factor=0.5).resolve(_KEYS)
    # The PUT body parsers (decoded, and plain bodies scanned as bytes) and the delete kernels: a first
    # DELETE compiled fit_delete (~1s) otherwise.
    writer.stage(parse_put({"routes": [{"prefix": "10.2.0.0/16", "next_hop": "n"}, {"key": "job-3", "next_hop": "n"}]}, 10))
    plain = parse_plain_put(b'{"routes": [{"prefix": "10.3.0.0/16", "next_hop": "n"}, {"prefix": "2001:db8:3::/48", '
                            b'"next_hop": "n"}, {"key": "job-4", "next_hop": "n"}]}', 10)
    assert plain is not None, "the warm-up body is plain"
    writer.stage(Batch(plain=plain))
    third = writer.build(second)
    writer.stage(parse_delete({"routes": [{"prefix": "10.1.0.0/16"}, {"prefix": "2001:db8:1::/48"}, {"prefix": "ci."},
                                          {"key": "job-2"}]}, 10))
    fourth = writer.build(third)
    for table in (fourth.ipv4, fourth.ipv6, fourth.names):
        table.defragmented()
    # What every request and scrape runs: the latency histogram and the RCU reader scan.
    latency = LatencyRecorder()
    latency.observe(1e-5)
    latency.quantiles()
    rcu = RcuDomain()
    rcu.publish(fourth)
    rcu.stats()
    return time.perf_counter() - started
