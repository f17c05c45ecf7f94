"""Durable store of route changes made through the API: SQLite in WAL mode, one transaction per group.

What is stored is the final state of every route the API touched, on top of
the route files: a next hop, or ``NULL`` for a route the API deleted (so a
deleted file route stays deleted after a restart). A group of batches is one
transaction, so each batch is all there or not at all after any crash.

Why SQLite WAL with ``synchronous=FULL`` (``bench/bench_durability.py``,
``bench/results/durability.txt``; 2 cores, one shared virtual disk):

- FULL fdatasyncs the WAL on every commit, so a 2xx survives a power loss,
  not just a process crash. NORMAL syncs only at checkpoints: it survives
  ``kill -9`` (the page cache outlives the process) but a power loss can drop
  the last acknowledged commits. Acknowledging means durable, so FULL, though
  NORMAL commits 1.65x as many routes/s (172k vs 284k in batches of 100).
- An append-only log with one fdatasync per commit was 1.6x FULL's rate
  (both pay the sync; SQLite adds ~0.2ms of b-tree work), but it grew to 2.7x
  the size on an overwrite-heavy run, and atomic multi-route batches, torn-tail
  handling, compaction and a corruption check would all be code to write and
  test; SQLite has them. End to end the durable server takes 26k routes/s from
  one client and 47k from 8 in batches of 100, over the 20k target, so the
  store is not what limits updates.

Errors are classified for the operator (``StoreError.code``): ``storage_full``,
``storage_readonly``, ``storage_corrupt`` (with how to recover), ``storage_error``.
A store whose file or directory cannot be written at start-up is opened read-only:
its changes are replayed and served, and every update is refused until it is fixed.
"""

import errno
import logging
import os
import sqlite3
from pathlib import Path

from valkyrie.nodes import Node

__all__ = ["RouteStore", "StoreError", "StoredState", "SYNC_MODES"]

log = logging.getLogger("valkyrie.store")

SYNC_MODES = ("FULL", "NORMAL")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY, address TEXT NOT NULL, shard INTEGER NOT NULL, weight INTEGER NOT NULL,
    latency_hint_us INTEGER NOT NULL, reliability INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS routes (
    family TEXT NOT NULL, network BLOB NOT NULL, plen INTEGER NOT NULL, next_hop TEXT,
    PRIMARY KEY (family, network, plen)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

# SQLite primary result codes (the low byte of an extended code).
_PERM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 8, 10, 11, 13, 14, 26


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


def recovery_hint(path):
    """What an operator does about a corrupt store at ``path``."""
    return (f"Recover: stop the server, move the store aside (mv {path} {path}.corrupt, and any {path}-wal and "
            f"{path}-shm beside it) and start again: routes come back from the route files, API changes are lost "
            f"until you restore your last dump with 'valkyrie-routing routes restore DUMP --url URL'. "
            f"'sqlite3 {path}.corrupt .recover' may salvage rows the dump does not have.")


def _probe(directory):
    """The errno of creating and writing one block in ``directory``, or 0: tells full from read-only after an I/O error."""
    probe = Path(directory) / f".valkyrie-store-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0


def _classify(exc, path):
    if isinstance(exc, OSError):
        reason = exc.errno
    else:
        primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        reason = {_FULL: errno.ENOSPC, _READONLY: errno.EROFS, _PERM: errno.EACCES, _CANTOPEN: errno.EACCES}.get(primary)
        if primary in (_CORRUPT, _NOTADB) or "malformed" in str(exc) or "not a database" in str(exc):
            return StoreError(f"route store {path} is corrupt: {exc}. {recovery_hint(path)}", "storage_corrupt")
        if primary == _IOERR:
            # SQLite says only "disk I/O error"; a probe write in the same directory says which.
            reason = _probe(path.parent) or None
    if reason == errno.ENOSPC or reason == errno.EDQUOT:
        return StoreError(f"route store {path}: no space left on its disk ({exc}); free space in {path.parent} "
                          f"and retry", "storage_full")
    if reason in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"route store {path} cannot be written ({exc}): make {path.parent} writable "
                          f"(read-only mount or permissions?) and retry", "storage_readonly")
    return StoreError(f"route store {path}: {exc}", "storage_error")


class RouteStore:
    """The durable log of API route changes; used only from the writer thread.

    ``RouteStore(path)`` opens (or creates) the file and checks it; a corrupt
    file raises ``StoreError`` with ``code="storage_corrupt"`` and a recovery
    hint. ``refusing`` is None, or why every ``write`` is refused (read-only).
    """

    def __init__(self, path, *, synchronous="FULL"):
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNC_MODES)}, got {synchronous!r}")
        self.path = Path(path)
        self.refusing = None
        try:
            self._db = self._open_rw(synchronous)
        except StoreError as exc:
            if exc.code not in ("storage_readonly", "storage_full"):
                raise
            self._db = self._open_ro(exc)
            self.refusing = (f"route store {self.path} could not be opened for writing at start-up ({exc}); "
                             f"updates are refused until it is writable and the server restarts")
            log.error("ERROR route store %s opened read-only: serving the routes it holds, refusing every update: %s",
                      self.path, exc)
        self._seq = self._query(lambda db: db.execute("SELECT COALESCE(MAX(seq), 0) FROM nodes").fetchone()[0]) \
            if self._db is not None else 0

    def _open_rw(self, synchronous):
        db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            self._check(db)
            db.executescript(_SCHEMA)
            return db
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise _classify(exc, self.path) from None

    def _open_ro(self, why):
        """A read-only connection to replay an unwritable store; None when there is no file (nothing to replay)."""
        if not self.path.exists():
            return None
        uri = self.path.resolve().as_uri()
        # immutable=1 skips the WAL, so only when there is none to lose.
        modes = ["?mode=ro"] + ([] if Path(f"{self.path}-wal").exists() else ["?immutable=1"])
        for mode in modes:
            db = None
            try:
                db = sqlite3.connect(uri + mode, uri=True, check_same_thread=False)
                self._check(db)
                db.execute("SELECT 1 FROM routes LIMIT 1").fetchall()
                return db
            except sqlite3.Error as exc:
                if db is not None:
                    db.close()
                err = _classify(exc, self.path)
                if err.code == "storage_corrupt":
                    raise err from None
        raise StoreError(f"{why}; it cannot be read either, so its API changes cannot be replayed", why.code)

    @staticmethod
    def _check(db):
        ok = db.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed ({ok})")

    def _query(self, fn):
        try:
            return fn(self._db)
        except sqlite3.Error as exc:
            raise _classify(exc, self.path) from None

    def write(self, nodes, routes, default_route=None):
        """Durably record ``nodes`` (``Node``s) and ``routes`` (``(family, network, plen, next_hop|None)``) in one transaction."""
        if self.refusing is not None:
            raise StoreError(self.refusing, "storage_readonly")
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
        if self._db is None:
            return StoredState([], [], None)

        def fetch(db):
            nodes = [Node(*row) for row in db.execute(
                "SELECT id, address, shard, weight, latency_hint_us, reliability FROM nodes ORDER BY seq")]
            routes = db.execute("SELECT family, network, plen, next_hop FROM routes").fetchall()
            row = db.execute("SELECT value FROM meta WHERE key = 'default_route'").fetchone()
            return StoredState(nodes, routes, row[0] if row else None)
        return self._query(fetch)

    def close(self):
        """Close the database (a WAL checkpoint happens on close)."""
        if self._db is not None:
            self._db.close()
