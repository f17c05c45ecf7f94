"""FIT kernels vs their pure-Python twin (slot for slot), and FitTable vs a dict."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jit.fit import (EMPTY, TOMBSTONE, fit_delete, fit_get, fit_insert, fit_live_bytes,
                     fit_lookup, fit_rebuild, fit_tag)
from jit.naive.fit import DictModel, NaiveFit, tag_of
from jit.naive.xxh64 import xxh64_ref
from jit.xxh64 import xxh64_batch
from valkyrie.fit_table import FitTable
from valkyrie.keys import pack_keys

# Every length class of both the hash and the key compare: empty, 1..3, 4..7, 8..32, > 32.
EDGE_KEYS = [b"", b"a", b"ab", b"abc", b"abcd", b"abcdefg", b"abcdefgh", b"\x00" * 9, b"\xff" * 16,
             b"k" * 24, b"x" * 31, b"y" * 32, b"z" * 33, bytes(range(70))]

keys_st = st.binary(max_size=40)
value_st = st.integers(0, 2**31 - 1)


class Raw:
    """Kernel arrays driven directly, for slot-for-slot comparison with ``NaiveFit``."""

    def __init__(self, capacity, seed=0, room=1 << 16):
        self.tags = np.zeros(capacity, np.uint8)
        self.refs = np.zeros(capacity, np.uint32)
        self.arena = np.zeros(room, np.uint8)
        self.arena_len = 0
        self.dead = 0
        self.seed = np.uint64(seed)

    def insert(self, keys, values, mutable_from=0):
        d, o = pack_keys(keys)
        self.arena_len, added, reused, dead = fit_insert(
            self.tags, self.refs, self.arena, self.arena_len, mutable_from, d, o,
            np.asarray(values, np.int32), self.seed)
        self.dead += dead
        return added, reused

    def delete(self, keys):
        d, o = pack_keys(keys)
        return fit_delete(self.tags, self.refs, self.arena, d, o, self.seed)

    def lookup(self, keys, depth=4):
        d, o = pack_keys(keys)
        stats = np.zeros(4, np.int64)
        out = fit_lookup(self.tags, self.refs, self.arena, d, o, self.seed,
                         np.empty(len(keys), np.int32), stats, depth)
        return out.tolist(), stats.tolist()

    def assert_same(self, naive):
        assert self.tags.tolist() == naive.tags
        assert self.refs.tolist() == naive.refs
        assert self.arena[:self.arena_len].tobytes() == bytes(naive.arena)


def naive_lookup(naive, keys):
    before = list(naive.stats)
    naive.stats = [0, 0, 0, 0]
    values = [naive.lookup(k)[0] for k in keys]
    stats, naive.stats = naive.stats, before
    return values, stats


def _same_home_and_tag(capacity, seed=0, want=2):
    """``want`` distinct keys with one home slot and one tag: real fingerprint collisions."""
    rng = np.random.default_rng(7)
    cands = [rng.bytes(12) for _ in range(200_000)]
    h = xxh64_batch(*pack_keys(cands), np.uint64(seed))
    tags = (h >> np.uint64(56)).astype(np.int64)
    tags[tags < 2] += 2
    bucket = (tags << 32) | (h & np.uint64(capacity - 1)).astype(np.int64)
    _, first, counts = np.unique(bucket, return_index=True, return_counts=True)
    b = bucket[first[np.argmax(counts)]]
    found = [cands[i] for i in np.flatnonzero(bucket == b)[:want]]
    assert len(found) == want
    return found


# -- kernels vs the naive twin -------------------------------------------------------------

@pytest.mark.parametrize("capacity", [1, 2, 8, 64])
@pytest.mark.parametrize("seed", [0, 12345, 2**64 - 1])
def test_insert_and_lookup_match_naive_on_edge_keys(capacity, seed):
    keys = EDGE_KEYS[:max(capacity - 1, 0)] if capacity < len(EDGE_KEYS) + 1 else EDGE_KEYS
    raw, naive = Raw(capacity, seed), NaiveFit(capacity, seed)
    values = list(range(len(keys)))
    added, reused = raw.insert(keys, values)
    for k, v in zip(keys, values):
        naive.insert(k, v)
    assert (added, reused) == (len(keys), 0)
    raw.assert_same(naive)
    probes = keys + [b"absent", b"abce", b"z" * 34, b"\x00" * 8]
    assert raw.lookup(probes) == naive_lookup(naive, probes)
    assert raw.lookup(probes)[0][:len(keys)] == values


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.lists(keys_st, max_size=6),
                              st.one_of(st.integers(0, 2), value_st), st.booleans()), max_size=25),
       capacity=st.sampled_from([8, 16, 64]), seed=st.integers(0, 2**64 - 1))
def test_op_sequences_match_naive_slot_for_slot(ops, capacity, seed):
    raw, naive, model = Raw(capacity, seed), NaiveFit(capacity, seed), {}
    dead = 0
    for is_insert, keys, value, shared in ops:
        if is_insert:
            fresh = [k for k in dict.fromkeys(keys) if k not in model]
            if len(model) + len(fresh) >= capacity:
                continue  # the wrapper never lets a table fill up
            # ``shared``: older snapshots read the arena so far, as FitTable.updated() passes it.
            mutable_from = raw.arena_len if shared else 0
            before = raw.arena[:raw.arena_len].copy()
            outcomes = [naive.insert(k, value, mutable_from) for k in keys]
            added, reused = raw.insert(keys, [value] * len(keys), mutable_from)
            assert added == outcomes.count("new") + outcomes.count("reused")
            assert reused == outcomes.count("reused")
            dead += sum(16 + len(k) for k, o in zip(keys, outcomes) if o == "moved")
            assert raw.dead == dead
            assert np.array_equal(raw.arena[:mutable_from], before[:mutable_from])
            model.update((k, value) for k in keys)
        else:
            removed = sum(naive.delete(k) for k in keys)
            assert raw.delete(keys)[0] == removed
            for k in keys:
                model.pop(k, None)
        raw.assert_same(naive)
    probes = list(model) + [k + b"!" for k in model] + [b""]
    values, stats = raw.lookup(probes)
    assert (values, stats) == naive_lookup(naive, probes)
    assert values[:len(model)] == list(model.values())
    assert fit_live_bytes(raw.tags, raw.refs, raw.arena)[0] == len(model)


@pytest.mark.parametrize("depth", [1, 2, 4, 8, 64])
def test_lookup_result_does_not_depend_on_prefetch_depth(depth):
    rng = np.random.default_rng(depth)
    keys = list(dict.fromkeys(rng.bytes(int(n)) for n in rng.integers(0, 40, 300)))
    raw = Raw(1024)
    raw.insert(keys, range(len(keys)))
    probes = keys[::-1] + [b"missing"] * 3
    assert raw.lookup(probes, depth) == raw.lookup(probes, 4)
    assert raw.lookup(probes, depth)[0][:len(keys)] == list(range(len(keys)))[::-1]


@pytest.mark.parametrize("new_capacity", [8, 16, 256])
def test_rebuild_matches_naive(new_capacity):
    keys = [bytes([i]) * (i % 11) + bytes([i]) for i in range(6)]
    raw, naive = Raw(8, seed=3), NaiveFit(8, seed=3)
    raw.insert(keys, range(6))
    for i, k in enumerate(keys):
        naive.insert(k, i)
    raw.delete(keys[:2])
    naive.delete(keys[0])
    naive.delete(keys[1])
    n, live = fit_live_bytes(raw.tags, raw.refs, raw.arena)
    tags = np.zeros(new_capacity, np.uint8)
    refs = np.zeros(new_capacity, np.uint32)
    arena = np.zeros(live, np.uint8)
    used = fit_rebuild(raw.tags, raw.refs, raw.arena, tags, refs, arena)
    want = naive.rebuilt(new_capacity)
    assert (n, used) == (4, live) and used == len(want.arena)
    assert tags.tolist() == want.tags and refs.tolist() == want.refs
    assert arena.tobytes() == bytes(want.arena)


def test_get_kernel_matches_batch_and_counts():
    raw = Raw(16)
    raw.insert(EDGE_KEYS[:10], range(10))
    stats = np.zeros(4, np.int64)
    for i, k in enumerate(EDGE_KEYS[:10]):
        assert fit_get(raw.tags, raw.refs, raw.arena, np.frombuffer(k, np.uint8), raw.seed, stats) == i
    assert fit_get(raw.tags, raw.refs, raw.arena, np.frombuffer(b"nope", np.uint8), raw.seed, stats) == -1
    assert stats[1] == 11 and stats[2] >= 11


def test_insert_reports_a_full_table():
    raw = Raw(4)
    assert raw.insert([b"a", b"b", b"c", b"d"], [1, 2, 3, 4]) == (4, 0)
    assert raw.insert([b"e"], [5])[0] == -1
    # Lookups on a table without an EMPTY slot still stop, after one full lap.
    assert raw.lookup([b"e", b"a"])[0] == [-1, 1]


def test_fingerprint_collision_never_misroutes():
    a, b = _same_home_and_tag(8)
    ha, hb = xxh64_ref(a), xxh64_ref(b)
    assert a != b and ha % 8 == hb % 8 and tag_of(ha) == tag_of(hb)
    assert fit_tag(np.uint64(ha)) == tag_of(ha)
    raw = Raw(8)
    raw.insert([a], [1])
    values, stats = raw.lookup([b])
    assert values == [-1]
    assert stats[0] == 1, "the tag match on a different key is a collision"
    raw.insert([b], [2])
    assert raw.lookup([a, b])[0] == [1, 2]


def test_full_hash_collision_never_misroutes():
    # A 64-bit xxh64 collision cannot be found in a test, so forge one: rewrite the
    # stored hash of ``a`` to ``b``'s (same home slot and tag). Only the key bytes differ.
    a, b = _same_home_and_tag(8)
    raw = Raw(8)
    raw.insert([a], [1])
    off = int(raw.refs[raw.tags > TOMBSTONE][0])
    raw.arena[off:off + 8] = np.frombuffer(xxh64_ref(b).to_bytes(8, "little"), np.uint8)
    values, stats = raw.lookup([b])
    assert values == [-1] and stats[0] == 1
    assert raw.delete([b])[0] == 0
    added, _ = raw.insert([b], [2])
    assert added == 1 and raw.lookup([b])[0] == [2]


def test_keys_sharing_a_home_slot_probe_linearly():
    keys = _same_home_and_tag(64, want=5)
    raw = Raw(64)
    raw.insert(keys, range(5))
    home = xxh64_ref(keys[0]) % 64
    assert raw.tags[home:home + 5].tolist() == [tag_of(xxh64_ref(keys[0]))] * 5
    values, stats = raw.lookup(keys)
    assert values == list(range(5))
    # Every key after the first reads the entries of the same-tag keys before it: one collision each.
    assert stats[2] == 1 + 2 + 3 + 4 + 5 and stats[3] == 5 and stats[0] == 4


def test_collisions_count_probes_that_leave_the_home_tag_line():
    # Fill slots 60..70 of 128 so lookups homed at 60 end past slot 63 (the next 64-tag line).
    rng = np.random.default_rng(3)
    cands = [rng.bytes(10) for _ in range(20_000)]
    homes = xxh64_batch(*pack_keys(cands), np.uint64(0)) % np.uint64(128)
    by_home = {}
    for k, hm in zip(cands, homes.tolist()):
        by_home.setdefault(hm, []).append(k)
    keys = [by_home[60][0]] + [by_home[s][0] for s in range(61, 71)]
    raw = Raw(128)
    raw.insert(keys, range(len(keys)))
    crowd = by_home[60][1:12]
    values, stats = raw.lookup(crowd)
    assert values == [-1] * len(crowd)
    # Each miss homed at 60 probes to the EMPTY slot 71: past its line, so each one collides
    # (plus any that also read a same-tag entry, which still counts once).
    assert stats[0] == len(crowd) and stats[1] == len(crowd)
    values, stats = raw.lookup(keys[:1])
    assert values == [0] and stats[0] == 0


def test_delete_tombstone_reuse_and_cleanup():
    a, b, c = _same_home_and_tag(8, want=3)
    raw, naive = Raw(8), NaiveFit(8)
    raw.insert([a, b], [1, 2])
    naive.insert(a, 1), naive.insert(b, 2)
    home = xxh64_ref(a) % 8
    # a's next slot holds b, so deleting a leaves a tombstone on b's probe path.
    assert raw.delete([a]) == (1, 1, 16 + len(a)) and naive.delete(a)
    assert raw.tags[home] == TOMBSTONE and raw.lookup([b])[0] == [2]
    assert raw.insert([c], [3]) == (1, 1), "c takes the tombstone"
    assert naive.insert(c, 3) == "reused"
    raw.assert_same(naive)
    # Deleting the last slot of a run frees it and the tombstones before it.
    raw.delete([c])
    naive.delete(c)
    assert raw.delete([b]) == (1, -1, 16 + len(b)) and naive.delete(b)
    assert raw.tags.tolist() == [EMPTY] * 8
    raw.assert_same(naive)
    assert raw.insert([a], [9]) == (1, 0) and raw.lookup([a])[0] == [9]


# -- FitTable ------------------------------------------------------------------------------

def _dict_of(table):
    return dict(table.items())


def test_build_lookup_get_and_stats():
    keys = EDGE_KEYS + [b"job-%d" % i for i in range(100)]
    t = FitTable.build(keys, range(len(keys)), seed=99)
    t._check_invariants()
    assert len(t) == len(keys) and t.capacity == 256 and t.load_factor == 0.75
    assert _dict_of(t) == {k: i for i, k in enumerate(keys)}
    probes = keys + [b"nope", b""]
    assert t.lookup(*pack_keys(probes)).tolist() == list(range(len(keys))) + [-1, 0]
    assert t.get(b"job-7") == EDGE_KEYS.__len__() + 7 and t.get(b"nope") is None
    assert b"abc" in t and b"abx" not in t
    s = t.stats()
    assert s["operations"] == len(probes) + 4 and s["entries"] == len(keys)
    assert s["hash"] == "xxh64" and s["seed"] == 99 and s["capacity"] == 256
    assert s["mean_probe"] >= 1 and s["max_probe"] >= 1 and s["nbytes"] > 256 * 5
    assert set(s) >= {"entries", "capacity", "load_factor", "tombstones", "collisions",
                      "operations", "probes", "mean_probe", "max_probe", "nbytes", "seed", "hash"}


def test_build_duplicates_last_wins_and_geometry():
    t = FitTable.build([b"a", b"b", b"a"], [1, 2, 3])
    assert _dict_of(t) == {b"a": 3, b"b": 2} and len(t) == 2
    assert FitTable.build([], []).capacity == 8
    assert FitTable.build([b"k%d" % i for i in range(10)], range(10), capacity=4).capacity == 16
    assert FitTable.build([b"k%d" % i for i in range(10)], range(10), capacity=64).capacity == 64
    assert FitTable.build([b"k%d" % i for i in range(10)], range(10), load_factor=0.5).capacity == 32


@pytest.mark.parametrize("kwargs,match", [
    ({"capacity": 12}, "power of two"),
    ({"capacity": 0}, "power of two"),
    ({"capacity": 8.0}, "power of two"),
    ({"load_factor": 0}, "load_factor"),
    ({"load_factor": 1.0}, "load_factor"),
    ({"load_factor": -0.5}, "load_factor"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
])
def test_build_rejects_bad_geometry(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FitTable.build([b"a"], [1], **kwargs)


def test_bad_keys_values_and_batches_are_rejected():
    with pytest.raises(TypeError, match=r"keys\[1\] must be bytes"):
        FitTable.build([b"a", "b"], [1, 2])
    with pytest.raises(ValueError, match=r"values\[0\] = -1"):
        FitTable.build([b"a"], [-1])
    with pytest.raises(ValueError, match="outside"):
        FitTable.build([b"a"], [2**31])
    with pytest.raises(ValueError, match="got 2 keys"):
        FitTable.build([b"a", b"b"], [1])
    t = FitTable.build([b"a"], [1])
    with pytest.raises(ValueError, match="offsets"):
        t.lookup(np.zeros(4, np.uint8), np.array([0, 5]))
    with pytest.raises(ValueError, match="offsets"):
        t.lookup(np.zeros(4, np.uint8), np.array([0, 3, 2]))
    with pytest.raises(ValueError, match="offsets"):
        t.lookup(np.zeros(4, np.uint8), np.array([], np.int64))
    with pytest.raises(TypeError):
        t.get("a")
    with pytest.raises(ValueError):
        t.updated([(b"b", -3)], [])
    assert t.lookup(np.zeros(0, np.uint8), np.array([0])).tolist() == []
    assert t.get(bytearray(b"a")) == 1 and t.get(memoryview(b"a")) == 1


def test_updated_is_copy_on_write():
    t = FitTable.build([b"a", b"b", b"c"], [1, 2, 3]).freeze()
    before = [a.copy() for a in (t._tags, t._refs, t._arena)]
    t2 = t.updated([(b"b", 20), (b"d", 4)], [b"a", b"zz"])
    assert _dict_of(t2) == {b"b": 20, b"c": 3, b"d": 4}
    assert _dict_of(t) == {b"a": 1, b"b": 2, b"c": 3}
    for a, b in zip(before, (t._tags, t._refs, t._arena)):
        assert np.array_equal(a, b)
    assert not t2.frozen and t.frozen
    t2._check_invariants()


def test_frozen_arrays_raise_on_write():
    t = FitTable.build([b"a"], [1]).freeze()
    for a in (t._tags, t._refs, t._arena):
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 1
    assert t.get(b"a") == 1 and t.rebuilt().get(b"a") == 1


def test_counters_are_per_table_and_updated_starts_fresh():
    t = FitTable.build([b"a", b"b"], [1, 2])
    t.lookup(*pack_keys([b"a", b"b", b"c"]))
    assert t.stats()["operations"] == 3
    t2 = t.updated([(b"c", 3)], [])
    assert t2.stats()["operations"] == 0 and t.stats()["operations"] == 3


def test_growth_doubles_and_keeps_load():
    t = FitTable.build([], [], capacity=8)
    model = {}
    for step in range(40):
        batch = [(b"key-%d-%d" % (step, i), step) for i in range(7)]
        t = t.updated(batch, [])
        model.update(batch)
        assert len(t) / t.capacity <= 0.75 and t.capacity & (t.capacity - 1) == 0
    assert t.capacity == 512 and _dict_of(t) == model
    t._check_invariants()


def test_tombstones_pile_up_then_rebuild():
    keys = [b"k%03d" % i for i in range(90)]
    t = FitTable.build(keys, range(90), capacity=128)
    t = t.updated([], keys[:80])
    assert len(t) == 10 and t.stats()["dead_bytes"] > 0
    tomb = t.stats()["tombstones"]
    assert tomb > 0
    # Under the high-water mark (live + tombstones + new <= 0.8125 * 128 at 0.75) the copy keeps its tombstones.
    few = t.updated([(b"f%03d" % i, i) for i in range(5)], [])
    assert few.capacity == 128 and few.stats()["dead_bytes"] > 0
    # Past it, the table is rebuilt at the same size: tombstones and dead key bytes are dropped.
    extra = int(128 * 0.8125) - 10 - tomb + 1
    t = t.updated([(b"n%03d" % i, i) for i in range(extra)], [])
    assert t.capacity == 128 and len(t) == 10 + extra
    assert t.stats()["tombstones"] == 0 and t.stats()["dead_bytes"] == 0
    t._check_invariants()


def test_updated_reuses_tombstones_without_rebuild():
    a, b, c = _same_home_and_tag(16, want=3)
    t = FitTable.build([a, b], [1, 2], capacity=16).updated([], [a])
    assert t.stats()["tombstones"] == 1
    t = t.updated([(c, 3)], [])
    assert t.stats()["tombstones"] == 0 and _dict_of(t) == {b: 2, c: 3}


@pytest.mark.parametrize("load_factor", [0.25, 0.5, 0.9])
def test_rebuilt_at_other_load_factors(load_factor):
    keys = [b"r%d" % i for i in range(300)]
    t = FitTable.build(keys, range(300)).updated([], keys[:50])
    r = t.rebuilt(load_factor=load_factor)
    assert r.load_factor == load_factor and len(r) / r.capacity <= load_factor
    assert r.capacity // 2 < 250 / load_factor <= r.capacity or r.capacity == 8
    assert _dict_of(r) == _dict_of(t) and r.stats()["tombstones"] == 0
    assert r.rebuilt(capacity=4096).capacity == 4096
    assert r.rebuilt(capacity=2).capacity == r.capacity
    r._check_invariants()


@settings(max_examples=100, deadline=None)
@given(initial=st.dictionaries(keys_st, value_st, max_size=30),
       batches=st.lists(st.tuples(st.lists(st.tuples(keys_st, value_st), max_size=12),
                                  st.lists(keys_st, max_size=8)), max_size=8),
       load_factor=st.sampled_from([0.3, 0.75, 0.95]), seed=st.integers(0, 2**64 - 1))
def test_fit_table_behaves_like_a_dict(initial, batches, load_factor, seed):
    t = FitTable.build(list(initial), list(initial.values()), load_factor=load_factor, seed=seed)
    model = DictModel(initial)
    for upserts, deletes in batches:
        old_items = _dict_of(t)
        # Deletes of keys just upserted must win, deletes of absent keys are ignored.
        deletes = deletes + [k for k, _ in upserts[:1]]
        t2 = t.updated(upserts, deletes)
        assert _dict_of(t) == old_items
        t, model = t2, model.updated(upserts, deletes)
        assert _dict_of(t) == model.d and len(t) == len(model.d)
        assert len(t) <= t.capacity * load_factor + 1e-9
    t._check_invariants()
    probes = list(model.d) + [k + b"?" for k in model.d]
    want = [model.d[k] for k in model.d] + [model.d.get(k + b"?", -1) for k in model.d]
    assert t.lookup(*pack_keys(probes)).tolist() == want


# -- FitTable: the shared append-only arena --------------------------------------------------

def _check_all(tables):
    for table, want in tables:
        assert _dict_of(table) == want
        assert table.lookup(*pack_keys(list(want))).tolist() == list(want.values())
        table._check_invariants()


def test_updates_share_the_arena_and_a_value_change_is_invisible_to_the_older_table():
    t0 = FitTable.build([b"a", b"bb", b"ccc"], [1, 2, 3]).freeze()
    t1 = t0.updated([(b"bb", 20), (b"d", 4)], []).freeze()
    assert t1._shared is t0._shared and t1._arena_len > t0._arena_len
    assert t0.get(b"bb") == 2 and t1.get(b"bb") == 20
    # The old entry stays for t0 and is dead to t1; the batch's new entry could change in place.
    assert t1.stats()["dead_bytes"] == 16 + 2
    t2 = t1.updated([(b"bb", 20), (b"a", 1)], [])
    assert t2._arena_len == t1._arena_len and t2.stats()["dead_bytes"] == 18, "unchanged values append nothing"
    t3 = t2.updated([(b"e", 5), (b"e", 6), (b"a", 7), (b"a", 8)], [])
    assert t3.stats()["dead_bytes"] == 18 + 17 and t3._arena_len == t2._arena_len + 17 + 17
    _check_all([(t0, {b"a": 1, b"bb": 2, b"ccc": 3}), (t1, {b"a": 1, b"bb": 20, b"ccc": 3, b"d": 4}),
                (t3, {b"a": 8, b"bb": 20, b"ccc": 3, b"d": 4, b"e": 6})])


def test_a_frozen_table_is_read_only_but_its_successor_still_appends():
    t = FitTable.build([b"a"], [1]).freeze()
    t2 = t.updated([(b"b", 2)], []).freeze()
    assert t2._shared is t._shared and t._shared.buf.flags.writeable
    for table in (t, t2):
        for a in (table._tags, table._refs, table._arena):
            with pytest.raises(ValueError, match="read-only"):
                a[0] = 1
    assert t.get(b"b") is None and t2.get(b"b") == 2


def test_a_fork_copies_and_disturbs_neither_the_newer_nor_the_older_table():
    keys = [b"k%03d" % i for i in range(50)]
    t0 = FitTable.build(keys, range(50)).freeze()
    t1 = t0.updated([(b"k001", 100), (b"new1", 1)], [b"k002"]).freeze()
    t2 = t1.updated([(b"k003", 300), (b"new2", 2)], []).freeze()
    # t1 is no longer the head: updating it again must not append behind t2's entries.
    fork = t1.updated([(b"k003", 333), (b"k004", 444), (b"new3", 3)], [b"new1"]).freeze()
    assert fork._shared is not t1._shared and t2._shared is t1._shared
    t3 = t2.updated([(b"k004", 400), (b"new4", 4)], [])  # the head still appends
    assert t3._shared is t2._shared
    fork2 = t0.updated([(b"k001", 111)], [])
    m0 = dict(zip(keys, range(50)))
    m1 = {**m0, b"k001": 100, b"new1": 1}
    del m1[b"k002"]
    m2 = {**m1, b"k003": 300, b"new2": 2}
    mf = {**m1, b"k003": 333, b"k004": 444, b"new3": 3}
    del mf[b"new1"]
    _check_all([(t0, m0), (t1, m1), (t2, m2), (fork, mf), (t3, {**m2, b"k004": 400, b"new4": 4}),
                (fork2, {**m0, b"k001": 111})])


def test_old_tables_keep_answering_after_many_updates_on_the_head():
    rng = np.random.default_rng(5)
    keys = [b"sess-%07d" % i for i in range(2000)]
    t = FitTable.build(keys, range(2000)).freeze()
    model = dict(zip(keys, range(2000)))
    tables, arenas = [(t, dict(model))], {id(t._shared)}
    for step in range(200):
        ups = [(keys[i], int(v)) for i, v in zip(rng.integers(0, 2000, 8), rng.integers(0, 10**6, 8))]
        ups.append((b"add-%03d" % step, step))
        dels = [keys[int(rng.integers(0, 2000))]]
        t = t.updated(ups, dels).freeze()
        model.update(ups)
        for k in dels:
            model.pop(k, None)
        tables.append((t, dict(model)))
        arenas.add(id(t._shared))
    # Appending instead of copying: the arena was copied only when its headroom ran out.
    assert len(arenas) <= 3, f"{len(arenas)} arenas for 201 tables"
    _check_all(tables[::20] + tables[-3:])


def test_dead_bytes_from_value_changes_are_reclaimed_by_the_rebuild_rule():
    keys = [b"%03d-" % i + b"x" * 200 for i in range(100)]
    t = first = FitTable.build(keys, range(100)).freeze()
    live = first._arena_len
    rebuilt_at = []
    for step in range(1, 120):
        t = t.updated([(k, step) for k in keys], []).freeze()
        dead = t.stats()["dead_bytes"]
        if dead == 0:
            rebuilt_at.append(step)
        # Rebuilt once dead bytes pass max(half the arena, 1 MiB): the arena stays bounded.
        assert dead <= max(t._arena_len // 2, 1 << 20) + live
        assert t._arena_len <= (1 << 21) + 2 * live
    assert rebuilt_at, "the rebuild rule never fired"
    assert t._shared is not first._shared
    _check_all([(first, dict(zip(keys, range(100)))), (t, dict.fromkeys(keys, 119))])


@settings(max_examples=60, deadline=None)
@given(initial=st.dictionaries(keys_st, st.integers(0, 3), max_size=20),
       steps=st.lists(st.tuples(st.integers(0, 2**16), st.lists(st.tuples(keys_st, st.integers(0, 3)), max_size=8),
                                st.lists(keys_st, max_size=4), st.booleans()), max_size=12))
def test_any_table_of_a_forking_history_behaves_like_its_dict(initial, steps):
    t = FitTable.build(list(initial), list(initial.values()))
    history = [(t, dict(initial))]
    for parent, upserts, deletes, freeze in steps:
        base, model = history[parent % len(history)]
        new = base.updated(upserts, deletes)
        if freeze:
            new.freeze()
        model = DictModel(model).updated(upserts, deletes).d
        history.append((new, model))
    _check_all(history)
