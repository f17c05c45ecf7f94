"""FIT (Fingerprinted ID Table) kernels: exact-match byte keys -> int32 values.

Layout (plain numpy arrays; capacity ``cap`` is a power of two)::

    tags   uint8[cap]   0 = EMPTY, 1 = TOMBSTONE, 2..255 = fingerprint (hash >> 56; 0/1 -> 2/3)
    refs   uint32[cap]  arena offset of the slot's entry (meaningful when tag >= 2)
    arena  uint8[:]     entries [hash u64][value i32][key length u32][key bytes] (LE), appended
    stats  int64[4]     [collisions, operations, probes, max probe], accumulated by lookups

A lookup counts as one *collision* when other keys made it pay an extra memory access: a
fingerprint matched a different key (its arena entry was read for nothing), or the probe
ran past the 64 tags of its home slot's line. So collisions / operations is a rate in
[0, 1] that tracks lookup cost: about 1% at load 0.5, 8% at 0.75, 25% at 0.9 for an even
mix of hits and misses with random keys (the guide flags more than 10%).

Open addressing with linear probing from home slot ``hash & (cap - 1)``. Invariant:
every live key is reachable from its home slot without crossing an EMPTY slot, and no
key is live twice. A probe reads the 1-byte tag first, so most probes touch one byte
of a dense array; a tag match follows the slot's ref to its arena entry and checks
the stored full hash, then the key bytes, so a hash collision never misroutes. Hash,
value and key share one entry: a hit costs one random arena line beyond the two
small dense arrays (1 + 4 bytes per slot), which is what bounds lookup speed once
the table outgrows the caches. The arena may be shared with older snapshots that read
only its first bytes, so ``fit_insert`` changes a value in place only in an entry at or
past ``mutable_from`` (appended by the running batch); an older entry is left to the
older readers, and the key gets a fresh entry that its slot's ref points to. Dead arena
entries (replaced or deleted) stay until ``fit_rebuild``. Kernels never allocate table
arrays: the caller does, with numpy, which backs large arrays with huge pages (fewer
TLB misses).

The probe loop is written out in each kernel on purpose: numba's inliner adds an
atomic refcount pair per call when an inlined helper with a loop takes arrays, and
those fences cost more than the whole probe.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from jit._policy import kernel
from jit.xxh64 import _byte, _read32, _read64, _xxh64

__all__ = [
    "EMPTY", "TOMBSTONE", "HEADER", "STAT_COLLISIONS", "STAT_OPERATIONS", "STAT_PROBES", "STAT_MAX_PROBE",
    "fit_tag", "fit_lookup", "fit_get", "fit_insert", "fit_delete", "fit_rebuild", "fit_live_bytes",
]

EMPTY = 0
TOMBSTONE = 1
# 64 one-byte tags share a cache line: probing inside it is nearly free, leaving it is not.
LINE_SHIFT = 6
STAT_COLLISIONS, STAT_OPERATIONS, STAT_PROBES, STAT_MAX_PROBE = 0, 1, 2, 3

_56 = np.uint64(56)


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to start loading ``arr[idx]`` into cache (no effect on results)."""
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read, locality 3 (keep in all levels), data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(arr, idx), codegen


@kernel
def fit_tag(h):
    """Fingerprint of hash ``h``: its top byte, with the reserved 0 and 1 folded to 2 and 3."""
    t = np.uint8(h >> _56)
    if t < 2:
        t += np.uint8(2)
    return t


HEADER = 16  # bytes before the key in an arena entry


@kernel
def _entry_hash(arena, off):
    return _read64(arena, off)


@kernel
def _entry_value(arena, off):
    return np.int32(_read32(arena, off + 8))


@kernel
def _entry_len(arena, off):
    return np.int64(_read32(arena, off + 12))


@kernel(inline="always")
def _key_equal(arena, off, data, start, length):
    # Arena entry at ``off`` holds the key at ``off + 16``. Keys up to 32 bytes are
    # compared with a fixed set of overlapping word reads inside the key (no
    # length-dependent loop, so no mispredicted loop exit).
    if _entry_len(arena, off) != length:
        return False
    a = off + HEADER
    if length >= 8:
        if length <= 32:
            last = length - 8
            diff = np.uint64(0)
            for k in range(4):
                q = min(8 * k, last)
                diff |= _read64(arena, a + q) ^ _read64(data, start + q)
            return diff == 0
        i = 0
        while i + 8 <= length:
            if _read64(arena, a + i) != _read64(data, start + i):
                return False
            i += 8
        last = length - 8
        return _read64(arena, a + last) == _read64(data, start + last)
    if length >= 4:
        last = length - 4
        diff = (_read32(arena, a) ^ _read32(data, start)) | (
            _read32(arena, a + last) ^ _read32(data, start + last))
        return diff == 0
    if length == 0:
        return True
    mid = length >> 1
    last = length - 1
    diff = ((_byte(arena, a) ^ _byte(data, start))
            | (_byte(arena, a + mid) ^ _byte(data, start + mid))
            | (_byte(arena, a + last) ^ _byte(data, start + last)))
    return diff == 0


@kernel
def fit_lookup(tags, refs, arena, data, offsets, seed, out, stats, depth):
    """Look up every key of a packed batch.

    Software-pipelined: key ``i + 2 * depth`` is hashed and its home tag and ref
    prefetched, key ``i + depth`` has its arena entry prefetched, and key ``i`` is
    probed, so several cache misses are in flight at once.

    Parameters
    ----------
    tags, refs, arena : table arrays (see module docstring)
    data : uint8[:]
        Query arena; key ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
    offsets : int64[n + 1]
    seed : uint64
        The table's hash seed.
    out : int32[n]
        Receives the value per key, -1 where absent.
    stats : int64[4]
        Accumulates collisions (lookups that left their home tag line or read a wrong key's
        entry; see the module docstring), operations (keys looked up), probes, max probe length.
        Not atomic: concurrent callers sharing it may lose increments.
    depth : int64
        Prefetch distance in keys (>= 1).

    Returns
    -------
    int32[n]
        ``out``.
    """
    n = offsets.shape[0] - 1
    mask = tags.shape[0] - 1
    depth = max(depth, 1)
    ring_size = 1
    while ring_size <= 2 * depth:
        ring_size *= 2
    ring_mask = ring_size - 1
    ring = np.empty(ring_size, dtype=np.uint64)
    collisions = 0
    probes_total = 0
    max_probe = 0
    for i in range(-2 * depth, n):
        ahead = i + 2 * depth
        if ahead < n:
            h = _xxh64(data, offsets[ahead], offsets[ahead + 1] - offsets[ahead], seed)
            ring[ahead & ring_mask] = h
            j = np.int64(h & np.uint64(mask))
            _prefetch(tags, j)
            _prefetch(refs, j)
        mid = i + depth
        if mid >= 0 and mid < n:
            h = ring[mid & ring_mask]
            j = np.int64(h & np.uint64(mask))
            if tags[j] == fit_tag(h):
                _prefetch(arena, np.int64(refs[j]))
        if i < 0:
            continue
        h = ring[i & ring_mask]
        start = offsets[i]
        length = offsets[i + 1] - start
        t = fit_tag(h)
        home = np.int64(h & np.uint64(mask))
        j = home
        found = -1
        probes = 0
        wrong = False
        stopped = False
        while probes <= mask:
            probes += 1
            tj = tags[j]
            if tj == EMPTY:
                stopped = True
                break
            if tj == t:
                off = np.int64(refs[j])
                if _entry_hash(arena, off) == h and _key_equal(arena, off, data, start, length):
                    found = off
                    stopped = True
                    break
                wrong = True
            j = (j + 1) & mask
        # A full lap (no key, no EMPTY slot) counts too.
        if wrong or not stopped or (j >> LINE_SHIFT) != (home >> LINE_SHIFT):
            collisions += 1
        out[i] = _entry_value(arena, found) if found >= 0 else np.int32(-1)
        probes_total += probes
        max_probe = max(max_probe, probes)
    stats[STAT_COLLISIONS] += collisions
    stats[STAT_OPERATIONS] += n
    stats[STAT_PROBES] += probes_total
    stats[STAT_MAX_PROBE] = max(stats[STAT_MAX_PROBE], max_probe)
    return out


@kernel
def fit_get(tags, refs, arena, key, seed, stats):
    """Look up one key (the whole uint8 array ``key``): its value or -1; adds to ``stats``."""
    length = key.shape[0]
    h = _xxh64(key, 0, length, seed)
    mask = tags.shape[0] - 1
    t = fit_tag(h)
    home = np.int64(h & np.uint64(mask))
    j = home
    found = -1
    probes = 0
    wrong = False
    stopped = False
    while probes <= mask:
        probes += 1
        tj = tags[j]
        if tj == EMPTY:
            stopped = True
            break
        if tj == t:
            off = np.int64(refs[j])
            if _entry_hash(arena, off) == h and _key_equal(arena, off, key, 0, length):
                found = off
                stopped = True
                break
            wrong = True
        j = (j + 1) & mask
    if wrong or not stopped or (j >> LINE_SHIFT) != (home >> LINE_SHIFT):
        stats[STAT_COLLISIONS] += 1
    stats[STAT_OPERATIONS] += 1
    stats[STAT_PROBES] += probes
    stats[STAT_MAX_PROBE] = max(stats[STAT_MAX_PROBE], probes)
    return _entry_value(arena, found) if found >= 0 else np.int32(-1)


@kernel
def _put_u32(arena, at, v):
    for k in range(4):
        arena[at + k] = np.uint8((v >> (8 * k)) & 0xFF)


@kernel
def fit_insert(tags, refs, arena, arena_len, mutable_from, data, offsets, values, seed):
    """Insert or update a packed batch of keys, in order (a later duplicate wins).

    A new key takes the first TOMBSTONE on its probe path, else the EMPTY slot that
    ends it, and its entry is appended to ``arena`` at ``arena_len``. A present key
    whose entry starts at or past ``mutable_from`` gets its value rewritten there; an
    older entry is never written (older snapshots may read it): if the value differs,
    the key's entry is appended anew, its slot repointed, and the old entry is dead.

    Parameters
    ----------
    tags, refs, arena : table arrays, mutated in place
    arena_len : int64
        Bytes of ``arena`` in use. The caller guarantees room for an entry per key
        (16 + key length each) and that offsets stay below 2**32.
    mutable_from : int64
        First arena offset this batch may rewrite (0: all of it; ``arena_len``: none).
    data, offsets : packed keys
    values : int32[n]
        Values, each >= 0.
    seed : uint64

    Returns
    -------
    (arena_len, added, tombstones_reused, dead_bytes) : int64
        ``added`` is -1 if a key found no free slot (the caller keeps load below 1);
        ``dead_bytes`` counts the entries replaced by fresh ones.
    """
    mask = tags.shape[0] - 1
    added = 0
    reused = 0
    dead = 0
    for i in range(offsets.shape[0] - 1):
        start = offsets[i]
        length = offsets[i + 1] - start
        h = _xxh64(data, start, length, seed)
        t = fit_tag(h)
        j = np.int64(h & np.uint64(mask))
        free = -1
        found = -1
        probes = 0
        while probes <= mask:
            probes += 1
            tj = tags[j]
            if tj == EMPTY:
                break
            if tj == TOMBSTONE:
                if free < 0:
                    free = j
            elif tj == t:
                off = np.int64(refs[j])
                if _entry_hash(arena, off) == h and _key_equal(arena, off, data, start, length):
                    found = off
                    break
            j = (j + 1) & mask
        value = np.int64(values[i])
        if found >= 0:
            if found >= mutable_from:
                _put_u32(arena, found + 8, value)
                continue
            if np.int64(_entry_value(arena, found)) == value:
                continue
            # Slot ``j`` holds the key: repoint it at the fresh entry below.
            dead += HEADER + length
        else:
            if free >= 0:
                j = free
                reused += 1
            elif tags[j] != EMPTY:
                return arena_len, np.int64(-1), reused, dead
            added += 1
        _put_u32(arena, arena_len, np.int64(h & np.uint64(0xFFFFFFFF)))
        _put_u32(arena, arena_len + 4, np.int64(h >> np.uint64(32)))
        _put_u32(arena, arena_len + 8, value)
        _put_u32(arena, arena_len + 12, length)
        arena[arena_len + HEADER:arena_len + HEADER + length] = data[start:start + length]
        tags[j] = t
        refs[j] = np.uint32(arena_len)
        arena_len += HEADER + length
    return arena_len, added, reused, dead


@kernel
def fit_delete(tags, refs, arena, data, offsets, seed):
    """Delete a packed batch of keys (absent keys are ignored).

    A deleted slot becomes a TOMBSTONE, unless the next slot is EMPTY: then no probe
    path runs through it, so it and the tombstones right before it become EMPTY.

    Returns
    -------
    (removed, tombstone_delta, freed_bytes) : int64
        Keys removed, net change in TOMBSTONE slots, arena bytes now dead.
    """
    mask = tags.shape[0] - 1
    removed = 0
    delta = 0
    freed = 0
    for i in range(offsets.shape[0] - 1):
        start = offsets[i]
        length = offsets[i + 1] - start
        h = _xxh64(data, start, length, seed)
        t = fit_tag(h)
        j = np.int64(h & np.uint64(mask))
        found = -1
        probes = 0
        while probes <= mask:
            probes += 1
            tj = tags[j]
            if tj == EMPTY:
                break
            if tj == t:
                off = np.int64(refs[j])
                if _entry_hash(arena, off) == h and _key_equal(arena, off, data, start, length):
                    found = j
                    break
            j = (j + 1) & mask
        if found < 0:
            continue
        removed += 1
        freed += HEADER + length
        if tags[(found + 1) & mask] != EMPTY:
            tags[found] = TOMBSTONE
            delta += 1
            continue
        tags[found] = EMPTY
        k = (found - 1) & mask
        while tags[k] == TOMBSTONE:
            tags[k] = EMPTY
            delta -= 1
            k = (k - 1) & mask
    return removed, delta, freed


@kernel
def fit_live_bytes(tags, refs, arena):
    """Return ``(live entries, arena bytes they hold)``."""
    n = 0
    total = 0
    for j in range(tags.shape[0]):
        if tags[j] > TOMBSTONE:
            n += 1
            total += HEADER + _entry_len(arena, np.int64(refs[j]))
    return n, total


@kernel
def fit_rebuild(tags, refs, arena, new_tags, new_refs, new_arena):
    """Re-insert every live entry into fresh arrays (``new_tags`` all EMPTY, any power-of-two size).

    Drops tombstones and dead arena bytes; stored hashes are reused, nothing is
    rehashed. The caller sizes ``new_arena`` for the live bytes (``fit_live_bytes``)
    and keeps the live count below ``new_tags.shape[0]``.

    Returns
    -------
    int64
        Bytes of ``new_arena`` in use.
    """
    mask = new_tags.shape[0] - 1
    at = 0
    for s in range(tags.shape[0]):
        if tags[s] <= TOMBSTONE:
            continue
        off = np.int64(refs[s])
        j = np.int64(_entry_hash(arena, off) & np.uint64(mask))
        # Live keys are unique, so the first EMPTY slot is the place; no key compare.
        while new_tags[j] != EMPTY:
            j = (j + 1) & mask
        size = HEADER + _entry_len(arena, off)
        new_arena[at:at + size] = arena[off:off + size]
        new_tags[j] = tags[s]
        new_refs[j] = np.uint32(at)
        at += size
    return at
