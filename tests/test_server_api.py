"""The HTTP API end to end on a real server: lookups, updates, bad input, metrics."""

import asyncio
import os

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from tests.conftest import make_config, wait_ready
from valkyrie.server import STATE, create_app

lookups = [
    ("198.51.100.7", "node-a", "prefix", "198.51.100.0/24"),
    ("198.51.100.200", "node-b", "prefix", "198.51.100.128/25"),
    ("203.0.113.9", "node-b", "prefix", "203.0.113.0/24"),
    ("2001:db8::1", "node-a", "prefix", "2001:db8::/32"),
    ("2001:db8:ff::7", "node-b", "prefix", "2001:db8:ff::/48"),
    ("ci.build.linux.x86", "ci-runner", "prefix", "ci.build."),
    ("job-42", "node-a", "exact", None),
    ("192.0.2.1", "edge-default", "default", None),
    ("unknown-service", "edge-default", "default", None),
]


@pytest.mark.parametrize("key, next_hop, match, prefix", lookups)
async def test_single_lookup(api, key, next_hop, match, prefix):
    resp = await api.get(f"/v1/route/{key}")
    assert resp.status == 200
    body = await resp.json()
    assert (body["next_hop"], body["match"], body.get("prefix")) == (next_hop, match, prefix)
    assert body["key"] == key and body["epoch"] >= 1


async def test_batch_lookup_matches_single_lookups(api):
    resp = await api.post("/v1/route", json={"keys": [k for k, *_ in lookups], "table": "default"})
    assert resp.status == 200
    body = await resp.json()
    assert [(r["next_hop"], r["match"]) for r in body["results"]] == [(n, m) for _, n, m, _ in lookups]


async def test_health_reports_routes_and_epoch(api):
    body = await (await api.get("/health")).json()
    assert body["status"] == "ok" and body["routes"] == 7 and body["epoch"] >= 1


async def test_no_route_without_default_is_404(tmp_path):
    routes = tmp_path / "r.toml"
    routes.write_text('[[nodes]]\nid = "a"\n[[routes]]\nprefix = "10.0.0.0/8"\nnext_hop = "a"\n')
    async with TestClient(TestServer(create_app(make_config([str(routes)])), host="127.0.0.1", port=0)) as client:
        await wait_ready(client)
        resp = await client.get("/v1/route/11.0.0.1")
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "no_route"
        body = await (await client.post("/v1/route", json={"keys": ["11.0.0.1", "10.9.9.9"]})).json()
        assert [r["match"] for r in body["results"]] == ["none", "prefix"]


async def test_put_then_get_sees_new_route_and_epoch_grows(api):
    before = (await (await api.get("/health")).json())["epoch"]
    resp = await api.put("/v1/routes", json={
        "nodes": [{"id": "node-c", "address": "127.0.0.1:7003"}],
        "routes": [{"prefix": "192.0.2.0/24", "next_hop": "node-c"}, {"key": "job-7", "next_hop": "node-c"}],
    })
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["applied"] == 2 and body["epoch"] > before
    got = await (await api.get("/v1/route/192.0.2.55")).json()
    assert (got["next_hop"], got["prefix"], got["epoch"]) == ("node-c", "192.0.2.0/24", body["epoch"])
    assert (await (await api.get("/v1/route/job-7")).json())["match"] == "exact"


async def test_delete_removes_routes_and_falls_back(api):
    resp = await api.delete("/v1/routes", json={"routes": [{"prefix": "198.51.100.128/25"}, {"key": "job-42"}]})
    assert resp.status == 200, await resp.text()
    assert (await (await api.get("/v1/route/198.51.100.200")).json())["prefix"] == "198.51.100.0/24"
    assert (await (await api.get("/v1/route/job-42")).json())["match"] == "default"


async def _state_fingerprint(api):
    health = await (await api.get("/health")).json()
    answers = await (await api.post("/v1/route", json={"keys": [k for k, *_ in lookups]})).json()
    return health["epoch"], health["routes"], answers["results"]


bad_requests = [
    ("PUT", "/v1/routes", b"{not json", 400, "malformed_json"),
    ("PUT", "/v1/routes", b"[1, 2]", 400, "invalid_body"),
    ("PUT", "/v1/routes", b'{"routes": "nope"}', 400, "invalid_body"),
    ("PUT", "/v1/routes", b'{"routes": [{"prefix": "10.0.0.0/33", "next_hop": "node-a"}]}', 400, "invalid_route"),
    ("PUT", "/v1/routes", b'{"routes": [{"prefix": "300.1.1.1/8", "next_hop": "node-a"}]}', 400, "invalid_route"),
    ("PUT", "/v1/routes", b'{"routes": [{"prefix": "10.0.0.0/8", "next_hop": "node-a"}, {"prefix": "11.0.0.0/8", "next_hop": "ghost"}]}', 422, "unknown_next_hop"),
    ("PUT", "/v1/routes", b'{"routes": [{"key": "a\\u0000b", "next_hop": "node-a"}]}', 400, "invalid_route"),
    ("PUT", "/v1/routes", b'{"routes": [{"key": "\xff\xfe", "next_hop": "node-a"}]}', 400, "malformed_json"),
    ("PUT", "/v1/routes", b'{"routes": [{"prefix": 10, "next_hop": "node-a"}]}', 400, "invalid_route"),
    ("DELETE", "/v1/routes", b'{"routes": [{"prefix": "10.0.0.0/8"}]}', 404, "route_not_found"),
    ("DELETE", "/v1/routes", b'{"routes": [{"key": "job-42"}, {"key": "job-42"}]}', 400, "invalid_body"),
    ("POST", "/v1/route", b'{"keys": "198.51.100.7"}', 400, "invalid_body"),
    ("POST", "/v1/route", b'{"keys": [1]}', 400, "invalid_key"),
    ("POST", "/v1/route", b'{"keys": ["ok", "a\\u0000b"]}', 400, "invalid_key"),
    ("POST", "/v1/route", b'{"keys": ["\\ud800"]}', 400, None),
    ("POST", "/v1/route", b'{"keys": []}', 400, "invalid_body"),
    ("POST", "/v1/route", b'{"keys": ["x"], "table": "vrf-9"}', 404, "unknown_table"),
    ("POST", "/v1/route", b'{"keys": ["x"], "extra": 1}', 400, "invalid_body"),
    ("POST", "/v1/route", b"", 400, "invalid_body"),
    ("GET", "/v1/nothing-here", b"", 404, "not_found"),
    ("PATCH", "/v1/routes", b"{}", 405, "method_not_allowed"),
]


@pytest.mark.parametrize("method, path, body, status, code", bad_requests)
async def test_bad_input_gets_json_4xx_and_changes_nothing(api, method, path, body, status, code):
    before = await _state_fingerprint(api)
    resp = await api.request(method, path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status, await resp.text()
    err = (await resp.json())["error"]
    assert err["message"]
    if code:
        assert err["code"] == code
    assert await _state_fingerprint(api) == before


async def test_oversized_batches_are_refused(tmp_path):
    config = make_config(server={"max_batch_keys": 10, "max_body_size": 4096})
    async with TestClient(TestServer(create_app(config), host="127.0.0.1", port=0)) as client:
        await wait_ready(client)
        resp = await client.post("/v1/route", json={"keys": ["k"] * 11})
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "batch_too_large"
        routes = [{"key": f"k{i}", "next_hop": "node-a"} for i in range(11)]
        resp = await client.put("/v1/routes", json={"routes": routes})
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "batch_too_large"
        resp = await client.post("/v1/route", data=b'{"keys": ["' + b"x" * 5000 + b'"]}')
        assert resp.status == 413 and (await resp.json())["error"]["code"] == "payload_too_large"


async def test_bad_keys_in_path(api):
    resp = await api.get("/v1/route/a%00b")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_key"
    # The route's own letters encoded (yarl would normalise them without encoded=True): still the key.
    resp = await api.get(URL("/v1/%72oute/job-42", encoded=True))
    assert resp.status == 200 and (await resp.json())["key"] == "job-42"
    resp = await api.get("/v1/route/%ff%fe")
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "invalid_key"
    assert "UTF-8" in body["error"]["message"]
    resp = await api.get("/v1/route/ci.build.linux%2Fx86?table=default")
    assert resp.status in (200, 404) and (await resp.json()).get("key", "ci.build.linux/x86") == "ci.build.linux/x86"


async def test_concurrent_readers_never_see_a_mixed_snapshot(api):
    """Each update rewrites every probe key to one new node; every batch answer must agree."""
    keys = [f"probe-{i}" for i in range(32)] + [f"10.{i}.0.1" for i in range(32)]
    nodes = [{"id": f"gen-{g}"} for g in range(12)]
    resp = await api.put("/v1/routes", json={"nodes": nodes})
    assert resp.status == 200

    async def writer():
        for g in range(12):
            routes = [{"key": k, "next_hop": f"gen-{g}"} for k in keys[:32]]
            routes += [{"prefix": f"10.{i}.0.0/16", "next_hop": f"gen-{g}"} for i in range(32)]
            resp = await api.put("/v1/routes", json={"routes": routes})
            assert resp.status == 200, await resp.text()

    mixed = seen = 0

    async def reader(stop):
        nonlocal mixed, seen
        while not stop.is_set():
            body = await (await api.post("/v1/route", json={"keys": keys})).json()
            hops = {r["next_hop"] for r in body["results"]}
            seen += 1
            mixed += len(hops) != 1 and not hops <= {"edge-default"}

    stop = asyncio.Event()
    readers = [asyncio.create_task(reader(stop)) for _ in range(4)]
    await writer()
    stop.set()
    await asyncio.gather(*readers)
    assert seen > 0 and mixed == 0


async def test_metrics_use_the_guides_names(api, metrics_client):
    for _ in range(5):
        await api.get("/v1/route/198.51.100.7")
    text = await (await metrics_client.get("/metrics")).text()
    for name in ("valkyrie_routing_request_duration_seconds_bucket", "valkyrie_routing_requests_total",
                 "valkyrie_routing_errors_total", "valkyrie_fit_collisions_total", "valkyrie_fit_operations_total",
                 "valkyrie_cra_fragmentation_ratio", "valkyrie_rcu_grace_period_seconds", "valkyrie_connection_pool_size"):
        assert name in text, name
    p99 = [line for line in text.splitlines() if 'quantile="0.99"' in line and "valkyrie_routing_request_duration" in line]
    assert len(p99) == 1 and float(p99[0].split()[-1]) > 0
    total = [line for line in text.splitlines() if line.startswith("valkyrie_routing_requests_total")]
    assert float(total[-1].split()[1]) >= 5
    # The guide divides these with awk '{print $2}': exactly one sample line each.
    for name in ("valkyrie_fit_collisions_total", "valkyrie_fit_operations_total"):
        lines = [line for line in text.splitlines() if name in line and not line.startswith("#")]
        assert len(lines) == 1
    # What the guide's snippets are after, as series of their own: the collision rate, a request rate
    # (`grep rate | grep valkyrie_routing_requests`) and the active pool.
    samples = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and not line.startswith("#")}
    assert 0.0 <= samples["valkyrie_fit_collision_rate"] <= 1.0
    assert [line for line in text.splitlines() if "rate" in line and "valkyrie_routing_requests" in line]
    assert samples["valkyrie_connection_pool_active"] >= 0


async def test_metrics_port_serves_only_metrics(api, metrics_client):
    assert (await metrics_client.get("/health")).status == 404
    assert (await metrics_client.put("/v1/routes", json={})).status in (404, 405)


async def test_config_status(api):
    body = await (await api.get("/config/status")).json()
    assert body["values"]["routing.lockfree.fit_load_factor"] == 0.75 and body["ready"] is True


async def test_health_is_503_until_tables_are_loaded(tmp_path):
    fifo = tmp_path / "routes.csv"
    os.mkfifo(fifo)
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("id,address\nn1,\n")
    async with TestClient(TestServer(create_app(make_config([str(nodes), str(fifo)])), host="127.0.0.1", port=0)) as client:
        resp = await client.get("/health")
        assert resp.status == 503 and (await resp.json())["status"] == "starting"
        assert (await client.get("/v1/route/10.0.0.1")).status == 503
        await asyncio.get_running_loop().run_in_executor(None, fifo.write_text, "prefix,next_hop\n10.0.0.0/8,n1\n")
        await wait_ready(client)
        assert (await (await client.get("/v1/route/10.0.0.1")).json())["next_hop"] == "n1"


async def test_bad_route_file_fails_start_with_reason(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("prefix,next_hop\n10.0.0.0/8,ghost\n")
    app = create_app(make_config([str(bad)]))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        for _ in range(2000):
            body = await (await client.get("/health")).json()
            if body["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        assert body["status"] == "failed" and "bad.csv" in body["detail"] and "ghost" in body["detail"]
        assert app[STATE].ready is False


async def test_serving_compiles_nothing_after_warm_up(api):
    """Every endpoint reuses the kernel signatures compiled before /health said ready (no mid-traffic JIT)."""
    from jit.resolve import resolve

    warmed = set(resolve.signatures)
    await api.get("/v1/route/198.51.100.7")
    await api.post("/v1/route", json={"keys": ["198.51.100.7", "2001:db8::1", "ci.build.x", "job-42", "zz"]})
    await api.post("/v1/route/packed", data=b"198.51.100.7\n2001:db8::1\nci.build.x")
    resp = await api.put("/v1/routes", json={"routes": [{"prefix": "192.0.2.0/24", "next_hop": "node-a"},
                                                         {"key": "job-7", "next_hop": "node-a"}]})
    assert resp.status == 200
    await api.post("/v1/route", json={"keys": ["192.0.2.1", "job-7"]})
    assert set(resolve.signatures) == warmed


@pytest.mark.parametrize("method, path, body, status, code", [
    ("POST", "/v1/route/packed?table=nope", b"198.51.100.7", 404, "unknown_table"),
    ("POST", "/v1/route/packed?foo=bar", b"198.51.100.7", 400, "invalid_query"),
    ("GET", "/v1/route/job-42?x=1", None, 400, "invalid_query"),
    ("POST", "/v1/route?tabel=default", b'{"keys": ["job-42"]}', 400, "invalid_query"),
    ("POST", "/v1/route", b'{"keys": ["job-42"], "table": 5}', 400, "invalid_body"),
    ("GET", "/v1/routes?prefix=%ff", None, 400, "invalid_query"),
    ("GET", "/v1/route/job-42?table=%ff", None, 400, "invalid_query"),
    ("GET", "/v1/route/job-42?table=default&table=other", None, 400, "invalid_query"),  # not first-one-wins
])
async def test_query_strings_are_checked_like_bodies(api, method, path, body, status, code):
    resp = await api.request(method, path, data=body)
    assert resp.status == status and (await resp.json())["error"]["code"] == code


async def test_lookups_accept_their_table_by_name(api):
    assert (await api.get("/v1/route/job-42?table=default")).status == 200
    resp = await api.post("/v1/route/packed?table=default", data=b"job-42")
    assert resp.status == 200 and (await resp.read()) == b"node-a"


async def test_a_node_declared_twice_in_one_batch_is_refused(api):
    resp = await api.put("/v1/routes", json={"nodes": [{"id": "n2", "address": "127.0.0.1:1"},
                                                       {"id": "n2", "address": "127.0.0.1:2"}]})
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "invalid_body"
    assert "nodes[1]" in body["error"]["message"] and "declared twice" in body["error"]["message"]
