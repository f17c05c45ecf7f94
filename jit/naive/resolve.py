"""Pure-Python twin of ``jit.resolve``: exact dict, then the longest prefix by key kind, then the default."""

from jit.naive import cra
from jit.naive.addr import classify

__all__ = ["resolve"]

NONE, EXACT, PREFIX, DEFAULT = 0, 1, 2, 3


def resolve(keys, exact, ipv4, ipv6, names, default=-1):
    """``[(node, match, plen)]`` per key ``bytes``.

    ``exact`` maps key bytes -> node; ``ipv4``/``ipv6``/``names`` are ``jit.naive.cra`` rule dicts
    ``{(prefix bytes, plen): node}``; ``default`` is a node or -1.
    """
    out = []
    for key in keys:
        if key in exact:
            out.append((exact[key], EXACT, -1))
            continue
        kind, value = classify(key)
        if kind == 4:
            hit = cra._lookup_int(ipv4, value, 32)
        elif kind == 6:
            hit = cra._lookup_int(ipv6, value, 128)
        else:
            values, plens = cra.lookup_names(names, list(key), [0, len(key)])
            hit = (int(values[0]), int(plens[0]))
        if hit[0] >= 0:
            out.append((hit[0], PREFIX, hit[1]))
        elif default >= 0:
            out.append((default, DEFAULT, -1))
        else:
            out.append((-1, NONE, -1))
    return out
