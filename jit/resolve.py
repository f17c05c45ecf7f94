"""The whole lookup pipeline of one snapshot in one kernel call: FIT, then CRA by key kind, then default.

A request of a few keys used to pay some twenty numpy and kernel dispatches
(~100us); one call keeps a single lookup within a few microseconds. The stages
are the batch kernels themselves, each called once per batch on the keys still
unresolved: a per-key call of a helper that takes arrays costs reference-count
traffic on every key, which measured 2x slower on the CRA walk.

Match codes: 0 none, 1 exact, 2 prefix, 3 default (``valkyrie.snapshot.MATCH_NAMES``).
"""

import numpy as np

from jit._policy import kernel
from jit.addr import KIND_IPV4, KIND_IPV6, KIND_NAME, parse_address, parse_addresses
from jit.cra import ipv4_find, ipv6_find, lookup_ipv4, lookup_ipv6, lookup_names, name_find
from jit.fit import fit_get, fit_lookup
from jit.tables import unpack
from jit.text import PREFIX_TEXT_MAX, format_prefix, format_prefixes

__all__ = ["resolve", "resolve_key", "NONE", "EXACT", "PREFIX", "DEFAULT"]

NONE, EXACT, PREFIX, DEFAULT = 0, 1, 2, 3


@kernel
def _fill(sel, values, plens, node, match, plen):
    for j in range(sel.shape[0]):
        if values[j] >= 0:
            i = sel[j]
            node[i] = values[j]
            match[i] = PREFIX
            plen[i] = plens[j]


# The serving event loop calls these between short stretches of Python: releasing the GIL for a
# microsecond-long call would hand it to the writer thread, and taking it back costs a switch
# interval (GIL_SWITCH_SECONDS). So they keep it (see jit._policy).
@kernel(nogil=False)
def resolve(data, offsets, tables, with_text, hexdigits):
    """Resolve every key ``data[offsets[i]:offsets[i+1]]`` against one snapshot's tables.

    Parameters
    ----------
    data, offsets : uint8[:], int64[n + 1]
        The packed keys (``valkyrie.keys.pack_keys``).
    tables : int64[:]
        The snapshot's tables (``jit.tables.describe``): the FIT arrays, seed, counters and
        prefetch depth (``jit.fit.fit_lookup``); the IPv4 / IPv6 CRA root, arena slots and rule
        value / plen arrays; the name CRA's root node and arrays (``jit.cra.lookup_names``); the
        node index of the default route, or -1.
    with_text : bool
        Also format the matched prefixes as text (``jit.text.format_prefixes``).
    hexdigits : uint8[16]
        ``b"0123456789abcdef"`` for the IPv6 texts.

    Returns
    -------
    (cols int32[3, n], text uint8[:])
        Rows of ``cols``: next-hop node (-1: none), match code, matched prefix length in bits
        (-1 unless a prefix matched). ``text`` holds the matched prefixes of the keys whose match
        is a prefix, in key order, each ended by a NUL (empty unless ``with_text``).

    One output array and one text buffer: boxing each returned array costs ~0.35us, which
    a single lookup would otherwise pay seven times over.
    """
    (fit_tags, fit_refs, fit_arena, fit_seed, fit_stats, fit_depth,
     v4_root, v4_slots, v4_value, v4_plen,
     v6_root, v6_slots, v6_value, v6_plen,
     nm_root, nm_slots, nm_nroute, nm_skip_off, nm_skip_len, nm_skipb,
     nm_value, nm_plen, nm_rule_off, nm_rule_bytes, default) = unpack(tables)
    n = offsets.shape[0] - 1
    node = np.empty(n, np.int32)
    fit_lookup(fit_tags, fit_refs, fit_arena, data, offsets, fit_seed, node, fit_stats, fit_depth)
    kind, v4, v6hi, v6lo = parse_addresses(data, offsets)
    match = np.zeros(n, np.int8)
    plen = np.full(n, -1, np.int16)
    n4 = n6 = nn = 0
    name_bytes = 0
    for i in range(n):
        if node[i] >= 0:
            match[i] = EXACT
        elif kind[i] == KIND_IPV4:
            n4 += 1
        elif kind[i] == KIND_IPV6:
            n6 += 1
        else:
            nn += 1
            name_bytes += offsets[i + 1] - offsets[i]
    sel4 = np.empty(n4, np.int64)
    sel6 = np.empty(n6, np.int64)
    seln = np.empty(nn, np.int64)
    j4 = j6 = jn = 0
    for i in range(n):
        if match[i] == EXACT:
            continue
        if kind[i] == KIND_IPV4:
            sel4[j4] = i
            j4 += 1
        elif kind[i] == KIND_IPV6:
            sel6[j6] = i
            j6 += 1
        else:
            seln[jn] = i
            jn += 1
    if n4:
        addrs = np.empty(n4, np.uint32)
        for j in range(n4):
            addrs[j] = v4[sel4[j]]
        values = np.empty(n4, np.int32)
        plens = np.empty(n4, np.int16)
        lookup_ipv4(v4_root, v4_slots, v4_value, v4_plen, addrs, values, plens)
        _fill(sel4, values, plens, node, match, plen)
    if n6:
        hi = np.empty(n6, np.uint64)
        lo = np.empty(n6, np.uint64)
        for j in range(n6):
            hi[j] = v6hi[sel6[j]]
            lo[j] = v6lo[sel6[j]]
        values = np.empty(n6, np.int32)
        plens = np.empty(n6, np.int16)
        lookup_ipv6(v6_root, v6_slots, v6_value, v6_plen, hi, lo, values, plens)
        _fill(sel6, values, plens, node, match, plen)
    if nn and nm_value.shape[0]:
        # The name keys packed apart, so the trie walk touches only them.
        sub = np.empty(max(name_bytes, 1), np.uint8)
        sub_off = np.empty(nn + 1, np.int64)
        sub_off[0] = 0
        at = 0
        for j in range(nn):
            i = seln[j]
            for b in range(offsets[i], offsets[i + 1]):
                sub[at] = data[b]
                at += 1
            sub_off[j + 1] = at
        values = np.empty(nn, np.int32)
        plens = np.empty(nn, np.int16)
        lookup_names(nm_root, nm_slots, nm_nroute, nm_skip_off, nm_skip_len, nm_skipb, nm_value, nm_plen,
                     nm_rule_off, nm_rule_bytes, sub, sub_off, values, plens)
        _fill(seln, values, plens, node, match, plen)
    cols = np.empty((3, n), np.int32)
    nprefix = 0
    for i in range(n):
        if node[i] < 0 and default >= 0:
            node[i] = default
            match[i] = DEFAULT
        cols[0, i] = node[i]
        cols[1, i] = match[i]
        cols[2, i] = plen[i]
        if match[i] == PREFIX:
            nprefix += 1
    if not with_text or nprefix == 0:
        return cols, np.empty(0, np.uint8)
    sel = np.empty(nprefix, np.int64)
    j = 0
    for i in range(n):
        if match[i] == PREFIX:
            sel[j] = i
            j += 1
    return cols, format_prefixes(sel, kind, v4, v6hi, v6lo, plen, data, offsets, hexdigits)


@kernel(nogil=False)
def resolve_key(key, tables, with_text, hexdigits):
    """``resolve`` for one key given as ``bytes``: ``(node, match, plen, text)``.

    Takes ``resolve``'s arguments after ``offsets``; ``text`` is the matched prefix without a
    separator (empty unless the match is a prefix and ``with_text``). A server between
    requests runs with cold caches, where ``resolve``'s dozen small batch arrays cost more than
    the lookup itself; this walks the same tables with two allocations.
    """
    (fit_tags, fit_refs, fit_arena, fit_seed, fit_stats, fit_depth,
     v4_root, v4_slots, v4_value, v4_plen,
     v6_root, v6_slots, v6_value, v6_plen,
     nm_root, nm_slots, nm_nroute, nm_skip_off, nm_skip_len, nm_skipb,
     nm_value, nm_plen, nm_rule_off, nm_rule_bytes, default) = unpack(tables)
    n = len(key)
    data = np.empty(n, np.uint8)
    for i in range(n):
        data[i] = key[i]
    node = np.int64(fit_get(fit_tags, fit_refs, fit_arena, data, fit_seed, fit_stats))
    if node >= 0:
        return node, EXACT, np.int64(-1), np.empty(0, np.uint8)
    kind, a4, hi, lo = parse_address(data, 0, n)
    if kind == KIND_IPV4:
        r = ipv4_find(v4_root, v4_slots, np.int64(a4))
        value, plens = v4_value, v4_plen
    elif kind == KIND_IPV6:
        r = ipv6_find(v6_root, v6_slots, hi, lo)
        value, plens = v6_value, v6_plen
    elif nm_value.shape[0]:
        r = name_find(nm_root, nm_slots, nm_nroute, nm_skip_off, nm_skip_len, nm_skipb, nm_plen, nm_rule_off,
                      nm_rule_bytes, data, 0, n)
        value, plens = nm_value, nm_plen
    else:
        r = -1
        value, plens = v4_value, v4_plen
    if r >= 0 and value[r] >= 0:
        plen = np.int64(plens[r])
        if not with_text:
            return np.int64(value[r]), PREFIX, plen, np.empty(0, np.uint8)
        buf = np.empty(PREFIX_TEXT_MAX if kind != KIND_NAME else max(plen // 8, 1), np.uint8)
        at = format_prefix(buf, 0, kind, a4, hi, lo, plen, data, 0, np.empty(8, np.int64), hexdigits)
        return np.int64(value[r]), PREFIX, plen, buf[:at]
    if default >= 0:
        return np.int64(default), DEFAULT, np.int64(-1), np.empty(0, np.uint8)
    return np.int64(-1), NONE, np.int64(-1), np.empty(0, np.uint8)
