"""Slow, obviously-right twins of the FIT kernels in ``jit.fit``.

``NaiveFit`` keeps the same layout (tags, refs, arena entries) in Python lists and a
bytearray and follows the same probing rules, so tests can compare kernel arrays
slot for slot; ``DictModel`` is the plain-dict meaning those rules must preserve.
"""

from jit.naive.xxh64 import xxh64_ref

__all__ = ["EMPTY", "TOMBSTONE", "HEADER", "tag_of", "NaiveFit", "DictModel"]

EMPTY = 0
TOMBSTONE = 1
HEADER = 16


def tag_of(h):
    """Fingerprint of a 64-bit hash: its top byte, 0 and 1 folded to 2 and 3."""
    t = h >> 56
    return t + 2 if t < 2 else t


class NaiveFit:
    """Linear-probing table in plain Python, mirroring ``jit.fit`` exactly."""

    def __init__(self, capacity, seed=0):
        assert capacity >= 1 and capacity & (capacity - 1) == 0
        self.tags = [EMPTY] * capacity
        self.refs = [0] * capacity
        self.arena = bytearray()
        self.seed = seed
        self.stats = [0, 0, 0, 0]  # collisions, operations, probes, max probe

    @property
    def capacity(self):
        return len(self.tags)

    def _entry(self, off):
        h = int.from_bytes(self.arena[off:off + 8], "little")
        value = int.from_bytes(self.arena[off + 8:off + 12], "little")
        n = int.from_bytes(self.arena[off + 12:off + 16], "little")
        return h, value, bytes(self.arena[off + HEADER:off + HEADER + n])

    def _slots_from(self, h):
        # Every slot once, starting at the home slot.
        cap = self.capacity
        for k in range(cap):
            yield (h + k) % cap

    def _holds(self, j, h, key):
        eh, _, ekey = self._entry(self.refs[j])
        return eh == h and ekey == key

    def lookup(self, key):
        """Return ``(value or -1, probes, collisions)`` and add them to ``stats``."""
        h = xxh64_ref(key, self.seed)
        t = tag_of(h)
        probes = 0
        value = -1
        wrong_key = False
        home = h % self.capacity
        last = home
        for j in self._slots_from(h):
            probes += 1
            last = j
            if self.tags[j] == EMPTY:
                break
            if self.tags[j] == t:
                if self._holds(j, h, key):
                    value = self._entry(self.refs[j])[1]
                    break
                wrong_key = True
        else:
            # A full lap without an EMPTY slot or the key.
            wrong_key = True
        # One collision per lookup that other keys made dearer (see jit.fit): a wrong key's entry read,
        # or a probe that ended outside the 64-tag line of the home slot.
        collisions = int(wrong_key or last // 64 != home // 64)
        self.stats[0] += collisions
        self.stats[1] += 1
        self.stats[2] += probes
        self.stats[3] = max(self.stats[3], probes)
        return value, probes, collisions

    def insert(self, key, value, mutable_from=0):
        """Insert or update; return ``"updated"``, ``"moved"``, ``"new"`` or ``"reused"`` (took a tombstone).

        An entry before ``mutable_from`` is never written: a changed value gets a fresh
        entry (``"moved"``; the old one is dead), an unchanged one is left (``"updated"``).
        """
        h = xxh64_ref(key, self.seed)
        t = tag_of(h)
        free = None
        end = None
        for j in self._slots_from(h):
            if self.tags[j] == EMPTY:
                end = j
                break
            if self.tags[j] == TOMBSTONE:
                if free is None:
                    free = j
            elif self.tags[j] == t and self._holds(j, h, key):
                off = self.refs[j]
                if off >= mutable_from:
                    self.arena[off + 8:off + 12] = value.to_bytes(4, "little")
                    return "updated"
                if self._entry(off)[1] == value:
                    return "updated"
                self._append(j, t, h, key, value)
                return "moved"
        j = free if free is not None else end
        if j is None:
            raise RuntimeError("table full")
        self._append(j, t, h, key, value)
        return "reused" if free is not None else "new"

    def _append(self, j, t, h, key, value):
        self.refs[j] = len(self.arena)
        self.arena += h.to_bytes(8, "little") + value.to_bytes(4, "little")
        self.arena += len(key).to_bytes(4, "little") + key
        self.tags[j] = t

    def delete(self, key):
        """Remove ``key`` if present; return whether it was."""
        h = xxh64_ref(key, self.seed)
        t = tag_of(h)
        cap = self.capacity
        for j in self._slots_from(h):
            if self.tags[j] == EMPTY:
                return False
            if self.tags[j] == t and self._holds(j, h, key):
                break
        else:
            return False
        if self.tags[(j + 1) % cap] != EMPTY:
            self.tags[j] = TOMBSTONE
            return True
        # Nothing probes past an EMPTY, so the run of tombstones ending here is dead too.
        self.tags[j] = EMPTY
        k = (j - 1) % cap
        while self.tags[k] == TOMBSTONE:
            self.tags[k] = EMPTY
            k = (k - 1) % cap
        return True

    def rebuilt(self, capacity):
        """Return a new table with the live entries re-placed in slot order, arena compacted."""
        new = NaiveFit(capacity, self.seed)
        for s in range(self.capacity):
            if self.tags[s] <= TOMBSTONE:
                continue
            h, value, key = self._entry(self.refs[s])
            j = h % capacity
            while new.tags[j] != EMPTY:
                j = (j + 1) % capacity
            new.tags[j] = self.tags[s]
            new.refs[j] = len(new.arena)
            new.arena += self.arena[self.refs[s]:self.refs[s] + HEADER + len(key)]
        return new

    def items(self):
        """Live ``(key, value)`` pairs in slot order."""
        for j in range(self.capacity):
            if self.tags[j] > TOMBSTONE:
                _, value, key = self._entry(self.refs[j])
                yield key, value

    def tombstones(self):
        return self.tags.count(TOMBSTONE)


class DictModel:
    """What a FIT means: a dict with last-write-wins upserts and silent deletes."""

    def __init__(self, pairs=()):
        self.d = dict(pairs)

    def updated(self, upserts, deletes):
        new = DictModel(self.d)
        new.d.update(upserts)
        for k in deletes:
            new.d.pop(k, None)
        return new

    def get(self, key):
        return self.d.get(key)
