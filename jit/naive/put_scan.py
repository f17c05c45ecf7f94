"""Pure-Python twin of ``jit.put_scan``: the same plain shape, decided with the ``json`` module."""

import json

__all__ = ["scan_put"]

_PLAIN_BYTES = frozenset(range(32, 127)) | {9, 10, 13}


def scan_put(body, max_key):
    """``[(kind, text, next_hop), ...]`` (kind 1 prefix, 2 key; bytes) when ``body`` is plain, else None."""
    # Outside strings only JSON whitespace and punctuation are printable ASCII; inside, a plain
    # string has no escape and no control character (raw tab/newline in a string is invalid JSON).
    if not set(body) <= _PLAIN_BYTES or b"\\" in body:
        return None
    try:
        top = json.loads(body, object_pairs_hook=list)
    except ValueError:
        return None
    if not (isinstance(top, list) and len(top) == 1 and top[0][0] == "routes" and isinstance(top[0][1], list)):
        return None
    out = []
    for entry in top[0][1]:
        if not isinstance(entry, list) or len(entry) != 2:
            return None
        members = dict(entry)
        if len(members) != 2 or "next_hop" not in members or not ({"prefix", "key"} & set(members)):
            return None
        if not all(isinstance(v, str) and v for v in members.values()):
            return None
        kind, name = (1, "prefix") if "prefix" in members else (2, "key")
        if kind == 2 and len(members["key"]) > max_key:
            return None
        out.append((kind, members[name].encode(), members["next_hop"].encode()))
    return out or None
