"""Durable store of route changes made through the API: SQLite in WAL mode, one transaction per group.

What is stored is the final state of every route the API touched, on top of
the route files: a next hop, or ``NULL`` for a route the API deleted (so a
deleted file route stays deleted after a restart). ``synchronous=FULL`` makes
a commit durable before it returns, so a 2xx is only sent for changes that
survive a crash; a batch is one transaction, so it is all there or not at all.
"""

import sqlite3
from pathlib import Path

from valkyrie.nodes import Node

__all__ = ["RouteStore", "StoreError", "StoredState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY, address TEXT NOT NULL, shard INTEGER NOT NULL, weight INTEGER NOT NULL,
    latency_hint_us INTEGER NOT NULL, reliability INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS routes (
    family TEXT NOT NULL, network BLOB NOT NULL, plen INTEGER NOT NULL, next_hop TEXT,
    PRIMARY KEY (family, network, plen)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class StoreError(Exception):
    """The store cannot take or give back data; ``code`` says why (``storage_full``, ``storage_readonly``, ``storage_corrupt``, ``storage_error``)."""

    def __init__(self, message, code="storage_error"):
        super().__init__(message)
        self.code = code


class StoredState:
    """What the store holds: nodes in creation order, route states, and the default route."""

    def __init__(self, nodes, routes, default_route):
        self.nodes, self.routes, self.default_route = nodes, routes, default_route

    def __repr__(self):
        return f"StoredState({len(self.nodes)} nodes, {len(self.routes)} routes)"


def _classify(exc, path):
    text = str(exc).lower()
    if "full" in text or "disk i/o" in text:
        return StoreError(f"route store {path} cannot be written: {exc} (disk full?)", "storage_full")
    if "readonly" in text or "read-only" in text or "permission" in text or "unable to open" in text:
        return StoreError(f"route store {path} is not writable: {exc}", "storage_readonly")
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return StoreError(f"route store {path} is corrupt: {exc}. Recover: move it aside and restart "
                          f"(routes come back from the route files; API changes since are lost), or restore "
                          f"a dump with 'valkyrie-routing restore'", "storage_corrupt")
    return StoreError(f"route store {path}: {exc}", "storage_error")


class RouteStore:
    """The durable log of API route changes; used only from the writer thread."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            ok = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({ok})")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise _classify(exc, self.path) from None
        self._seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM nodes").fetchone()[0]

    def write(self, nodes, routes, default_route=None):
        """Durably record ``nodes`` (``Node``s) and ``routes`` (``(family, network, plen, next_hop|None)``) in one transaction."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for node in nodes:
                    self._seq += 1
                    db.execute(
                        "INSERT INTO nodes VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET address=excluded.address,"
                        " shard=excluded.shard, weight=excluded.weight, latency_hint_us=excluded.latency_hint_us,"
                        " reliability=excluded.reliability",
                        (node.id, node.address, node.shard, node.weight, node.latency_hint_us, node.reliability, self._seq))
                db.executemany("INSERT OR REPLACE INTO routes VALUES (?,?,?,?)", routes)
                if default_route is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('default_route', ?)", (default_route,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _classify(exc, self.path) from None

    def read(self):
        """Everything stored, as a ``StoredState``."""
        try:
            nodes = [Node(*row) for row in self._db.execute(
                "SELECT id, address, shard, weight, latency_hint_us, reliability FROM nodes ORDER BY seq")]
            routes = self._db.execute("SELECT family, network, plen, next_hop FROM routes").fetchall()
            row = self._db.execute("SELECT value FROM meta WHERE key = 'default_route'").fetchone()
        except sqlite3.Error as exc:
            raise _classify(exc, self.path) from None
        return StoredState(nodes, routes, row[0] if row else None)

    def close(self):
        """Close the database (a WAL checkpoint happens on close)."""
        self._db.close()
