"""RouteStore on real SQLite files: round trips, atomic groups, replay order, and every storage error it classifies."""

import os

import pytest

from tests.mounts import fill, remount, tmpfs
from valkyrie.nodes import Node
from valkyrie.routes import RouteSet, parse_route
from valkyrie.store import RouteStore, StoreError
from valkyrie.writer import Batch, RouteWriter

V4 = ("ipv4", bytes([10, 1, 0, 0]), 16)


def _rows(store):
    return sorted(store.read().routes)


def test_round_trip_keeps_nodes_in_creation_order_and_tombstones(tmp_path):
    store = RouteStore(tmp_path / "routes.db")
    store.write([Node("b", "10.0.0.2:1"), Node("a")], [(*V4, "b"), ("exact", b"job-1", 0, "a")], "a")
    store.write([Node("b", "10.0.0.9:1", weight=5)], [(*V4, None)])
    store.close()
    state = RouteStore(tmp_path / "routes.db").read()
    # An updated node keeps its first position; a deletion is kept as a tombstone (None).
    assert [n.id for n in state.nodes] == ["b", "a"]
    assert state.nodes[0] == Node("b", "10.0.0.9:1", weight=5)
    assert sorted(state.routes) == [("exact", b"job-1", 0, "a"), (*V4, None)]
    assert state.default_route == "a"


def test_a_failing_group_leaves_nothing_behind(tmp_path):
    store = RouteStore(tmp_path / "routes.db")
    store.write([], [("exact", b"kept", 0, "n")])
    # The third row has the wrong arity: SQLite fails mid-transaction, and the first two must not stay.
    with pytest.raises(StoreError):
        store.write([Node("n2")], [("exact", b"x1", 0, "n"), ("exact", b"x2", 0, "n"), ("exact", b"x3")])
    assert _rows(store) == [("exact", b"kept", 0, "n")]
    assert [n.id for n in store.read().nodes] == []


def test_replay_puts_the_store_on_top_of_the_files():
    # Files declare three routes; the store changes one, deletes one, adds one and re-points a node.
    files = RouteSet(nodes=[Node("n1"), Node("n2", "10.0.0.2:1")], default_route="n1",
                     routes=[parse_route({"prefix": p, "next_hop": "n1"}) for p in ("10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16")])
    files.where = ["f"] * 3
    writer = RouteWriter()
    writer.load([files])

    class Stored:
        nodes = [Node("n2", "10.9.9.9:9"), Node("n3")]
        routes = [("ipv4", bytes([10, 1, 0, 0]), 16, "n2"), ("ipv4", bytes([10, 2, 0, 0]), 16, None),
                  ("ipv4", bytes([10, 4, 0, 0]), 16, "n3"), ("exact", b"gone-anyway", 0, None)]
        default_route = "n3"

    writer.replay(Stored)
    hops = {ident[1]: writer.nodes.ids[i] for ident, i in writer.prefixes.items()}
    assert hops == {bytes([10, 1, 0, 0]): "n2", bytes([10, 3, 0, 0]): "n1", bytes([10, 4, 0, 0]): "n3"}
    assert writer.nodes[writer.nodes.index["n2"]].address == "10.9.9.9:9"
    assert writer.nodes.ids[writer.default] == "n3"


def test_writer_records_are_what_the_store_needs_and_rollback_undoes_the_group():
    writer = RouteWriter()
    writer.stage(Batch(nodes=[Node("n1")], puts=[parse_route({"prefix": "10.1.0.0/16", "next_hop": "n1"})]))
    writer.build()
    writer.begin()
    writer.stage(Batch(nodes=[Node("n2")], puts=[parse_route({"key": "job", "next_hop": "n2"})]))
    writer.stage(Batch(deletes=[parse_route({"prefix": "10.1.0.0/16", "next_hop": "x"})]))
    nodes, rows, default = writer.records()
    assert [n.id for n in nodes] == ["n2"] and default is None
    assert sorted(rows) == [("exact", b"job", 0, "n2"), ("ipv4", bytes([10, 1, 0, 0]), 16, None)]
    writer.rollback()
    assert writer.exact == {} and list(writer.prefixes) == [V4] and "n2" not in writer.nodes


@pytest.mark.parametrize("damage", ["header", "page"])
def test_corrupt_file_is_refused_at_open_with_how_to_recover(tmp_path, damage):
    path = tmp_path / "routes.db"
    store = RouteStore(path)
    store.write([Node("n")], [("exact", b"key-%05d" % i, 0, "n") for i in range(3000)])
    store.close()
    assert not os.path.exists(f"{path}-wal")  # checkpointed on close: the damage below hits the only copy
    with open(path, "r+b") as fh:
        if damage == "header":
            fh.write(b"definitely not SQLite")
        else:
            # One garbled 512-byte sector at the start of a b-tree page (its header and cell pointers).
            fh.seek(4096 * 2)
            fh.write(bytes(range(256)) * 2)
    with pytest.raises(StoreError) as err:
        RouteStore(path)
    assert err.value.code == "storage_corrupt"
    message = str(err.value)
    assert str(path) in message and f"mv {path} {path}.corrupt" in message and "routes restore" in message


def test_disk_full_is_storage_full_and_the_store_recovers_when_space_returns(tmp_path):
    with tmpfs(tmp_path / "fs", "256k") as fs:
        store = RouteStore(fs / "routes.db")
        store.write([], [("exact", b"before", 0, "n")])
        filler = fill(fs)
        with pytest.raises(StoreError) as err:
            store.write([], [("exact", b"full-%d" % i, 0, "n") for i in range(500)])
        assert err.value.code == "storage_full" and "no space left" in str(err.value)
        filler.unlink()
        store.write([], [("exact", b"after", 0, "n")])
        assert [r[1] for r in _rows(store)] == [b"after", b"before"]
        store.close()


def test_read_only_directory_at_open_replays_and_refuses_writes(tmp_path):
    with tmpfs(tmp_path / "fs", "1m") as fs:
        store = RouteStore(fs / "routes.db")
        store.write([Node("n")], [("exact", b"stored", 0, "n")])
        store.close()
        remount(fs, "ro")
        store = RouteStore(fs / "routes.db")
        assert store.refusing and "could not be opened for writing" in store.refusing
        assert _rows(store) == [("exact", b"stored", 0, "n")]
        with pytest.raises(StoreError) as err:
            store.write([], [("exact", b"new", 0, "n")])
        assert err.value.code == "storage_readonly" and str(fs) in str(err.value)
        store.close()
        # Nothing there yet and nowhere to put it: an empty store that refuses writes.
        empty = RouteStore(fs / "sub" / "routes.db")
        assert empty.read().routes == [] and empty.refusing
        remount(fs, "rw")


def test_synchronous_mode_is_applied_and_checked(tmp_path):
    with pytest.raises(ValueError, match="synchronous"):
        RouteStore(tmp_path / "x.db", synchronous="SOMETIMES")
    store = RouteStore(tmp_path / "n.db", synchronous="NORMAL")
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert RouteStore(tmp_path / "f.db")._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
