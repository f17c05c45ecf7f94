"""The common ``PUT /v1/routes`` body scanned in one kernel: no JSON objects, no route objects.

A 5,000-route body cost ~8ms of interpreter time to decode (orjson) and turn into route
tuples, all of it holding the GIL that lookups need, and left ~15,000 objects for the young
GC generation. This accepts only the plain shape and says "not mine" for anything else, so
the caller parses that with the full JSON parser and words any error exactly as before::

    {"routes": [{"prefix": "198.51.100.0/24", "next_hop": "a"}, {"key": "job-1", "next_hop": "b"}]}

Strings must be printable ASCII without escapes; whitespace is JSON's; each entry has exactly
two members, ``next_hop`` and one of ``prefix``/``key``, in either order, both non-empty.
The pure-Python twin is ``jit.naive.put_scan``.
"""

import numpy as np

from jit._policy import kernel

__all__ = ["scan_put", "KIND_PREFIX", "KIND_KEY"]

KIND_PREFIX = 1
KIND_KEY = 2


@kernel
def _ws(b, i, n):
    while i < n and (b[i] == 32 or b[i] == 9 or b[i] == 10 or b[i] == 13):
        i += 1
    return i


@kernel
def _string(b, i, n):
    """End (index of the closing quote) of the plain string opening at ``b[i]``, or -1."""
    if i >= n or b[i] != 34:
        return -1
    i += 1
    while i < n:
        c = b[i]
        if c == 34:
            return i
        if c < 32 or c > 126 or c == 92:
            return -1
        i += 1
    return -1


@kernel
def _is(b, s, e, word):
    if e - s != len(word):
        return False
    for k in range(e - s):
        if b[s + k] != word[k]:
            return False
    return True


@kernel
def scan_put(b, max_key, routes_w, prefix_w, key_w, hop_w):
    """Scan body ``b`` (uint8): ``(ok, n, kind, text_start, text_end, hop, hop_start, hop_end)``.

    ``ok`` is False when the body is not of the plain shape (then nothing else is meaningful).
    Per entry ``i < n``: ``kind[i]`` (``KIND_PREFIX``/``KIND_KEY``), its text at
    ``b[text_start[i]:text_end[i]]`` and ``hop[i]``, the ordinal of its next hop among the
    distinct ones, numbered by first appearance; hop ``h`` is ``b[hop_start[h]:hop_end[h]]``. Keys longer than
    ``max_key`` bytes are not plain. ``*_w``: the member names as uint8 arrays (cached code
    must not freeze globals).
    """
    n = b.shape[0]
    cap = n // 16 + 1
    kind = np.zeros(cap, np.int8)
    ts = np.zeros(cap, np.int64)
    te = np.zeros(cap, np.int64)
    hs = np.zeros(cap, np.int64)
    he = np.zeros(cap, np.int64)
    m = 0
    fail = (False, 0, kind[:0], ts[:0], te[:0], hs[:0], hs[:0], he[:0])
    i = _ws(b, 0, n)
    if i >= n or b[i] != 123:
        return fail
    i = _ws(b, i + 1, n)
    e = _string(b, i, n)
    if e < 0 or not _is(b, i + 1, e, routes_w):
        return fail
    i = _ws(b, e + 1, n)
    if i >= n or b[i] != 58:
        return fail
    i = _ws(b, i + 1, n)
    if i >= n or b[i] != 91:
        return fail
    i = _ws(b, i + 1, n)
    while True:
        if i >= n or b[i] != 123 or m >= cap:
            return fail
        i = _ws(b, i + 1, n)
        got_text = got_hop = False
        for _member in range(2):
            e = _string(b, i, n)
            if e < 0:
                return fail
            ns, ne = i + 1, e
            i = _ws(b, e + 1, n)
            if i >= n or b[i] != 58:
                return fail
            i = _ws(b, i + 1, n)
            e = _string(b, i, n)
            if e < 0 or e == i + 1:
                return fail  # not a plain string, or empty
            vs, ve = i + 1, e
            if _is(b, ns, ne, hop_w) and not got_hop:
                got_hop = True
                hs[m] = vs
                he[m] = ve
            elif _is(b, ns, ne, prefix_w) and not got_text:
                got_text = True
                kind[m] = KIND_PREFIX
                ts[m] = vs
                te[m] = ve
            elif _is(b, ns, ne, key_w) and not got_text and ve - vs <= max_key:
                got_text = True
                kind[m] = KIND_KEY
                ts[m] = vs
                te[m] = ve
            else:
                return fail
            i = _ws(b, e + 1, n)
            if _member == 0:
                if i >= n or b[i] != 44:
                    return fail
                i = _ws(b, i + 1, n)
        if i >= n or b[i] != 125:
            return fail
        m += 1
        i = _ws(b, i + 1, n)
        if i < n and b[i] == 44:
            i = _ws(b, i + 1, n)
            continue
        break
    if i >= n or b[i] != 93:
        return fail
    i = _ws(b, i + 1, n)
    if i >= n or b[i] != 125:
        return fail
    if _ws(b, i + 1, n) != n:
        return fail
    # Distinct next hops by open addressing on an FNV-1a hash of their bytes.
    size = 1
    while size < 2 * m:
        size *= 2
    table = np.full(size, -1, np.int64)
    hop = np.empty(m, np.int64)
    first = np.empty(m, np.int64)
    distinct = 0
    for j in range(m):
        h = np.uint64(14695981039346656037)
        for k in range(hs[j], he[j]):
            h = (h ^ np.uint64(b[k])) * np.uint64(1099511628211)
        slot = np.int64(h & np.uint64(size - 1))
        while True:
            t = table[slot]
            if t < 0:
                table[slot] = distinct
                first[distinct] = j
                hop[j] = distinct
                distinct += 1
                break
            f = first[t]
            if he[f] - hs[f] == he[j] - hs[j]:
                same = True
                for k in range(he[j] - hs[j]):
                    if b[hs[f] + k] != b[hs[j] + k]:
                        same = False
                        break
                if same:
                    hop[j] = t
                    break
            slot = (slot + 1) & (size - 1)
    hop_start = np.empty(distinct, np.int64)
    hop_end = np.empty(distinct, np.int64)
    for t in range(distinct):
        hop_start[t] = hs[first[t]]
        hop_end[t] = he[first[t]]
    return True, m, kind[:m], ts[:m], te[:m], hop[:m], hop_start, hop_end
