"""``GET /v1/routes`` on a real server: filters, cursor pages (stable under concurrent changes), JSON and CSV, streaming, bad queries."""

import asyncio
import base64
import csv
import io
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from tests.realserver import RealServer, http, write_config
from valkyrie.export import ViewCache, decode_cursor, encode_cursor
from valkyrie.nodes import Node
from valkyrie.rcu import RcuDomain
from valkyrie.routes import parse_route
from valkyrie.writer import Batch, RouteWriter

# Beside the example table (config/routes/example.toml): nested IPv4, IPv6, names and exact keys.
ROUTES = ["10.0.0.0/7", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "11.0.0.0/8", "9.255.255.0/24",
          "2001:db8:1::/48", "2001:db9::/32", "ci.", "cd.", "ci.deploy."]
KEYS = ["job-1", "ci.job", "10.1.2.7", "2001:db8::5", "11.1.1.1"]
EXAMPLE_PREFIXES = ["198.51.100.0/24", "198.51.100.128/25", "203.0.113.0/24", "2001:db8::/32", "2001:db8:ff::/48",
                    "ci.build."]

FILTERS = [
    # (prefix filter, routes listed: prefixes inside it, then exact keys inside it)
    ("10.0.0.0/8", ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.7"]),
    ("10.1.2.0/24", ["10.1.2.0/24", "10.1.2.3/32", "10.1.2.7"]),
    ("10.1.2.3", ["10.1.2.3/32"]),  # an address is a /32: only the host route is inside it
    ("0.0.0.0/0", ["9.255.255.0/24", "10.0.0.0/7", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32",
                   "11.0.0.0/8", "198.51.100.0/24", "198.51.100.128/25", "203.0.113.0/24", "10.1.2.7", "11.1.1.1"]),
    ("2001:db8::/32", ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:ff::/48", "2001:db8::5"]),
    ("ci.", ["ci.", "ci.build.", "ci.deploy.", "ci.job"]),
    ("ci.build.", ["ci.build."]),
    ("job-", ["job-1", "job-42"]),
    ("12.0.0.0/8", []),
]

BAD_QUERIES = [
    ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=abc", "limit"), ("limit=100001", "limit"), ("limit=", "limit"),
    ("cursor=garbage!", "cursor"), ("cursor=" + base64.urlsafe_b64encode(b'["p","ipv4","0a",8]').decode(), "cursor"),
    ("cursor=" + base64.urlsafe_b64encode(b'{"p":1}').decode(), "cursor"),
    ("format=xml", "format"), ("prefix=10.", "10.0.0.0/8"), ("prefix=10.0.0.0/33", "prefix"), ("prefix=", "empty"),
    ("limt=5", "limt"), ("limit=1&limit=2", "more than once"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("export")
    with RealServer(write_config(directory)) as srv:
        srv.wait_ready()
        routes = [{"prefix": p, "next_hop": "node-b"} for p in ROUTES] + [{"key": k, "next_hop": "node-b"} for k in KEYS]
        status, body = http("PUT", srv.url + "/v1/routes", {"routes": routes})
        assert status == 200, body
        yield srv


def _get(server, query="", headers=None):
    req = urllib.request.Request(f"{server.url}/v1/routes{'?' + query if query else ''}", headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


def _listed(body):
    return [r.get("prefix", r.get("key")) for r in body["routes"]]


@pytest.mark.parametrize("flt, expected", FILTERS)
def test_prefix_filter_lists_what_is_inside(server, flt, expected):
    status, body = http("GET", f"{server.url}/v1/routes?prefix={flt}")
    assert status == 200 and _listed(body) == expected, body


def test_whole_listing_is_in_order_with_nodes_and_default_route(server):
    status, body = http("GET", server.url + "/v1/routes")
    listed = _listed(body)
    assert status == 200 and body["next"] is None and body["default_route"] == "edge-default"
    assert sorted(listed[:-len(KEYS) - 1]) == sorted(ROUTES + EXAMPLE_PREFIXES)
    assert listed[-len(KEYS) - 1:] == sorted(KEYS + ["job-42"], key=str.encode)  # exact keys last, by bytes
    assert [n["id"] for n in body["nodes"]] == ["edge-default", "node-a", "node-b", "ci-runner"]
    # IPv4 in address order, then IPv6, then names.
    assert listed.index("9.255.255.0/24") < listed.index("10.0.0.0/7") < listed.index("10.0.0.0/8") \
        < listed.index("11.0.0.0/8") < listed.index("198.51.100.0/24") < listed.index("2001:db8::/32") \
        < listed.index("2001:db9::/32") < listed.index("cd.") < listed.index("ci.")


def test_pages_follow_next_links_to_the_same_listing(server):
    whole = http("GET", server.url + "/v1/routes")[1]
    url, pages, listed = "/v1/routes?limit=4", 0, []
    for _ in range(100):
        status, headers, raw = _get(server, url.split("?", 1)[1])
        page = json.loads(raw)
        assert status == 200 and len(page["routes"]) <= 4
        assert ("nodes" in page) == (pages == 0)  # nodes and default route open the listing only
        listed += _listed(page)
        pages += 1
        if page["next"] is None:
            assert "Link" not in headers
            break
        assert headers["Link"] == f'<{page["next"]}>; rel="next"'
        url = page["next"]
    assert listed == _listed(whole) and pages == -(-len(listed) // 4)


def test_filtered_pages_keep_the_filter(server):
    first = http("GET", f"{server.url}/v1/routes?prefix=10.0.0.0/8&limit=2")[1]
    assert "prefix=10.0.0.0/8" in first["next"]
    second = http("GET", server.url + first["next"])[1]
    third = http("GET", server.url + second["next"])[1]
    assert _listed(first) + _listed(second) + _listed(third) == FILTERS[0][1] and third["next"] is None


def test_csv_by_format_or_accept_is_streamed(server):
    for query, headers in (("format=csv", {}), ("", {"Accept": "text/csv"})):
        status, got_headers, raw = _get(server, query, headers)
        assert status == 200 and got_headers["Content-Type"].startswith("text/csv")
        # Streamed: chunked, no Content-Length computed up front.
        assert got_headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in got_headers
        rows = list(csv.reader(io.StringIO(raw.decode())))
        assert rows[0] == ["kind", "route", "next_hop"]
        assert ["prefix", "10.1.2.3/32", "node-b"] in rows and ["key", "job-42", "node-a"] in rows
        assert len(rows) == 1 + len(ROUTES) + len(KEYS) + len(EXAMPLE_PREFIXES) + 1
    # format= wins over Accept.
    assert _get(server, "format=json", {"Accept": "text/csv"})[1]["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("query, word", BAD_QUERIES)
def test_bad_queries_are_400_naming_the_problem(server, query, word):
    status, body = http("GET", f"{server.url}/v1/routes?{query}")
    assert status == 400 and body["error"]["code"] == "invalid_query", body
    assert word in body["error"]["message"], body


def test_unknown_table_is_404(server):
    status, body = http("GET", f"{server.url}/v1/routes?table=vrf-9")
    assert status == 404 and body["error"]["code"] == "unknown_table"


def test_cursor_round_trip():
    for position in (("p", "ipv4", bytes([10, 0, 0, 0]), 8), ("p", "ipv6", bytes(16), 0), ("p", "name", b"ci.", 24),
                     ("k", "job-1,\n".encode())):
        assert decode_cursor(encode_cursor(position)) == position


def test_paging_while_routes_change_lists_each_stable_route_once(tmp_path):
    with RealServer(write_config(tmp_path)) as server:
        server.wait_ready()
        stable = [{"prefix": f"20.{i >> 8}.{i & 255}.0/24", "next_hop": "node-a"} for i in range(600)]
        assert http("PUT", server.url + "/v1/routes", {"routes": stable})[0] == 200
        listed, url, epochs, added = [], "/v1/routes?prefix=20.0.0.0/8&limit=25", [], []
        for n in range(1000):
            status, page = http("GET", server.url + url)
            assert status == 200, page
            epochs.append(page["epoch"])
            listed += _listed(page)
            if page["next"] is None:
                break
            url = page["next"]
            # Between pages: host routes appear all over the range (behind and ahead of the cursor),
            # the previous ones go away, and a stable route is re-put with another next hop.
            if added:
                assert http("DELETE", server.url + "/v1/routes", {"routes": [{"prefix": p} for p in added]})[0] == 200
            added = [f"20.{(n * 7 + j) % 3}.{(n * 31 + j * 50) % 256}.{128 + j}/32" for j in range(5)]
            batch = [{"prefix": p, "next_hop": "node-b"} for p in added] + [dict(stable[n * 13 % 600], next_hop="node-b")]
            assert http("PUT", server.url + "/v1/routes", {"routes": batch})[0] == 200
        assert epochs == sorted(set(epochs)), "every page saw a newer epoch than the last"
        assert len(listed) == len(set(listed)), "a route was listed twice"
        assert [p for p in listed if p.endswith("/24")] == [r["prefix"] for r in stable]


async def test_view_cache_reuses_one_epoch_and_lets_go_when_idle():
    writer, rcu = RouteWriter(), RcuDomain()
    writer.stage(Batch(nodes=[Node("n")], puts=[parse_route({"key": "k", "next_hop": "n"})]))
    rcu.publish(writer.build())
    state = SimpleNamespace(rcu=rcu, writer=writer, executor=ThreadPoolExecutor(1))
    cache = ViewCache(ttl=0.3)
    first = await cache.current(state)
    assert await cache.current(state) is first and len(first) == 1
    writer.stage(Batch(puts=[parse_route({"key": "k2", "next_hop": "n"})]))
    rcu.publish(writer.build(rcu.current))
    second = await cache.current(state)  # a new epoch: a new copy
    assert second is not first and len(second) == 2
    for _ in range(200):  # bounded wait for the idle timer (0.3s)
        if cache._view is None:
            break
        await asyncio.sleep(0.05)
    assert cache._view is None
    state.executor.shutdown()
