"""Compile (or load from cache) every kernel signature the server uses, before it reports ready."""

import time

from valkyrie.nodes import Node
from valkyrie.routes import parse_route
from valkyrie.writer import Batch, RouteWriter

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
    return time.perf_counter() - started
