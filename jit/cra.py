"""CRA kernels: multibit tries in flat arena arrays, incremental updates, batch LPM.

Entry encoding (one int32, shared by every family):
    e == -1            empty (no route); it decodes as a leaf whose route id is -1
    e & 1 == 1         leaf: route id ``e >> 1``
    e & 1 == 0         child: node index ``e >> 1``; node k owns ``slots[k*256:(k+1)*256]``

IP families (leaf-pushed DIR-16-8-8..., controlled prefix expansion as in DPDK rte_lpm):
    root[65536] / root_depth[65536]   first 16 bits, one copy per snapshot
    slots[] / depth[]                 8-bit child nodes in the shared arena
    ``depth`` is the prefix length that set a leaf entry, so an insert overwrites only entries
    set by shorter prefixes and a delete restores exactly the entries the prefix owned.
    Invariant: no child node holds 256 identical leaves (such a node is collapsed into its parent).

Names (byte trie, path compressed, not leaf-pushed; the lookup keeps the best route so far):
    node k: 256 slots, nroute[k] (route ending exactly at k), skip bytes
    ``skipb[skip_off[k]:skip_off[k]+skip_len[k]]`` that must match on entering k.
    A leaf slot stands for a route whose remaining bytes are checked against its own prefix,
    so a chain ending in one route needs no node at all.
    Invariant: a non-root node has a route or at least two non-empty slots.

Copy-on-write: the arena is append-only while shared. Nodes with index >= meta[M_NODE_MUT] were
made by the running batch and are changed in place; older ones are copied first, and the copy's
original counts as dead (meta[M_DEAD]). Readers of an older snapshot never see the new tail.
``rule_value`` (and ``rule_live``) are not in the shared arena: every snapshot has its own copy,
so changing an existing route's value is one store, with no node copied and no route id spent.

Kernels never grow arrays: they return a non-zero status when one is full and the caller grows
and retries the whole batch.

Rules: route id r has rule_value[r], rule_plen[r] (bits), prefix bytes
``rule_bytes[rule_off[r]:rule_off[r]+nbytes]`` (the full address width for IP, plen/8 for
names) and rule_hash[r]. ``index`` is an open-addressing map (prefix, plen) -> route id.
"""

import numpy as np

from jit._policy import kernel

__all__ = [
    "OK", "FULL_NODES", "FULL_RULES", "FULL_INDEX", "FULL_SKIP",
    "OP_UPSERT", "OP_DELETE", "META_SIZE",
    "M_NODES", "M_RULES", "M_BYTES", "M_SKIP", "M_DEAD", "M_LIVE", "M_ROOT",
    "M_NODE_MUT", "M_MISSING",
    "ip_apply", "name_apply", "rebuild_index",
    "lookup_ipv4", "lookup_ipv6", "lookup_names", "ipv4_find", "ipv6_find", "name_find",
]

# Status codes returned by the update kernels.
OK = 0
FULL_NODES = 1
FULL_RULES = 2
FULL_INDEX = 3
FULL_SKIP = 4

OP_UPSERT = 1
OP_DELETE = 2

# Slots of the int64 ``meta`` array carried from one snapshot to the next.
M_NODES = 0      # nodes allocated in the arena
M_RULES = 1      # route ids allocated
M_BYTES = 2      # rule_bytes used
M_SKIP = 3       # skipb used (names)
M_DEAD = 4       # allocated nodes no longer reachable from this snapshot
M_LIVE = 5       # live routes
M_ROOT = 6       # root node (names)
M_NODE_MUT = 7   # first node owned by the running batch
M_MISSING = 9    # deletes that named no route (slot 8 is unused)
META_SIZE = 12

_MODE_INSERT = 0
_MODE_REPLACE = 1

# Small helpers are inlined in numba IR and the hottest loops index arrays directly: helper
# calls taking arrays measured ~30x slower per touched entry, which dominated table builds.
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


# ----------------------------------------------------------------------------------------------
# Route ids and the (prefix, plen) -> id index
# ----------------------------------------------------------------------------------------------

@kernel
def _hash_key(buf, off, nbytes, plen):
    """Hash prefix bytes and length (FNV-1a, then a splitmix64 finish to spread low bits)."""
    h = _FNV_OFFSET
    for i in range(nbytes):
        h = (h ^ np.uint64(buf[off + i])) * _FNV_PRIME
    h = (h ^ np.uint64(plen)) * _FNV_PRIME
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@kernel
def _index_find(index, rule_hash, rule_plen, rule_off, rule_bytes, buf, off, nbytes, plen, h):
    """Return (route id or -1, slot holding it or the empty slot where it would go)."""
    mask = np.uint64(index.shape[0] - 1)
    i = np.int64(h & mask)
    while True:
        r = index[i]
        if r < 0:
            return -1, i
        if rule_hash[r] == h and rule_plen[r] == plen:
            ro = rule_off[r]
            same = True
            for k in range(nbytes):
                if rule_bytes[ro + k] != buf[off + k]:
                    same = False
                    break
            if same:
                return r, i
        i = (i + 1) & (index.shape[0] - 1)


@kernel
def _index_remove(index, rule_hash, hole):
    """Delete the entry at ``hole`` by shifting later cluster members back (no tombstones)."""
    size = index.shape[0]
    mask = np.uint64(size - 1)
    j = hole
    while True:
        j = (j + 1) & (size - 1)
        r = index[j]
        if r < 0:
            break
        home = np.int64(rule_hash[r] & mask)
        # An entry whose home lies cyclically in (hole, j] must stay where it is.
        if hole <= j:
            stays = hole < home <= j
        else:
            stays = hole < home or home <= j
        if not stays:
            index[hole] = r
            hole = j
    index[hole] = -1


@kernel
def rebuild_index(rule_hash, rule_live, nrules, index):
    """Fill ``index`` (power-of-two size) with every live route id below ``nrules``."""
    index[:] = -1
    size = index.shape[0]
    mask = np.uint64(size - 1)
    for r in range(nrules):
        if rule_live[r]:
            i = np.int64(rule_hash[r] & mask)
            while index[i] >= 0:
                i = (i + 1) & (size - 1)
            index[i] = r


@kernel
def _rule_alloc(rule_value, rule_plen, rule_off, rule_bytes, rule_hash, rule_live, meta,
                buf, off, nbytes, plen, value, h):
    """Append a route id holding a copy of the prefix bytes; -1 when an array is full."""
    r = meta[M_RULES]
    b = meta[M_BYTES]
    if r >= rule_value.shape[0] or r >= rule_live.shape[0] or b + nbytes > rule_bytes.shape[0]:
        return -1
    for k in range(nbytes):
        rule_bytes[b + k] = buf[off + k]
    rule_value[r] = value
    rule_plen[r] = plen
    rule_off[r] = b
    rule_hash[r] = h
    rule_live[r] = 1
    meta[M_RULES] = r + 1
    meta[M_BYTES] = b + nbytes
    return r


# ----------------------------------------------------------------------------------------------
# IP families: leaf-pushed stride trie
# ----------------------------------------------------------------------------------------------

@kernel(inline="always")
def _ip_get(root, slots, pos):
    nr = root.shape[0]
    if pos < nr:
        return root[pos]
    return slots[pos - nr]


@kernel(inline="always")
def _ip_getd(root_depth, depth, pos):
    nr = root_depth.shape[0]
    if pos < nr:
        return root_depth[pos]
    return depth[pos - nr]


@kernel(inline="always")
def _ip_set(root, root_depth, slots, depth, pos, e, d):
    nr = root.shape[0]
    if pos < nr:
        root[pos] = e
        root_depth[pos] = d
    else:
        slots[pos - nr] = e
        depth[pos - nr] = d


@kernel(inline="always")
def _ip_set_entry(root, slots, pos, e):
    nr = root.shape[0]
    if pos < nr:
        root[pos] = e
    else:
        slots[pos - nr] = e


@kernel(inline="always")
def _ip_child(root, root_depth, slots, depth, meta, pos):
    """Make the entry at ``pos`` point to a node this batch may write; -1 when full.

    A leaf entry is expanded into a node of 256 copies of itself; a shared child is copied.
    ``pos`` addresses root entries below len(root) and slots[pos - len(root)] above.
    """
    e = _ip_get(root, slots, pos)
    if e & 1 == 0 and (e >> 1) >= meta[M_NODE_MUT]:
        return np.int64(e >> 1)
    c = meta[M_NODES]
    if c >= slots.shape[0] // 256:
        return -1
    meta[M_NODES] = c + 1
    base = c * 256
    if e & 1:
        d = _ip_getd(root_depth, depth, pos)
        slots[base:base + 256] = e
        depth[base:base + 256] = d
    else:
        old = np.int64(e >> 1) * 256
        slots[base:base + 256] = slots[old:old + 256]
        depth[base:base + 256] = depth[old:old + 256]
        meta[M_DEAD] += 1
    _ip_set_entry(root, slots, pos, np.int32(c << 1))
    return c


@kernel(inline="always")
def _ip_hit(mode, e, d, plen, old_e):
    """Whether the range update rewrites leaf ``e`` of depth ``d``."""
    if mode == _MODE_INSERT:
        return d <= plen
    return d == plen and e == old_e


@kernel(inline="always")
def _ip_node_needs(slots, depth, c, mode, plen, old_e):
    """Whether a full-node pass over node ``c`` could change anything (avoids a useless copy)."""
    base = c * 256
    for q in range(base, base + 256):
        e = slots[q]
        if e & 1 == 0:
            return True
        if _ip_hit(mode, e, depth[q], plen, old_e):
            return True
    return False


@kernel
def _ip_range(root, root_depth, slots, depth, meta, pfx, poff, plen, mode, old_e, new_e, new_d,
              stack, path):
    """Insert (mode 0) or replace (mode 1) the leaves a prefix owns, path-copying as needed."""
    nr = root.shape[0]
    idx = np.int64(pfx[poff]) * 256 + np.int64(pfx[poff + 1])
    sp = 0
    npath = 0
    if plen <= 16:
        lo = idx
        cnt = np.int64(1) << (16 - plen)
        # The hot loops index the arrays directly: helpers taking arrays cost far more here.
        for pos in range(lo, lo + cnt):
            e = root[pos]
            if e & 1 == 0:
                stack[sp] = pos
                sp += 1
            elif _ip_hit(mode, e, root_depth[pos], plen, old_e):
                root[pos] = new_e
                root_depth[pos] = new_d
    else:
        pos = idx
        boundary = 16
        b = 2
        while True:
            c = _ip_child(root, root_depth, slots, depth, meta, pos)
            if c < 0:
                return FULL_NODES
            path[npath] = pos
            npath += 1
            boundary += 8
            if plen <= boundary:
                cnt = np.int64(1) << (boundary - plen)
                lo = c * 256 + np.int64(pfx[poff + b])
                for q in range(lo, lo + cnt):
                    e = slots[q]
                    if e & 1 == 0:
                        stack[sp] = nr + q
                        sp += 1
                    elif _ip_hit(mode, e, depth[q], plen, old_e):
                        slots[q] = new_e
                        depth[q] = new_d
                break
            pos = nr + c * 256 + np.int64(pfx[poff + b])
            b += 1
    # Entries that are children carry shorter prefixes pushed down into them: visit those nodes.
    while sp > 0:
        sp -= 1
        pos = stack[sp]
        c0 = np.int64(_ip_get(root, slots, pos) >> 1)
        if not _ip_node_needs(slots, depth, c0, mode, plen, old_e):
            continue
        c = _ip_child(root, root_depth, slots, depth, meta, pos)
        if c < 0:
            return FULL_NODES
        for q in range(c * 256, c * 256 + 256):
            e = slots[q]
            if e & 1 == 0:
                stack[sp] = nr + q
                sp += 1
            elif _ip_hit(mode, e, depth[q], plen, old_e):
                slots[q] = new_e
                depth[q] = new_d
    if mode == _MODE_REPLACE:
        # A delete can leave a node of identical leaves: fold it back into its parent entry.
        for k in range(npath - 1, -1, -1):
            pos = path[k]
            base = np.int64(_ip_get(root, slots, pos) >> 1) * 256
            e0 = slots[base]
            d0 = depth[base]
            if e0 & 1 == 0:
                break
            uniform = True
            for q in range(base + 1, base + 256):
                if slots[q] != e0 or depth[q] != d0:
                    uniform = False
                    break
            if not uniform:
                break
            _ip_set(root, root_depth, slots, depth, pos, e0, d0)
            meta[M_DEAD] += 1
    return OK


@kernel
def ip_apply(width, root, root_depth, slots, depth, rule_value, rule_plen, rule_off, rule_bytes,
             rule_hash, rule_live, index, meta, op_kind, op_data, op_off, op_plen, op_value):
    """Apply upserts and deletes to an IP trie (width 4 or 16 bytes); returns a status code.

    Prefix ``i`` is ``op_data[op_off[i]:op_off[i] + width]`` (network order, host bits zero),
    ``op_plen[i]`` bits. An upsert of an existing prefix changes its value; a delete of a
    missing prefix only counts in meta[M_MISSING].
    """
    stack = np.empty(root.shape[0] + 256 * 20, np.int64)
    path = np.empty(20, np.int64)
    scratch = np.empty(width, np.uint8)
    for i in range(op_kind.shape[0]):
        off = op_off[i]
        plen = np.int64(op_plen[i])
        h = _hash_key(op_data, off, width, plen)
        r, slot = _index_find(index, rule_hash, rule_plen, rule_off, rule_bytes,
                              op_data, off, width, plen, h)
        st = OK
        if op_kind[i] == OP_UPSERT:
            v = op_value[i]
            if r >= 0:
                # ``rule_value`` is this snapshot's own array: a next-hop change copies no node.
                rule_value[r] = v
                continue
            else:
                if 2 * (meta[M_LIVE] + 1) > index.shape[0]:
                    return FULL_INDEX
                r = _rule_alloc(rule_value, rule_plen, rule_off, rule_bytes, rule_hash,
                                rule_live, meta, op_data, off, width, plen, v, h)
                if r < 0:
                    return FULL_RULES
                index[slot] = r
                meta[M_LIVE] += 1
                st = _ip_range(root, root_depth, slots, depth, meta, op_data, off, plen,
                               _MODE_INSERT, np.int32(-1), np.int32(2 * r + 1), np.uint8(plen),
                               stack, path)
        else:
            if r < 0:
                meta[M_MISSING] += 1
                continue
            # The entries fall back to the longest remaining prefix that covers this one.
            for k in range(width):
                scratch[k] = op_data[off + k]
            rc = -1
            q = plen - 1
            while q >= 0:
                scratch[q >> 3] &= np.uint8(~(0x80 >> (q & 7)) & 0xFF)
                hq = _hash_key(scratch, 0, width, q)
                rc, _unused = _index_find(index, rule_hash, rule_plen, rule_off, rule_bytes,
                                          scratch, 0, width, q, hq)
                if rc >= 0:
                    break
                q -= 1
            if rc >= 0:
                new_e = np.int32(2 * rc + 1)
                new_d = np.uint8(q)
            else:
                new_e = np.int32(-1)
                new_d = np.uint8(0)
            st = _ip_range(root, root_depth, slots, depth, meta, op_data, off, plen,
                           _MODE_REPLACE, np.int32(2 * r + 1), new_e, new_d, stack, path)
            _index_remove(index, rule_hash, slot)
            rule_live[r] = 0
            meta[M_LIVE] -= 1
        if st != OK:
            return st
    return OK


# ----------------------------------------------------------------------------------------------
# Names: path-compressed byte trie
# ----------------------------------------------------------------------------------------------

@kernel(inline="always")
def _nm_alloc(slots, nroute, skip_off, skip_len, meta):
    k = meta[M_NODES]
    if k >= nroute.shape[0] or (k + 1) * 256 > slots.shape[0]:
        return -1
    meta[M_NODES] = k + 1
    slots[k * 256:(k + 1) * 256] = -1
    nroute[k] = -1
    skip_off[k] = 0
    skip_len[k] = 0
    return k


@kernel(inline="always")
def _nm_link(slots, meta, ppos, c):
    """Point the parent slot ``ppos`` (or the root when ppos < 0) at node ``c``."""
    if ppos < 0:
        meta[M_ROOT] = c
    else:
        slots[ppos] = np.int32(c << 1)


@kernel(inline="always")
def _nm_mutable(slots, nroute, skip_off, skip_len, meta, c, ppos):
    """Return node ``c`` or a copy of it this batch may write (relinked); -1 when full."""
    if c >= meta[M_NODE_MUT]:
        return c
    k = _nm_alloc(slots, nroute, skip_off, skip_len, meta)
    if k < 0:
        return -1
    slots[k * 256:(k + 1) * 256] = slots[c * 256:(c + 1) * 256]
    nroute[k] = nroute[c]
    skip_off[k] = skip_off[c]
    skip_len[k] = skip_len[c]
    meta[M_DEAD] += 1
    _nm_link(slots, meta, ppos, k)
    return k


@kernel
def _nm_insert(slots, nroute, skip_off, skip_len, skipb, rule_plen, rule_off, rule_bytes, meta,
               x, xoff, xlen, r):
    """Place new route ``r`` (prefix x[xoff:xoff+xlen]) in the trie."""
    ppos = -1
    n = _nm_mutable(slots, nroute, skip_off, skip_len, meta, meta[M_ROOT], -1)
    if n < 0:
        return FULL_NODES
    pos = 0
    while True:
        so = skip_off[n]
        sl = np.int64(skip_len[n])
        lim = min(sl, xlen - pos)
        m = 0
        while m < lim and skipb[so + m] == x[xoff + pos + m]:
            m += 1
        if m < sl:
            # The prefix leaves (or ends inside) this node's skip: split the skip at m.
            s = _nm_alloc(slots, nroute, skip_off, skip_len, meta)
            if s < 0:
                return FULL_NODES
            skip_off[s] = so
            skip_len[s] = m
            skip_off[n] = so + m + 1
            skip_len[n] = sl - m - 1
            slots[s * 256 + np.int64(skipb[so + m])] = np.int32(n << 1)
            _nm_link(slots, meta, ppos, s)
            if pos + m == xlen:
                nroute[s] = r
            else:
                slots[s * 256 + np.int64(x[xoff + pos + m])] = np.int32(2 * r + 1)
            return OK
        pos += sl
        if pos == xlen:
            nroute[n] = r
            return OK
        j = n * 256 + np.int64(x[xoff + pos])
        e = slots[j]
        if e == -1:
            slots[j] = np.int32(2 * r + 1)
            return OK
        if e & 1 == 0:
            n = _nm_mutable(slots, nroute, skip_off, skip_len, meta, np.int64(e >> 1), j)
            if n < 0:
                return FULL_NODES
            ppos = j
            pos += 1
            continue
        # A leaf route shares this slot: give both a node at the end of their common part.
        r2 = np.int64(e >> 1)
        yoff = rule_off[r2]
        ylen = np.int64(rule_plen[r2]) // 8
        start = pos + 1
        m = 0
        while start + m < xlen and start + m < ylen and x[xoff + start + m] == rule_bytes[yoff + start + m]:
            m += 1
        t = _nm_alloc(slots, nroute, skip_off, skip_len, meta)
        if t < 0:
            return FULL_NODES
        sb = meta[M_SKIP]
        if sb + m > skipb.shape[0]:
            return FULL_SKIP
        for k in range(m):
            skipb[sb + k] = rule_bytes[yoff + start + k]
        meta[M_SKIP] = sb + m
        skip_off[t] = sb
        skip_len[t] = m
        q = start + m
        if q == ylen:
            nroute[t] = r2
        else:
            slots[t * 256 + np.int64(rule_bytes[yoff + q])] = np.int32(2 * r2 + 1)
        if q == xlen:
            nroute[t] = r
        else:
            slots[t * 256 + np.int64(x[xoff + q])] = np.int32(2 * r + 1)
        slots[j] = np.int32(t << 1)
        return OK


@kernel
def _nm_remove(slots, nroute, skip_off, skip_len, skipb, meta, x, xoff, xlen, path_n, path_p):
    """Remove existing route x and re-compress the path to it."""
    ppos = -1
    n = _nm_mutable(slots, nroute, skip_off, skip_len, meta, meta[M_ROOT], -1)
    if n < 0:
        return FULL_NODES
    pos = 0
    k = 0
    while True:
        path_n[k] = n
        path_p[k] = ppos
        k += 1
        pos += np.int64(skip_len[n])
        if pos == xlen:
            nroute[n] = -1
            break
        j = n * 256 + np.int64(x[xoff + pos])
        e = slots[j]
        if e & 1:
            slots[j] = np.int32(-1)
            break
        n = _nm_mutable(slots, nroute, skip_off, skip_len, meta, np.int64(e >> 1), j)
        if n < 0:
            return FULL_NODES
        ppos = j
        pos += 1
    i = k - 1
    # The root is exempt from the compression invariant.
    while i > 0:
        n = path_n[i]
        pp = path_p[i]
        cnt = 0
        b1 = 0
        for b in range(256):
            if slots[n * 256 + b] != -1:
                cnt += 1
                b1 = b
        if nroute[n] >= 0:
            if cnt == 0:
                slots[pp] = np.int32(2 * nroute[n] + 1)
                meta[M_DEAD] += 1
            break
        if cnt >= 2:
            break
        if cnt == 0:
            slots[pp] = -1
            meta[M_DEAD] += 1
            i -= 1
            continue
        e = slots[n * 256 + b1]
        if e & 1:
            slots[pp] = e
            meta[M_DEAD] += 1
            break
        c = _nm_mutable(slots, nroute, skip_off, skip_len, meta, np.int64(e >> 1), n * 256 + b1)
        if c < 0:
            return FULL_NODES
        sn = np.int64(skip_len[n])
        sc = np.int64(skip_len[c])
        sb = meta[M_SKIP]
        if sb + sn + 1 + sc > skipb.shape[0]:
            return FULL_SKIP
        # Merged skip = n's skip, the byte that chose c, c's skip.
        for q in range(sn):
            skipb[sb + q] = skipb[skip_off[n] + q]
        skipb[sb + sn] = np.uint8(b1)
        for q in range(sc):
            skipb[sb + sn + 1 + q] = skipb[skip_off[c] + q]
        meta[M_SKIP] = sb + sn + 1 + sc
        skip_off[c] = sb
        skip_len[c] = sn + 1 + sc
        slots[pp] = np.int32(c << 1)
        meta[M_DEAD] += 1
        break
    return OK


@kernel
def name_apply(slots, nroute, skip_off, skip_len, skipb, rule_value, rule_plen, rule_off,
               rule_bytes, rule_hash, rule_live, index, meta, op_kind, op_data, op_off, op_value):
    """Apply upserts and deletes of name prefixes ``op_data[op_off[i]:op_off[i+1]]``; a status."""
    maxlen = 0
    for i in range(op_kind.shape[0]):
        maxlen = max(maxlen, op_off[i + 1] - op_off[i])
    path_n = np.empty(maxlen + 2, np.int64)
    path_p = np.empty(maxlen + 2, np.int64)
    for i in range(op_kind.shape[0]):
        off = op_off[i]
        nb = op_off[i + 1] - off
        plen = nb * 8
        h = _hash_key(op_data, off, nb, plen)
        r, slot = _index_find(index, rule_hash, rule_plen, rule_off, rule_bytes,
                              op_data, off, nb, plen, h)
        st = OK
        if op_kind[i] == OP_UPSERT:
            v = op_value[i]
            if r >= 0:
                rule_value[r] = v
                continue
            else:
                if 2 * (meta[M_LIVE] + 1) > index.shape[0]:
                    return FULL_INDEX
                r = _rule_alloc(rule_value, rule_plen, rule_off, rule_bytes, rule_hash,
                                rule_live, meta, op_data, off, nb, plen, v, h)
                if r < 0:
                    return FULL_RULES
                index[slot] = r
                meta[M_LIVE] += 1
                st = _nm_insert(slots, nroute, skip_off, skip_len, skipb, rule_plen, rule_off,
                                rule_bytes, meta, op_data, off, nb, r)
        else:
            if r < 0:
                meta[M_MISSING] += 1
                continue
            st = _nm_remove(slots, nroute, skip_off, skip_len, skipb, meta,
                            op_data, off, nb, path_n, path_p)
            _index_remove(index, rule_hash, slot)
            rule_live[r] = 0
            meta[M_LIVE] -= 1
        if st != OK:
            return st
    return OK


# ----------------------------------------------------------------------------------------------
# Batch lookups
# ----------------------------------------------------------------------------------------------

@kernel(inline="always")
def ipv4_find(root, slots, a):
    """Route id of the longest prefix matching host-order address ``a`` (int64), or -1."""
    e = root[a >> 16]
    if e & 1 == 0:
        e = slots[np.int64(e >> 1) * 256 + ((a >> 8) & 255)]
        if e & 1 == 0:
            e = slots[np.int64(e >> 1) * 256 + (a & 255)]
    return np.int64(e >> 1)


@kernel(inline="always")
def ipv6_find(root, slots, h, low):
    """Route id of the longest prefix matching the address ``(h, low)`` (host-order uint64 halves), or -1."""
    e = root[np.int64(h >> np.uint64(48))]
    b = 2
    while e & 1 == 0:
        if b < 8:
            byte = np.int64((h >> np.uint64(56 - 8 * b)) & np.uint64(255))
        else:
            byte = np.int64((low >> np.uint64(120 - 8 * b)) & np.uint64(255))
        e = slots[np.int64(e >> 1) * 256 + byte]
        b += 1
    return np.int64(e >> 1)


@kernel(inline="always")
def name_find(root_node, slots, nroute, skip_off, skip_len, skipb, rule_plen, rule_off, rule_bytes, data, ks, klen):
    """Route id of the longest byte prefix of ``data[ks:ks+klen]`` with a route, or -1."""
    best = -1
    n = root_node
    pos = 0
    while True:
        sl = np.int64(skip_len[n])
        if pos + sl > klen:
            break
        so = skip_off[n]
        ok = True
        for k in range(sl):
            if skipb[so + k] != data[ks + pos + k]:
                ok = False
                break
        if not ok:
            break
        pos += sl
        if nroute[n] >= 0:
            best = nroute[n]
        if pos == klen:
            break
        e = slots[n * 256 + np.int64(data[ks + pos])]
        if e == -1:
            break
        if e & 1:
            r = np.int64(e >> 1)
            rl = np.int64(rule_plen[r]) // 8
            if rl <= klen:
                ro = rule_off[r]
                ok = True
                for k in range(pos + 1, rl):
                    if rule_bytes[ro + k] != data[ks + k]:
                        ok = False
                        break
                if ok:
                    best = r
            break
        n = np.int64(e >> 1)
        pos += 1
    return np.int64(best)


@kernel(inline="always")
def _answer(r, rule_value, rule_plen, out_value, out_plen, i):
    if r >= 0:
        out_value[i] = rule_value[r]
        out_plen[i] = rule_plen[r]
    else:
        out_value[i] = -1
        out_plen[i] = -1


@kernel
def lookup_ipv4(root, slots, rule_value, rule_plen, addrs, out_value, out_plen):
    """Longest-prefix match of host-order uint32 addresses; -1/-1 where no route matches."""
    for i in range(addrs.shape[0]):
        _answer(ipv4_find(root, slots, np.int64(addrs[i])), rule_value, rule_plen, out_value, out_plen, i)


@kernel
def lookup_ipv6(root, slots, rule_value, rule_plen, hi, lo, out_value, out_plen):
    """Longest-prefix match of IPv6 addresses given as host-order uint64 halves."""
    for i in range(hi.shape[0]):
        _answer(ipv6_find(root, slots, hi[i], lo[i]), rule_value, rule_plen, out_value, out_plen, i)


@kernel
def lookup_names(root_node, slots, nroute, skip_off, skip_len, skipb, rule_value, rule_plen,
                 rule_off, rule_bytes, data, offsets, out_value, out_plen):
    """Longest byte-prefix match of keys ``data[offsets[i]:offsets[i+1]]``."""
    for i in range(offsets.shape[0] - 1):
        ks = offsets[i]
        r = name_find(root_node, slots, nroute, skip_off, skip_len, skipb, rule_plen, rule_off, rule_bytes,
                      data, ks, offsets[i + 1] - ks)
        _answer(r, rule_value, rule_plen, out_value, out_plen, i)
