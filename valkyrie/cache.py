"""Route cache for single-key lookups: answers by key, LRU-bounded, with a TTL, tied to one snapshot epoch.

Only ``GET /v1/route/{key}`` uses it, and only for answers resolved past the
FIT (prefix, default, no route): an exact answer is already one FIT probe.
Batch lookups never use it: the kernels resolve a batch faster than a Python
dict could be consulted per key. Whether a hit is worth having on the single
path is measured by ``bench/bench_cache.py`` (see bench/results/cache.txt).

Invalidation is lazy, single-threaded and O(1): every entry carries the epoch it was
resolved in, and once a newer epoch is seen an older entry is a miss (dropped when met, or
evicted as least recently used). Emptying the whole cache at the first lookup of each new
snapshot cost that lookup ~0.3us per entry (~60us at 10 snapshots/s, milliseconds after an idle
spell), and the writer thread never touches the cache. Entries are the
encoded replies (``encoded()``: status and JSON bytes), not answer dicts: a hit
skips the encoding too, and 50,000 cached byte strings are not objects the
garbage collector has to walk, as 50,000 dicts would be.
"""

import time
from collections import OrderedDict

import orjson

from valkyrie.routes import RouteError, parse_key

__all__ = ["RouteCache", "encoded", "warm"]

# Rough bytes one cached reply holds (key, reply bytes, tuples, OrderedDict links); bounds entries by max_cache_memory.
ENTRY_BYTES = 400


class RouteCache:
    """``get(key, epoch)`` / ``put(key, epoch, answer)``; a new epoch makes every older entry a miss.

    Not thread-safe: the server calls it from the event loop only.
    """

    def __init__(self, size, ttl, *, max_bytes=None, clock=time.monotonic):
        self.epoch = -1
        self._entries = OrderedDict()  # key -> (epoch, expiry, answer), least recently used first
        self._live = 0  # entries of the current epoch
        self.clock = clock
        self.hits = self.misses = self.evictions = self.expired = self.invalidations = 0
        self.configure(size, ttl, max_bytes=max_bytes)

    def configure(self, size, ttl, *, max_bytes=None):
        """Change capacity and TTL live; shrinking evicts the least recently used."""
        limit = size if max_bytes is None else min(size, max_bytes // ENTRY_BYTES)
        self.size, self.ttl = max(0, int(limit)), ttl
        while len(self._entries) > self.size:
            self._evict()

    def advance(self, epoch):
        """Follow the live snapshot: entries of any other epoch stop answering (in O(1); dropped as met)."""
        if epoch != self.epoch:
            if self._live:
                self.invalidations += 1
            self.epoch, self._live = epoch, 0

    def get(self, key, epoch):
        """The cached answer for ``key`` in snapshot ``epoch``, or None."""
        self.advance(epoch)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry[0] != epoch:
            del self._entries[key]  # resolved in an older snapshot
            self.misses += 1
            return None
        if entry[1] < self.clock():
            del self._entries[key]
            self._live -= 1
            self.expired += 1
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[2]

    def put(self, key, epoch, answer):
        """Remember ``answer`` for ``key`` (ignored when it belongs to another epoch or the cache is off)."""
        if self.size == 0 or epoch != self.epoch:
            return
        old = self._entries.get(key)
        if old is None or old[0] != epoch:
            self._live += 1
        self._entries[key] = (epoch, self.clock() + self.ttl, answer)
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._evict()

    def _evict(self):
        _, (epoch, _, _) = self._entries.popitem(last=False)
        if epoch == self.epoch:
            self._live -= 1
        self.evictions += 1

    def clear(self):
        """Drop every entry."""
        self._entries.clear()
        self._live = 0

    def stats(self):
        """Counters and sizes for metrics (``entries``: answers of the current epoch)."""
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions, "expired": self.expired,
                "invalidations": self.invalidations, "entries": self._live, "size": self.size,
                "ttl": self.ttl}

    def __len__(self):
        return self._live

    def keys(self):
        """Cached keys of the current epoch, least recently used first."""
        return [k for k, entry in self._entries.items() if entry[0] == self.epoch]


def encoded(key, answer):
    """The HTTP reply an answer becomes: ``(200, JSON)``, or ``(404, no_route error JSON)``."""
    if answer["match"] == "none":
        message = f"no route for key {key!r} (epoch {answer['epoch']})"
        return 404, _compact(orjson.dumps({"error": {"code": "no_route", "message": message}}))
    return 200, _compact(orjson.dumps(answer))


def _compact(body):
    # orjson's bytes keep the whole ~4KB buffer they were written into (sys.getsizeof does not
    # show it): 50,000 cached replies held 200MB of RSS. A copy holds only the reply.
    return bytes(memoryview(body))


def warm(cache, rcu, keys):
    """Resolve ``keys`` (text) in one batch on the live snapshot and cache the answers past the FIT.

    Raises ``RouteError`` naming the first invalid key before anything is cached.
    Returns ``{"epoch", "keys", "cached", "exact"}``.
    """
    raw = [parse_key(k, f"keys[{i}]") if isinstance(k, str) else _not_text(i, k) for i, k in enumerate(keys)]
    with rcu.read() as snap:
        answers = snap.answers(snap.resolve(raw), keys)
        epoch = snap.epoch
    cache.advance(epoch)
    cached = exact = 0
    for key, answer in zip(keys, answers):
        if answer["match"] == "exact":
            exact += 1
            continue
        answer["epoch"] = epoch
        cache.put(key, epoch, encoded(key, answer))
        cached += 1
    return {"epoch": epoch, "keys": len(keys), "cached": min(cached, cache.size), "exact": exact}


def _not_text(i, value):
    raise RouteError(f"keys[{i}] must be a string, got {type(value).__name__}: {value!r}", "invalid_key")
