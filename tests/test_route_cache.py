"""The route cache: LRU, TTL and epoch rules, and on a real server hits, invalidation and POST /admin/cache/warmup."""

import pytest

from tests.test_live_tuning import metric, patch, scrape
from valkyrie.cache import ENTRY_BYTES, RouteCache
from valkyrie.server import STATE


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lru_ttl_and_epoch_rules():
    clock = Clock()
    cache = RouteCache(2, 10.0, clock=clock)
    assert cache.get("a", 1) is None
    cache.put("a", 1, {"n": "a"})
    cache.put("b", 1, {"n": "b"})
    assert cache.get("a", 1) == {"n": "a"}  # a is now the most recent
    cache.put("c", 1, {"n": "c"})
    assert cache.keys() == ["a", "c"] and cache.evictions == 1
    clock.now = 10.5
    assert cache.get("a", 1) is None and cache.expired == 1 and len(cache) == 1
    cache.put("d", 2, {"n": "d"})  # another epoch than the cache follows: ignored
    assert cache.get("d", 1) is None
    assert cache.get("c", 2) is None and len(cache) == 0 and cache.invalidations == 1
    assert (cache.hits, cache.misses) == (1, 4)


def test_configure_shrinks_and_memory_bounds_the_size():
    cache = RouteCache(10, 60.0)
    for k in "abcdef":
        cache.get(k, 1)
        cache.put(k, 1, {})
    cache.configure(3, 60.0)
    assert cache.keys() == ["d", "e", "f"]
    cache.configure(1000, 60.0, max_bytes=5 * ENTRY_BYTES)
    assert cache.size == 5
    cache.configure(0, 60.0)
    cache.put("g", 1, {})
    assert len(cache) == 0


async def counts(api):
    text = await scrape(api)
    return metric(text, "valkyrie_cache_hits_total"), metric(text, "valkyrie_cache_misses_total")


async def get(api, key):
    resp = await api.get(f"/v1/route/{key}")
    return resp.status, await resp.json()


async def test_repeated_prefix_lookup_is_a_hit_with_the_same_answer(api):
    hits, misses = await counts(api)
    first = await get(api, "198.51.100.7")
    second = await get(api, "198.51.100.7")
    assert first == second and first[1]["match"] == "prefix"
    assert await counts(api) == (hits + 1, misses + 1)
    # Exact answers are one FIT probe: never cached.
    assert (await get(api, "job-42"))[1]["match"] == "exact"
    assert await get(api, "job-42") == await get(api, "job-42")
    assert "job-42" not in api.app[STATE].cache.keys()


async def test_a_new_snapshot_invalidates_cached_answers(api):
    status, before = await get(api, "198.51.100.7")
    await get(api, "198.51.100.7")
    resp = await api.put("/v1/routes", json={"routes": [{"prefix": "198.51.100.0/26", "next_hop": "node-b"}]})
    assert resp.status == 200
    status, after = await get(api, "198.51.100.7")
    assert (after["next_hop"], after["prefix"]) == ("node-b", "198.51.100.0/26") and after["epoch"] > before["epoch"]
    assert metric(await scrape(api), "valkyrie_cache_invalidations_total") >= 1


async def test_cache_size_zero_turns_it_off_and_ttl_zero_expires_at_once(api):
    await patch(api, {"route_cache_size": 0})
    hits, _ = await counts(api)
    for _ in range(3):
        await get(api, "203.0.113.9")
    assert (await counts(api))[0] == hits and metric(await scrape(api), "valkyrie_cache_capacity") == 0
    await patch(api, {"route_cache_size": 100, "route_cache_ttl": "0s"})
    for _ in range(3):
        await get(api, "203.0.113.9")
    assert (await counts(api))[0] == hits
    await patch(api, {"route_cache_ttl": None})
    for _ in range(2):
        await get(api, "203.0.113.9")
    assert (await counts(api))[0] == hits + 1


async def test_warmup_from_a_key_list(api):
    keys = ["198.51.100.200", "2001:db8::1", "ci.build.linux", "job-42", "unknown-service"]
    resp = await api.post("/admin/cache/warmup", json={"keys": keys})
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["source"], body["keys"], body["cached"], body["exact"]) == ("body", 5, 4, 1)
    hits, misses = await counts(api)
    for key in keys:
        await get(api, key)
    # Four warmed answers hit; the exact key is never cached and counts as a miss.
    assert await counts(api) == (hits + 4, misses + 1)


async def test_warmup_without_a_body_replays_recent_lookups(api):
    for key in ("198.51.100.7", "203.0.113.9", "198.51.100.7"):
        await get(api, key)
    put = await api.put("/v1/routes", json={"routes": [{"key": "w-1", "next_hop": "node-a"}]})
    epoch = (await put.json())["epoch"]  # the cached answers belong to the epoch before
    resp = await api.post("/admin/cache/warmup")
    body = await resp.json()
    assert resp.status == 200 and body["source"] == "recent" and body["keys"] == 2 and body["entries"] == 2
    assert body["epoch"] == epoch and api.app[STATE].cache.epoch == epoch
    assert set(api.app[STATE].cache.keys()) == {"198.51.100.7", "203.0.113.9"}


@pytest.mark.parametrize("body, status, code, fragment", [
    (b'{"keys": [', 400, "malformed_json", "malformed JSON"),
    (b'["198.51.100.7"]', 400, "invalid_body", 'body must be {"keys"'),
    (b'{"keys": "198.51.100.7"}', 400, "invalid_body", "non-empty list"),
    (b'{"keys": []}', 400, "invalid_body", "non-empty list"),
    (b'{"keys": ["198.51.100.7"], "ttl": 5}', 400, "invalid_body", 'body must be {"keys"'),
    (b'{"keys": ["198.51.100.7", ""]}', 400, "invalid_key", "keys[1]"),
    (b'{"keys": ["198.51.100.7", 7]}', 400, "invalid_key", "keys[1] must be a string"),
    (b'{"keys": ["a\\u0000b"]}', 400, "invalid_key", "keys[0]"),
])
async def test_bad_warmup_bodies_are_refused_and_cache_nothing(api, body, status, code, fragment):
    resp = await api.post("/admin/cache/warmup", data=body)
    data = await resp.json()
    assert resp.status == status and data["error"]["code"] == code and fragment in data["error"]["message"], data
    assert len(api.app[STATE].cache) == 0


async def test_warmup_too_many_keys_and_cache_off(api):
    api.app[STATE].max_keys = 3
    resp = await api.post("/admin/cache/warmup", json={"keys": ["1.2.3.4"] * 4})
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "batch_too_large"
    await patch(api, {"route_cache_size": 0})
    resp = await api.post("/admin/cache/warmup", json={"keys": ["1.2.3.4"]})
    assert resp.status == 409 and "route_cache_size" in (await resp.json())["error"]["message"]


def test_cached_replies_hold_only_their_bytes():
    """orjson's bytes keep their ~4KB write buffer; cached replies must not (50k entries held 200MB)."""
    import tracemalloc

    from valkyrie.cache import ENTRY_BYTES, RouteCache, encoded

    cache = RouteCache(5000, 300.0)
    cache.advance(1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(5000):
            key = f"10.{i // 256}.{i % 256}.1"
            cache.put(key, 1, encoded(key, {"key": key, "next_hop": "edge-default", "match": "default", "epoch": 1}))
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / len(cache)
    finally:
        tracemalloc.stop()
    assert len(cache) == 5000
    assert per_entry < 2 * ENTRY_BYTES, f"{per_entry:.0f} bytes per cached reply"


def test_a_new_epoch_makes_old_entries_misses_without_emptying_the_cache():
    """Invalidation is O(1): stale entries stay until met or evicted, and never answer."""
    cache = RouteCache(4, 60.0)
    cache.advance(1)
    for k in "abc":
        cache.put(k, 1, k)
    cache.advance(2)
    assert len(cache) == 0 and cache.keys() == [] and cache.invalidations == 1
    cache.put("a", 2, "a2")
    assert cache.get("a", 2) == "a2" and cache.get("b", 2) is None and len(cache) == 1
    # Filling up evicts the least recently used, stale or not; the live count stays right.
    for k in "wxyz":
        cache.put(k, 2, k)
    assert cache.keys() == ["w", "x", "y", "z"] and len(cache) == 4 and cache.get("a", 2) is None
