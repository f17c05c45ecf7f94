"""Live tuning over HTTP on a real server: validated like the file, applied as new snapshots, with provenance and revert."""

import asyncio
import os
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import make_config, wait_ready
from tests.test_server_api import lookups
from valkyrie.config import ConfigError, parse_config
from valkyrie.server import STATE, create_app, create_metrics_app

LF, CAP = "routing.lockfree.fit_load_factor", "routing.lockfree.fit_capacity"


def metric(text, name, labels=""):
    """Value of one sample in Prometheus text (``labels`` as written, e.g. 'family="ipv4"')."""
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
    m = re.search(pattern, text, re.M)
    assert m, f"{name}{{{labels}}} not exported"
    return float(m.group(1))


async def scrape(api):
    """The /metrics text of the ``api`` server (its metrics app on its own port)."""
    async with TestClient(TestServer(create_metrics_app(api.app[STATE]), host="127.0.0.1", port=0)) as client:
        return await (await client.get("/metrics")).text()


async def tuning(api):
    return await (await api.get("/admin/tuning")).json()


async def answers(api):
    body = await (await api.post("/v1/route", json={"keys": [k for k, *_ in lookups]})).json()
    return [(r["next_hop"], r["match"], r.get("prefix")) for r in body["results"]]


async def patch(api, body, status=200):
    resp = await api.patch("/admin/tuning", json=body)
    data = await resp.json()
    assert resp.status == status, data
    return data


# ---- validation: exactly the config file's rules ----------------------------------------------

# (tunable, bad value as JSON/TOML writes it, the [section] it lives in for the file)
bad_values = [
    ("fit_load_factor", 0.95, "routing.lockfree"), ("fit_load_factor", 0.1, "routing.lockfree"),
    ("fit_load_factor", "0.6", "routing.lockfree"), ("fit_load_factor", True, "routing.lockfree"),
    ("fit_capacity", 1000, "routing.lockfree"), ("fit_capacity", 4, "routing.lockfree"),
    ("fit_capacity", 1.5, "routing.lockfree"), ("fit_capacity", "big", "routing.lockfree"),
    ("fit_capacity", 1 << 62, "routing.lockfree"),  # once a 500: numpy could not allocate 4 EiB
    ("rcu_grace_period", 5, "routing.lockfree"), ("rcu_grace_period", "-1ms", "routing.lockfree"),
    ("rcu_grace_period", "soon", "routing.lockfree"),
    ("rcu_max_pending_updates", 0, "routing.lockfree"), ("rcu_max_pending_updates", "many", "routing.lockfree"),
    ("rcu_aggressive_reclaim", "yes", "routing.lockfree"), ("rcu_aggressive_reclaim", 1, "routing.lockfree"),
    ("route_cache_size", -1, "routing"), ("route_cache_size", 1.5, "routing"),
    ("route_cache_ttl", "300", "routing"), ("route_cache_ttl", 300, "routing"),
    ("cra_defrag_threshold", 1.5, "routing.lockfree"), ("cra_defrag_threshold", -0.1, "routing.lockfree"),
]


def file_problems(section, key, value):
    """What the config file loader says about ``key = value`` in ``[section]``."""
    node = data = {}
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return err.value.problems


@pytest.mark.parametrize("key, value, section", bad_values)
async def test_bad_value_is_refused_with_the_files_message_and_changes_nothing(api, key, value, section):
    before, epoch = await tuning(api), (await (await api.get("/health")).json())["epoch"]
    body = await patch(api, {key: value}, status=400)
    assert body["error"]["code"] == "invalid_tuning"
    assert body["error"]["message"] == "; ".join(file_problems(section, key, value))
    assert await tuning(api) == before
    assert (await (await api.get("/health")).json())["epoch"] == epoch


@pytest.mark.parametrize("body, code, fragment", [
    ({"fit_hash_function": "xxh64"}, "invalid_tuning", "'fit_hash_function' is not live-tunable"),
    ({}, "invalid_tuning", "non-empty JSON object"),
    ([0.6], "invalid_tuning", "non-empty JSON object"),
    # One bad value rejects the whole body: the good one is not applied either.
    ({"rcu_grace_period": "1ms", "fit_capacity": 1000}, "invalid_tuning", "not a power of two"),
])
async def test_bad_bodies_name_the_problem_and_apply_nothing(api, body, code, fragment):
    before = await tuning(api)
    data = await patch(api, body, status=400)
    assert data["error"]["code"] == code and fragment in data["error"]["message"]
    assert await tuning(api) == before


async def test_malformed_json_is_refused(api):
    resp = await api.patch("/admin/tuning", data=b'{"fit_load_factor": ')
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "malformed_json"


# ---- applying, provenance, revert ---------------------------------------------------------------


async def test_fit_geometry_change_is_a_new_snapshot_with_the_same_answers(api):
    expected, text = await answers(api), await scrape(api)
    epoch = (await (await api.get("/health")).json())["epoch"]
    assert metric(text, "valkyrie_fit_capacity") == 65536
    data = await patch(api, {"fit_load_factor": 0.5, "fit_capacity": 131072})
    assert data["epoch"] > epoch
    assert data["tuning"]["fit_load_factor"] == {"value": 0.5, "source": "live", "file_value": 0.75}
    assert data["tuning"]["fit_capacity"] == {"value": 131072, "source": "live", "file_value": 65536,
                                              "slots_in_use": 131072}
    text = await scrape(api)
    assert metric(text, "valkyrie_fit_capacity") == 131072 and metric(text, "valkyrie_fit_target_load_factor") == 0.5
    assert await answers(api) == expected
    # Later updates keep the new geometry (incremental builds start from the rebuilt table).
    resp = await api.put("/v1/routes", json={"routes": [{"key": "job-99", "next_hop": "node-a"}]})
    assert resp.status == 200
    assert metric(await scrape(api), "valkyrie_fit_capacity") == 131072
    data = await patch(api, {"fit_load_factor": None, "fit_capacity": None})
    assert data["tuning"]["fit_capacity"] == {"value": 65536, "source": "file", "file_value": 65536,
                                              "slots_in_use": 65536}
    assert data["tuning"]["fit_load_factor"]["source"] == "file"
    assert metric(await scrape(api), "valkyrie_fit_capacity") == 65536
    assert (await (await api.get("/v1/route/job-99")).json())["match"] == "exact"


async def test_tuning_shows_the_slots_the_fit_grew_to(api):
    """A capacity too small for the load factor is grown; the tuning view says so beside the asked-for value."""
    data = await patch(api, {"fit_capacity": 8})
    assert data["tuning"]["fit_capacity"]["value"] == 8
    resp = await api.put("/v1/routes", json={"routes": [{"key": f"grow-{i}", "next_hop": "node-a"} for i in range(40)]})
    assert resp.status == 200
    view = (await (await api.get("/admin/tuning")).json())["fit_capacity"]
    assert view["value"] == 8 and view["slots_in_use"] >= 64
    assert metric(await scrape(api), "valkyrie_fit_capacity") == view["slots_in_use"]


async def test_every_tunable_reports_provenance_and_reverts(api):
    live = {"fit_load_factor": 0.6, "fit_capacity": 16384, "rcu_grace_period": "2ms", "rcu_max_pending_updates": 10,
            "rcu_aggressive_reclaim": True, "route_cache_size": 100, "route_cache_ttl": "30s",
            "cra_defrag_threshold": 0.5}
    before = await tuning(api)
    assert set(before) == set(live) and all(v["source"] == "file" for v in before.values())
    after = (await patch(api, live))["tuning"]
    assert {k: v["value"] for k, v in after.items()} == live
    assert all(v["source"] == "live" and v["file_value"] == before[k]["value"] for k, v in after.items())
    st = api.app[STATE]
    assert (st.rcu.grace_period, st.rcu.aggressive, st.publisher.max_pending) == (0.002, True, 10)
    assert (st.cache.size, st.cache.ttl, st.writer.cra_defrag_threshold) == (100, 30.0, 0.5)
    status = await (await api.get("/config/status")).json()
    assert set(status["live_overrides"]) == {f"routing.lockfree.{k}" for k in live if not k.startswith("route_")} | {
        "routing.route_cache_size", "routing.route_cache_ttl"}
    reverted = (await patch(api, {k: None for k in live}))["tuning"]
    assert reverted == before
    assert (st.rcu.grace_period, st.rcu.aggressive, st.publisher.max_pending) == (0.005, False, 5000)


async def test_concurrent_patches_do_not_lose_each_other(api):
    # The FIT change waits on a rebuild; the grace-period change lands meanwhile and must survive it.
    a, b = await asyncio.gather(api.patch("/admin/tuning", json={"fit_load_factor": 0.6}),
                                api.patch("/admin/tuning", json={"rcu_grace_period": "7ms"}))
    assert a.status == b.status == 200
    view = await tuning(api)
    assert view["fit_load_factor"]["value"] == 0.6 and view["rcu_grace_period"]["value"] == "7ms"
    assert api.app[STATE].config["routing.lockfree.rcu_grace_period"] == 0.007


async def test_max_pending_updates_bounds_coalescing(api):
    await patch(api, {"rcu_max_pending_updates": 1})
    puts = [api.put("/v1/routes", json={"routes": [{"key": f"co-{i}", "next_hop": "node-a"}]}) for i in range(6)]
    epochs = [(await r.json())["epoch"] for r in await asyncio.gather(*puts)]
    assert len(set(epochs)) == 6  # one change per snapshot: nothing coalesced


# ---- a config reload and live overrides ---------------------------------------------------------


async def test_reload_keeps_overrides_of_untouched_keys_and_drops_edited_ones(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text('[[nodes]]\nid = "a"\n[[routes]]\nprefix = "10.0.0.0/8"\nnext_hop = "a"\n')
    conf = tmp_path / "valkyrie.toml"

    def write(grace):
        conf.write_text(f'[server]\nport = 0\n[observability.metrics]\nport = 0\n[routing]\nroute_files = ["{routes}"]\n'
                        f'store_path = ""\n[routing.lockfree]\nrcu_grace_period = "{grace}"\n')

    write("5ms")
    from valkyrie.config import load_config
    async with TestClient(TestServer(create_app(load_config(conf)), host="127.0.0.1", port=0)) as api:
        await wait_ready(api)
        await patch(api, {"fit_load_factor": 0.6, "rcu_grace_period": "1ms"})
        write("9ms")
        result = await (await api.post("/admin/reload")).json()
        assert result["overrides_dropped"] == ["routing.lockfree.rcu_grace_period"]
        assert result["overrides_kept"] == [LF]
        view = await tuning(api)
        assert view["rcu_grace_period"] == {"value": "9ms", "source": "file", "file_value": "9ms"}
        assert view["fit_load_factor"] == {"value": 0.6, "source": "live", "file_value": 0.75}
        assert api.app[STATE].rcu.grace_period == pytest.approx(0.009)


async def test_tuning_before_tables_are_loaded_is_503(tmp_path):
    fifo = tmp_path / "routes.csv"
    os.mkfifo(fifo)  # the boot blocks reading it until the test writes
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("id,address\nn1,\n")
    async with TestClient(TestServer(create_app(make_config([str(nodes), str(fifo)])), host="127.0.0.1", port=0)) as api:
        resp = await api.patch("/admin/tuning", json={"fit_load_factor": 0.6})
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "not_ready"
        await asyncio.get_running_loop().run_in_executor(None, fifo.write_text, "prefix,next_hop\n10.0.0.0/8,n1\n")
        await wait_ready(api)
        assert (await tuning(api))["fit_load_factor"]["source"] == "file"
        await patch(api, {"fit_load_factor": 0.6})
