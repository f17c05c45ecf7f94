"""FIT and CRA health metrics from the live snapshot, and CRA defragmentation past cra_defrag_threshold."""

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import make_config, wait_ready
from tests.test_live_tuning import metric, patch, scrape
from valkyrie.cra_table import CraTable
from valkyrie.nodes import Node
from valkyrie.routes import parse_route
from valkyrie.server import create_app
from valkyrie.writer import Batch, RouteWriter


async def test_fit_metrics_describe_the_live_table_and_count_lookups(api):
    text = await scrape(api)
    entries, capacity = metric(text, "valkyrie_fit_entries"), metric(text, "valkyrie_fit_capacity")
    assert entries == metric(text, "valkyrie_routes", 'kind="exact"') and capacity == 65536
    assert metric(text, "valkyrie_fit_load_factor") == pytest.approx(entries / capacity)
    ops = metric(text, "valkyrie_fit_operations_total")
    keys = ["job-42", "198.51.100.7", "nope", "2001:db8::1", "ci.build.x"]
    resp = await api.post("/v1/route", json={"keys": keys})
    assert resp.status == 200
    text = await scrape(api)
    # Every key is tried in the FIT first, whatever answers it in the end.
    assert metric(text, "valkyrie_fit_operations_total") == ops + len(keys)
    assert metric(text, "valkyrie_fit_probe_length_mean") >= 1 and metric(text, "valkyrie_fit_probe_length_max") >= 1


async def test_fit_counters_never_go_backwards_across_snapshots(api):
    await api.post("/v1/route", json={"keys": [f"k-{i}" for i in range(50)]})
    before = await scrape(api)
    await api.put("/v1/routes", json={"routes": [{"key": "fresh-1", "next_hop": "node-a"}]})  # a new FIT table
    after = await scrape(api)
    for name in ("valkyrie_fit_operations_total", "valkyrie_fit_collisions_total"):
        assert metric(after, name) >= metric(before, name)
    assert metric(after, "valkyrie_fit_operations_total") >= 50


async def test_cra_metrics_and_defragmentation_past_the_threshold():
    # A threshold of 1 never defragments, so updates leave dead arena slots to measure.
    app = create_app(make_config(routing__lockfree={"cra_defrag_threshold": 1.0}))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as api:
        await wait_ready(api)
        for i in range(5):
            # The same /16s each time: their arena nodes are copied, the old copies left dead.
            hop = ("node-a", "node-b")[i % 2]
            routes = [{"prefix": f"10.{j}.{i}.0/24", "next_hop": hop} for j in range(20)]
            assert (await api.put("/v1/routes", json={"routes": routes})).status == 200
        text = await scrape(api)
        v4 = 'family="ipv4"'
        assert metric(text, "valkyrie_cra_nodes", v4) > 0 and metric(text, "valkyrie_cra_bytes", v4) > 0
        fragmented = metric(text, "valkyrie_cra_fragmentation_ratio", v4)
        assert fragmented > 0 and metric(text, "valkyrie_cra_defragmentations_total", v4) == 0
        answer = await (await api.get("/v1/route/10.3.2.1")).json()
        # Lowering the threshold live defragments at once, as a new snapshot.
        data = await patch(api, {"cra_defrag_threshold": 0.1})
        assert data["epoch"] > answer["epoch"]
        text = await scrape(api)
        assert metric(text, "valkyrie_cra_fragmentation_ratio", v4) == 0
        assert metric(text, "valkyrie_cra_defragmentations_total", v4) == 1
        again = await (await api.get("/v1/route/10.3.2.1")).json()
        assert (again["next_hop"], again["prefix"]) == (answer["next_hop"], answer["prefix"])
        # From now on the writer defragments whenever an update leaves the table past 0.1.
        for i in range(5, 10):
            routes = [{"prefix": f"10.{j}.{i}.0/24", "next_hop": "node-b"} for j in range(20)]
            assert (await api.put("/v1/routes", json={"routes": routes})).status == 200
            assert metric(await scrape(api), "valkyrie_cra_fragmentation_ratio", v4) <= 0.1
        assert metric(await scrape(api), "valkyrie_cra_defragmentations_total", v4) > 1


def _writer_with(threshold):
    writer = RouteWriter(cra_defrag_threshold=threshold)
    writer.stage(Batch(nodes=[Node("a"), Node("b")],
                       puts=[parse_route({"prefix": f"10.{i}.0.0/16", "next_hop": "a"}) for i in range(64)]))
    return writer, writer.build()


@pytest.mark.parametrize("threshold", [0.05, 0.3])
def test_writer_defragments_and_counts_and_answers_stay_the_same(threshold):
    writer, snap = _writer_with(threshold)
    keys = [f"10.{i}.{j}.9".encode() for i in range(64) for j in (0, 77)]
    for round_ in range(12):
        hop = "b" if round_ % 2 else "a"
        writer.stage(Batch(puts=[parse_route({"prefix": f"10.{i}.{round_}.0/24", "next_hop": hop}) for i in range(64)]))
        snap = writer.build(snap)
        assert snap.ipv4.stats()["fragmentation"] <= threshold
        snap.ipv4._check_invariants()
    assert writer.defrags["ipv4"] >= 1
    fresh = RouteWriter()
    fresh.nodes, fresh.prefixes = writer.nodes, dict(writer.prefixes)
    expected = fresh.build()
    assert snap.resolve(keys).node.tolist() == expected.resolve(keys).node.tolist()


@pytest.mark.parametrize("family, width", [("ipv4", 4), ("ipv6", 16)])
@pytest.mark.parametrize("rounds", [1, 4])  # 1: an eighth of the ids dead, kept; 4: as many dead as live, renumbered
def test_compaction_drops_dead_nodes_and_route_ids_and_keeps_answers(family, width, rounds):
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, size=(400, width), dtype=np.uint8)
    plens = rng.integers(8, 8 * width + 1, size=400)
    routes = {(_masked(raw[i].tobytes(), int(plens[i])), int(plens[i])): i for i in range(400)}
    table = CraTable.build(family, [(p, n, v) for (p, n), v in routes.items()])
    for round_ in range(rounds):  # deleting and re-adding routes leaves dead nodes and dead route ids behind
        changed = list(routes)[round_::4 if rounds > 1 else 8]
        routes.update({k: 1000 + round_ for k in changed})
        table = table.updated([], changed).updated([(p, n, routes[(p, n)]) for p, n in changed], [])
    before = table.stats()
    assert before["fragmentation"] > 0 and before["route_ids"] > len(routes)
    compact = table.defragmented()
    after = compact.stats()
    assert after["fragmentation"] == 0 and len(compact) == len(routes)
    assert after["route_ids"] == (len(routes) if rounds == 4 else before["route_ids"])
    compact._check_invariants()
    probe = [bytes(p) for p, _n in routes] + [rng.integers(0, 256, width, dtype=np.uint8).tobytes() for _ in range(500)]
    fresh = CraTable.build(family, [(p, n, v) for (p, n), v in routes.items()])
    assert _lookup(compact, family, probe) == _lookup(fresh, family, probe)
    # The compacted table takes further updates like any other.
    gone = list(routes)[:50]
    later = compact.updated([(p, n, 7) for p, n in list(routes)[50:100]], gone)
    later._check_invariants()
    for k in list(routes)[50:100]:
        routes[k] = 7
    for k in gone:
        del routes[k]
    fresh = CraTable.build(family, [(p, n, v) for (p, n), v in routes.items()])
    assert _lookup(later, family, probe) == _lookup(fresh, family, probe)


def _masked(prefix, plen):
    value = int.from_bytes(prefix, "big") >> (8 * len(prefix) - plen) << (8 * len(prefix) - plen)
    return value.to_bytes(len(prefix), "big")


def _lookup(table, family, keys):
    if family == "ipv4":
        v, p = table.lookup_ipv4(np.array([int.from_bytes(k, "big") for k in keys], dtype=np.uint32))
    else:
        ints = [int.from_bytes(k, "big") for k in keys]
        v, p = table.lookup_ipv6(np.array([i >> 64 for i in ints], dtype=np.uint64),
                                 np.array([i & (2**64 - 1) for i in ints], dtype=np.uint64))
    return list(zip(v.tolist(), p.tolist()))


def test_an_arena_copy_leaves_room_so_the_next_updates_append():
    # Regression: a copy sized every dimension that fitted to exactly the batch's need, so the
    # batch after it copied the whole arena again, and so on for every batch (29ms each on the real table).
    rng = np.random.default_rng(3)
    table = CraTable.build("ipv4", [(bytes([10, i, 0, 0]), 16, i) for i in range(200)])
    arenas = [table._arena]
    for b in range(40):
        table = table.updated([(bytes([10, int(rng.integers(200)), int(rng.integers(256)), 0]), 24, b)
                               for _ in range(100)], [])
        arenas.append(table._arena)
    copies = sum(1 for a, b in zip(arenas, arenas[1:]) if a is not b)
    assert copies <= 20, f"{copies} arena copies in 40 batches"
    table._check_invariants()


async def test_serving_sets_gc_thresholds_and_switch_interval_and_restores_them():
    import gc
    import sys

    from valkyrie.server import GC_THRESHOLDS, GIL_SWITCH_SECONDS
    before = (gc.get_threshold(), sys.getswitchinterval())
    assert before != (GC_THRESHOLDS, GIL_SWITCH_SECONDS)
    app = create_app(make_config())
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as api:
        await wait_ready(api)
        # A 5,000-route batch's tuples must not set off young-generation collections.
        assert gc.get_threshold() == GC_THRESHOLDS and GC_THRESHOLDS[0] > 5000
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_SECONDS)
    assert (gc.get_threshold(), sys.getswitchinterval()) == before
