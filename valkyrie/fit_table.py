"""FitTable: the Python face of the FIT kernels (exact-match byte keys -> int32 values).

A table is immutable once published: ``updated()`` and ``rebuilt()`` return new
tables (copy-on-write) and never touch ``self``, so RCU readers of the old snapshot
keep a consistent view. ``freeze()`` makes that a hard guarantee.

The key arena is shared, append-only, by a table and the tables ``updated()`` derives
from it: each holds a view of the arena's first ``arena_len`` bytes, and only the newest
(the arena's head) appends past its own length, where no older view reaches. A changed
value gets a fresh entry (the old one stays for older readers and counts as dead), so a
batch costs a copy of tags and refs (5 bytes per slot) plus its own entries. Updating an
older table, or a head whose arena is full, copies the arena first.

>>> t = FitTable.build([b"job-1", b"job-2"], [0, 7])
>>> t.get(b"job-2"), t.get(b"job-3")
(7, None)
>>> t2 = t.updated([(b"job-3", 1)], [b"job-1"])
>>> sorted(t2.items()), len(t)
([(b'job-2', 7), (b'job-3', 1)], 2)

Counters (collisions, operations, probes, max probe) live in a small mutable int64
array beside the frozen ones. Kernels add to it without atomics, so under concurrent
readers the counts are approximate (an increment can be lost), never wrong in kind.
Each table counts its own lookups from zero (``updated()``/``rebuilt()`` tables too);
whoever exports ``_total`` metrics adds a retired table's final counts to a base.
"""

import itertools
import threading

import numpy as np

from jit import fit as _k
from valkyrie.keys import pack_keys, readonly

__all__ = ["FitTable", "warm_up"]

_MIN_CAPACITY = 8
_ARENA_LIMIT = 2**32  # arena offsets are uint32
_PREFETCH_DEPTH = 4  # keys between hashing and probing in the lookup pipeline
_MAX_VALUE = 2**31 - 1
_SEED_LIMIT = 2**64
_generations = itertools.count(1)


def _is_power_of_two(n):
    return n >= 1 and n & (n - 1) == 0


def _check_load_factor(load_factor):
    lf = float(load_factor)
    if not 0.0 < lf < 1.0:
        raise ValueError(f"load_factor must be between 0 and 1 (exclusive), got {load_factor!r}")
    return lf


def _capacity_for(n, load_factor, capacity):
    """The requested capacity if it is a power of two that fits ``n`` keys, else the smallest that does."""
    if capacity is not None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
            raise ValueError(f"capacity must be a power of two, got {capacity!r}")
        if not _is_power_of_two(int(capacity)):
            raise ValueError(f"capacity must be a power of two, got {capacity!r}")
        cap = int(capacity)
    else:
        cap = _MIN_CAPACITY
    while n > cap * load_factor:
        cap *= 2
    return cap


def _high_water(load_factor):
    # Live + tombstone slots allowed before a same-size rebuild: a little above the
    # target load, so misses (which probe through tombstones) stay short.
    return load_factor + (1.0 - load_factor) / 4


def _as_key(key, where):
    if type(key) is bytes:
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"{where} must be bytes, got {type(key).__name__}: {key!r}")


def _as_keys(keys, what):
    return [k if type(k) is bytes else _as_key(k, f"{what}[{i}]") for i, k in enumerate(keys)]


def _as_values(values, n):
    try:
        v = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"values must be integers in 0..{_MAX_VALUE}: {exc}") from None
    if v.shape != (n,):
        raise ValueError(f"got {n} keys but values of shape {v.shape}")
    bad = np.flatnonzero((v < 0) | (v > _MAX_VALUE))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"values[{i}] = {int(v[i])} is outside 0..{_MAX_VALUE}")
    return v.astype(np.int32)


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"seed must be an integer in 0..2**64-1, got {seed!r}")
    return int(seed)


def _packed(keys):
    """``pack_keys`` as read-only views, so each kernel compiles for one array type only."""
    data, offsets = pack_keys(keys)
    return readonly(data), readonly(offsets)


def _query(data, offsets):
    """Validate a packed batch and return read-only, contiguous views of it."""
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)
    if offsets.size == 0:
        raise ValueError("offsets must hold n + 1 entries (at least [0])")
    if offsets[0] < 0 or offsets[-1] > data.size or (offsets.size > 1 and (np.diff(offsets) < 0).any()):
        raise ValueError(
            f"offsets must be non-decreasing within 0..{data.size} (the data length), "
            f"got {offsets[0]}..{offsets[-1]}")
    return readonly(data), readonly(offsets)


class _Arena:
    """Append-only key entries shared by a chain of tables; only the head table may append.

    ``head`` is the generation of the table whose arena length ends the written bytes (0: none).
    """

    __slots__ = ("buf", "head", "lock")

    def __init__(self, size):
        self.buf = np.empty(max(size, 1), dtype=np.uint8)
        self.head = 0
        self.lock = threading.Lock()


def _with_headroom(need, used):
    # Room for later batches to append before the next copy (small tables too); pages never
    # written cost no memory.
    return min(max(need, used + used // 2 + 4096), _ARENA_LIMIT - 1)


class FitTable:
    """Immutable exact-match table: byte-string keys -> int32 values (>= 0)."""

    __slots__ = ("_tags", "_refs", "_shared", "_arena", "_arena_len", "_dead", "_n", "_tombstones",
                 "_seed", "_load_factor", "_counters", "_gen")

    def __init__(self, tags, refs, shared, arena_len, n, *, tombstones, dead, seed, load_factor,
                 counters):
        # Internal: use build(), updated() or rebuilt().
        self._tags = tags
        self._refs = refs
        self._shared = shared
        self._set_arena_len(arena_len)
        self._gen = next(_generations)
        self._n = n
        self._tombstones = tombstones
        self._dead = dead
        self._seed = seed
        self._load_factor = load_factor
        self._counters = counters

    def _set_arena_len(self, arena_len):
        # Readers get a view of our own bytes only: the head appends past them into the same buffer.
        self._arena_len = arena_len
        self._arena = self._shared.buf[:arena_len]

    # -- construction -----------------------------------------------------------------

    @classmethod
    def _empty(cls, capacity, arena_room, *, seed, load_factor):
        if arena_room >= _ARENA_LIMIT:
            raise ValueError(f"keys need {arena_room} arena bytes; a FIT holds at most 4 GiB")
        shared = _Arena(_with_headroom(arena_room, arena_room))
        table = cls(np.zeros(capacity, dtype=np.uint8), np.zeros(capacity, dtype=np.uint32),
                    shared, 0, 0, tombstones=0, dead=0, seed=seed, load_factor=load_factor,
                    counters=np.zeros(4, dtype=np.int64))
        shared.head = table._gen
        return table

    @classmethod
    def build(cls, keys, values, *, load_factor=0.75, capacity=None, seed=0):
        """Build a table from parallel sequences; a later duplicate key wins.

        ``capacity`` (a power of two) is raised to the smallest power of two holding
        ``len(keys)`` at ``load_factor`` if it is ``None`` or too small.
        """
        lf = _check_load_factor(load_factor)
        seed = _check_seed(seed)
        keys = _as_keys(keys, "keys")
        vals = _as_values(values, len(keys))
        cap = _capacity_for(len(keys), lf, capacity)
        data, offsets = _packed(keys)
        table = cls._empty(cap, data.size + _k.HEADER * len(keys), seed=seed, load_factor=lf)
        table._insert(data, offsets, vals, 0)
        return table

    def _insert(self, data, offsets, values, mutable_from):
        arena_len, added, reused, dead = _k.fit_insert(
            self._tags, self._refs, self._shared.buf, self._arena_len, mutable_from,
            data, offsets, values, np.uint64(self._seed))
        # The geometry checks in build()/updated() keep an EMPTY slot on every path.
        assert added >= 0, "FIT insert found no free slot"
        self._set_arena_len(int(arena_len))
        self._n += int(added)
        self._tombstones -= int(reused)
        self._dead += int(dead)

    def _delete(self, data, offsets):
        removed, delta, freed = _k.fit_delete(self._tags, self._refs, self._arena, data, offsets,
                                              np.uint64(self._seed))
        self._n -= int(removed)
        self._tombstones += int(delta)
        self._dead += int(freed)

    def _rebuilt_into(self, capacity, arena_room, load_factor):
        tags, refs, arena = readonly(self._tags), readonly(self._refs), readonly(self._arena)
        n, live = _k.fit_live_bytes(tags, refs, arena)
        assert n == self._n, "FIT entry count drifted from its arrays"
        new = FitTable._empty(capacity, int(live) + arena_room, seed=self._seed,
                              load_factor=load_factor)
        new._set_arena_len(int(_k.fit_rebuild(tags, refs, arena, new._tags, new._refs, new._shared.buf)))
        new._n = self._n
        return new

    def _claim(self, arena_room):
        """The arena this update may append to: ours if we are its head and it has room, else a copy."""
        need = self._arena_len + arena_room
        if need >= _ARENA_LIMIT:
            raise ValueError("keys need more than the 4 GiB a FIT arena holds")
        shared = self._shared
        with shared.lock:
            if shared.head == self._gen and need <= shared.buf.size:
                # Claimed: no other update may append until the new table becomes the head.
                shared.head = 0
                return shared
        copy = _Arena(_with_headroom(need, self._arena_len))
        copy.buf[:self._arena_len] = self._arena
        return copy

    def _derived(self, arena_room):
        """A writable successor sharing (or copying) the arena; its batch may rewrite only its own entries."""
        table = FitTable(self._tags.copy(), self._refs.copy(), self._claim(arena_room), self._arena_len,
                         self._n, tombstones=self._tombstones, dead=self._dead, seed=self._seed,
                         load_factor=self._load_factor, counters=np.zeros(4, dtype=np.int64))
        table._shared.head = table._gen
        return table

    def updated(self, upserts, deletes):
        """Return a new table with ``upserts`` ((bytes, int) pairs) applied, then ``deletes``.

        Absent deletes are ignored. ``self`` is never modified. Small batches copy tags
        and refs and append to the shared arena; the table doubles when the load factor
        would be exceeded and is rebuilt at its size when tombstones or dead key bytes pile up.
        """
        upserts = list(upserts)
        ukeys = _as_keys([kv[0] for kv in upserts], "upserts key")
        uvals = _as_values([kv[1] for kv in upserts], len(upserts))
        dkeys = _as_keys(deletes, "deletes")
        udata, uoffsets = _packed(ukeys)
        room = udata.size + _k.HEADER * len(ukeys)
        # Only keys not already present take a slot; count them without touching counters.
        scratch = np.zeros(4, dtype=np.int64)
        new_keys = int((self._lookup(udata, uoffsets, scratch) < 0).sum()) if ukeys else 0
        cap, lf = self.capacity, self._load_factor
        grown = _capacity_for(self._n + new_keys, lf, cap)
        used = self._n + self._tombstones + new_keys
        if grown != cap or used > cap * _high_water(lf) or self._dead > max(self._arena_len // 2, 1 << 20):
            table = self._rebuilt_into(grown, room, lf)
        else:
            table = self._derived(room)
        if ukeys:
            # A shared arena's entries before this batch may be read by older tables: never rewrite them.
            shared = table._shared is self._shared
            table._insert(udata, uoffsets, uvals, table._arena_len if shared else 0)
        if dkeys:
            ddata, doffsets = _packed(dkeys)
            table._delete(ddata, doffsets)
        return table

    def rebuilt(self, *, load_factor=None, capacity=None):
        """Return a table with the same entries and new geometry (tombstones and dead bytes dropped).

        ``capacity`` follows the rule of ``build()``; ``None`` picks the smallest fit.
        """
        lf = self._load_factor if load_factor is None else _check_load_factor(load_factor)
        return self._rebuilt_into(_capacity_for(self._n, lf, capacity), 0, lf)

    # -- reading ----------------------------------------------------------------------

    def _lookup(self, data, offsets, stats):
        out = np.empty(offsets.size - 1, dtype=np.int32)
        return _k.fit_lookup(readonly(self._tags), readonly(self._refs), readonly(self._arena),
                             data, offsets, np.uint64(self._seed), out, stats, _PREFETCH_DEPTH)

    def lookup(self, data, offsets):
        """Values of a packed batch (``valkyrie.keys.pack_keys``) as int32[n], -1 where absent."""
        data, offsets = _query(data, offsets)
        return self._lookup(data, offsets, self._counters)

    def get(self, key):
        """Value of one key, or ``None``."""
        key = np.frombuffer(_as_key(key, "key"), dtype=np.uint8)
        v = _k.fit_get(readonly(self._tags), readonly(self._refs), readonly(self._arena),
                       readonly(key), np.uint64(self._seed), self._counters)
        return None if v < 0 else int(v)

    def kernel_args(self):
        """``(tags, refs, arena, seed, counters, depth)``: this table's part of ``jit.resolve.resolve``'s arguments."""
        return (readonly(self._tags), readonly(self._refs), readonly(self._arena), np.uint64(self._seed),
                self._counters, _PREFETCH_DEPTH)

    def __contains__(self, key):
        return self.get(key) is not None

    def __len__(self):
        return self._n

    def items(self):
        """Iterate ``(key, value)`` pairs, in slot order."""
        arena = self._arena[:self._arena_len].tobytes()
        for off in self._refs[self._tags > _k.TOMBSTONE].tolist():
            value = int.from_bytes(arena[off + 8:off + 12], "little")
            n = int.from_bytes(arena[off + 12:off + 16], "little")
            yield arena[off + _k.HEADER:off + _k.HEADER + n], value

    def arrays(self):
        """The arrays this table holds."""
        return [self._tags, self._refs, self._arena, self._counters]

    def freeze(self):
        """Make every array readers see read-only (publishing calls this); returns ``self``."""
        for a in (self._tags, self._refs, self._arena):
            a.flags.writeable = False
        return self

    @property
    def frozen(self):
        return not self._tags.flags.writeable

    @property
    def load_factor(self):
        """The configured target load factor."""
        return self._load_factor

    @property
    def capacity(self):
        return int(self._tags.size)

    @property
    def seed(self):
        return self._seed

    def stats(self):
        """Geometry and counters; ``load_factor`` here is the actual one (entries / capacity)."""
        c = self._counters.tolist()
        ops = c[_k.STAT_OPERATIONS]
        return {
            "entries": self._n,
            "capacity": self.capacity,
            "load_factor": self._n / self.capacity,
            "target_load_factor": self._load_factor,
            "tombstones": self._tombstones,
            "collisions": c[_k.STAT_COLLISIONS],
            "operations": ops,
            "probes": c[_k.STAT_PROBES],
            "mean_probe": c[_k.STAT_PROBES] / ops if ops else 0.0,
            "max_probe": c[_k.STAT_MAX_PROBE],
            "arena_bytes": self._arena_len,
            "dead_bytes": self._dead,
            "nbytes": self._tags.nbytes + self._refs.nbytes + self._arena.nbytes + self._counters.nbytes,
            "seed": self._seed,
            "hash": "xxh64",
        }

    def __repr__(self):
        return (f"FitTable(entries={self._n}, capacity={self.capacity}, "
                f"load_factor={self._load_factor}, frozen={self.frozen})")

    def _check_invariants(self):
        """Assert the layout invariants of ``jit.fit`` (tests call this; O(capacity) in Python)."""
        from jit.naive.fit import tag_of
        from jit.naive.xxh64 import xxh64_ref
        tags, cap = self._tags, self.capacity
        assert self._arena.base is self._shared.buf and self._arena.size == self._arena_len
        live = int(_k.fit_live_bytes(readonly(tags), readonly(self._refs), readonly(self._arena))[1])
        assert live + self._dead == self._arena_len, f"{live} live + {self._dead} dead != {self._arena_len} arena bytes"
        seen = set()
        for key, value in self.items():
            assert key not in seen, f"duplicate live key {key!r}"
            seen.add(key)
            h = xxh64_ref(key, self._seed)
            j = h % cap
            while True:
                assert tags[j] != _k.EMPTY, f"{key!r} unreachable from its home slot"
                off = int(self._refs[j])
                if tags[j] > _k.TOMBSTONE and self._arena[off + 16:off + 16 + len(key)].tobytes() == key \
                        and int.from_bytes(self._arena[off + 12:off + 16].tobytes(), "little") == len(key):
                    assert tags[j] == tag_of(h), f"{key!r} has tag {tags[j]}, expected {tag_of(h)}"
                    assert int.from_bytes(self._arena[off:off + 8].tobytes(), "little") == h
                    break
                j = (j + 1) % cap
        assert len(seen) == self._n, f"{len(seen)} live keys but entry count {self._n}"
        assert int((tags == _k.TOMBSTONE).sum()) == self._tombstones, "tombstone count drifted"
        assert (tags == _k.EMPTY).any(), "no EMPTY slot left"


def warm_up():
    """Compile (or load from cache) every kernel signature ``FitTable`` uses."""
    t = FitTable.build([b"warm", b"up"], [0, 1], capacity=8)
    t = t.updated([(b"x", 2)], [b"warm"]).rebuilt(capacity=16).freeze()
    t.lookup(*pack_keys([b"up", b"absent"]))
    t.get(b"up")
    t.rebuilt().updated([], [])
